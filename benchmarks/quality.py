"""Quality at a budget: every generator trained for the same CPU time on the same data, scored by
the same evaluator against HELD-OUT real clips, with the data floor as the last row.

Rows (one training subprocess each, so peak memory and speed are per run):
  videogan-paper  VideoGAN as the seeds wrote it: the paper's widths (the 64px preset), the
                  non-saturating (BCE) loss, no spectral norm, Adam(2e-4, 0.5, 0.999), fp32, batch 64
  videogan        today's `small` preset with --model videogan
  mocogan         the `small` preset with --model mocogan
  two-stage       VQ-VAE for half the budget, then the videogpt prior for the other half (`small`)
  ctvgan          the continuous-time generator with the `small` preset (vidgan's default)
  sprites         the sprites model with the `sprites` recipe (`vidgan train --recipe sprites`, as `vidgan demo`)
  floor           the training clips themselves against the held-out clips
Data: builtin:moving-mnist 32x32x16 (held out: digits never seen in training) and builtin:sample-clips
64x64x16 (real street and car footage; each video's first 75% trains, its last 25% is held out).
Scores: `vidgan evaluate`'s fd_effnet / kd_effnet (EfficientNet-Lite0 clip features, 224 px) and k-NN
precision / recall, N generated vs up to N held-out clips; fd is also given as a multiple of the
floor; px/frame is how fast the clips move (`pace`: the floor row's is the data's). With --seeds 2 or
more, each model row is trained once per seed and mean +- spread is shown.

    python benchmarks/quality.py                                   # 600 s per row, both datasets
    python benchmarks/quality.py --datasets moving-mnist --rows videogan,ctvgan --seeds 2 --json q.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = ["videogan-paper", "videogan", "mocogan", "two-stage", "ctvgan", "sprites"]
DATASETS = {"moving-mnist": 32, "sample-clips": 64}
LONG = {"train.steps": 10**7, "train.checkpoint_every": 10**7, "train.sample_every": 10**7}
PAPER = {"loss.name": "nonsat", "loss.penalty": "none", "model.spectral_norm": False,
         "train.lr_g": 2e-4, "train.lr_d": 2e-4, "train.betas": [0.5, 0.999], "train.precision": "fp32", "train.batch_size": 64}  # fmt: skip


def child(args) -> None:
    """Train one row for --budget seconds; print {"steps", "clips_per_s"} as the last line."""
    import torch

    torch.set_num_threads(args.threads)
    from vidgan.presets import resolve_config
    from vidgan.run import Run
    from vidgan.training.loop import train

    quiet = {"progress": False, "log": lambda s: None}
    base = {"data": args.data, "train.seed": args.seed, **LONG}
    if args.row == "two-stage":
        vq, prior = Path(args.run) / "vq", Path(args.run) / "prior"
        train(resolve_config(args.preset, model="vqvae", overrides=base | {"train.time_budget": args.budget / 2}), vq, **quiet)
        overrides = base | {"vq.vqvae_run": str(vq), "train.time_budget": args.budget / 2}
        result = train(resolve_config(args.preset, model="videogpt", overrides=overrides), prior, **quiet)
        print(json.dumps({"steps": result.step, "clips_per_s": Run(prior).mean_speed(), "run": str(prior)}))
        return
    preset, model, recipe, extra = {
        "videogan-paper": ("64px", "videogan", None, PAPER),
        "sprites": (None, None, "sprites", {}),  # the recipe's base preset
    }.get(args.row, (args.preset, args.row, None, {}))
    overrides = base | extra | {"train.time_budget": args.budget}
    result = train(resolve_config(preset, model=model, recipe=recipe, overrides=overrides), args.run, **quiet)
    print(json.dumps({"steps": result.step, "clips_per_s": Run(args.run).mean_speed(), "run": str(args.run)}))


def split_videos(files: list[Path], out: Path, share: float = 0.75) -> tuple[Path, Path]:
    """Each video's first `share` of frames into out/train/, the rest into out/heldout/ (lossless-enough mp4)."""
    from vidgan.data.video_io import probe, read_video
    from vidgan.data.video_write import write_video

    for f in files:
        frames, fps = read_video(f), probe(f).fps or 25.0
        cut = int(len(frames) * share)
        write_video(out / "train" / f.name, frames[:cut], fps=fps)
        write_video(out / "heldout" / f.name, frames[cut:], fps=fps)
    return out / "train", out / "heldout"


def prepare_data(name: str, size: int, frames: int, clips: int, eval_n: int, work: Path) -> tuple[Path, Path]:
    from vidgan.data.builtin import sample_clip_files
    from vidgan.data.prepare import PrepareSettings, prepare

    quiet = {"progress": False, "log": lambda s: None}
    train_dir, held_dir = work / name / "train", work / name / "heldout"
    if name == "moving-mnist":
        settings = PrepareSettings(size=size, frames=frames)
        prepare("builtin:moving-mnist", train_dir, settings, n=clips, seed=0, **quiet)
        prepare("builtin:moving-mnist", held_dir, settings, n=eval_n, seed=1, split="test", **quiet)
    else:  # the two real videos, cut in time: windows every 2 frames
        videos_train, videos_held = split_videos(sample_clip_files(), work / name / "videos")
        settings = PrepareSettings(size=size, frames=frames, stride=2)
        prepare(str(videos_train), train_dir, settings, **quiet)
        prepare(str(videos_held), held_dir, settings, **quiet)
    return train_dir, held_dir


def score(clips, held_dir: Path, args, cache: Path) -> dict:
    from vidgan.metrics.evaluate import EvalOptions, compute
    from vidgan.metrics.sources import ArraySource, DatasetSource

    n = args.eval_n
    metrics = f"fd_effnet{n}_{args.frames}f,kd_effnet{n}_{args.frames}f,pr{n}_{args.frames}f"
    options = EvalOptions(metrics=metrics, effnet_size=args.effnet_size, progress=False, cache_dir=cache)
    if isinstance(clips, Path):  # a prepared folder (the floor row): n of its clips (seed 0) for the pace
        source, array = DatasetSource(clips), folder_clips(clips, n, args.frames)
    else:
        source, array = ArraySource(clips), clips
    out = {"pace": pace(array)}
    for r in compute(source, DatasetSource(held_dir), options).records:
        name = r["metric"]  # fd_effnet256_16f, kd_effnet256_16f, pr256_16f_precision, ... (+ _112px at other sizes)
        out["fd" if name.startswith("fd_") else "kd" if name.startswith("kd_") else name.rsplit("_", 1)[1]] = r["value"]
        out["n_real"] = r["n_real"]
    return out


def folder_clips(folder: Path, n: int, frames: int):
    """n clips of a prepared folder, as the floor row scores them (the metrics' plan with seed 0):
    (n, T, H, W, C) uint8."""
    from vidgan.metrics.sources import DatasetSource

    source = DatasetSource(folder)
    return source.load(source.plan(n, frames, 0), frames, source.resolution)


def pace(clips) -> float:
    """How fast the clips move: the mean distance (pixels at the clips' size) the centre of their
    brightness travels from one frame to the next, over (N, T, H, W, C) uint8 clips.

    The clip features behind fd look at frames more than at how they follow each other: sprites that
    jumped 5 px a frame, where Moving MNIST's digits move 1.2 by this measure, still scored close to
    the data (README). This column shows motion next to the distances; compare a row with its floor.
    """
    import numpy as np

    x = np.asarray(clips, np.float32).mean(axis=-1)  # (N, T, H, W) brightness
    mass = x.sum(axis=(2, 3)) + 1e-6
    cy = (x.sum(axis=3) * np.arange(x.shape[2])).sum(-1) / mass
    cx = (x.sum(axis=2) * np.arange(x.shape[3])).sum(-1) / mass
    return float(np.hypot(np.diff(cy, axis=1), np.diff(cx, axis=1)).mean())


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and spread (max - min) over seeds for each (dataset, row)."""
    import numpy as np

    out = []
    for key in dict.fromkeys((r["dataset"], r["row"]) for r in rows):
        group = [r for r in rows if (r["dataset"], r["row"]) == key]
        entry = {"dataset": key[0], "row": key[1], "seeds": len(group)}
        for col in ("steps", "clips_per_s", "fd", "kd", "precision", "recall", "pace"):
            values = np.array([g[col] for g in group], float)
            entry[col], entry[col + "_spread"] = float(values.mean()), float(values.max() - values.min())
        out.append(entry)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds per row")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per model row (mean and spread reported)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=None, help="clip size for every dataset (default: 32 moving-mnist, 64 sample-clips)")
    ap.add_argument("--clips", type=int, default=4000, help="moving-mnist training clips (as vidgan demo)")
    ap.add_argument("--eval-n", type=int, default=256, help="generated clips scored (and held-out clips, where there are that many)")
    ap.add_argument("--effnet-size", type=int, default=224, help="EfficientNet-Lite0 input size (224: vidgan evaluate's default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, help="folder for data and runs (default: a new temporary folder)")
    ap.add_argument("--json", type=Path, help="also write every row and the table to this file")
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results",
                    help="folder of the results files (quality-DATASET.json) that benchmarks/tables.py makes the README's tables from")  # fmt: skip
    ap.add_argument("--no-results", action="store_true", help="do not write the results files")
    for hidden in ("--row", "--data", "--run"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    from vidgan.pipeline import VideoPipeline

    work = args.work or Path(tempfile.mkdtemp(prefix="vidgan-quality-"))
    rows = []
    for dataset in args.datasets.split(","):
        size = args.size or DATASETS[dataset]
        train_dir, held_dir = prepare_data(dataset, size, args.frames, args.clips, args.eval_n, work)
        cache = work / "cache"
        for row in args.rows.split(","):
            for seed in range(args.seeds):
                run = work / dataset / f"{row}-seed{seed}"
                print(f"{dataset} / {row} / seed {seed}: training {args.budget:g} s ...", flush=True)
                cmd = [sys.executable, __file__, "--child", "--row", row, "--data", str(train_dir), "--run", str(run), "--seed", str(seed),
                       "--budget", str(args.budget), "--preset", args.preset, "--threads", str(args.threads)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{dataset}/{row} failed:\n{proc.stderr[-3000:]}")
                stats = json.loads(proc.stdout.strip().splitlines()[-1])
                t0 = time.monotonic()
                clips = VideoPipeline.from_pretrained(stats["run"])(n=args.eval_n, seed=123)
                stats |= score(clips, held_dir, args, cache) | {"eval_s": time.monotonic() - t0}
                rows.append({"dataset": dataset, "row": row, "seed": seed, **stats})
                print("  " + json.dumps(rows[-1]), flush=True)
        floor = {"dataset": dataset, "row": "floor", "seed": 0, "steps": 0, "clips_per_s": 0.0, **score(train_dir, held_dir, args, cache)}
        rows.append(floor)

    table = summarise(rows)
    print(f"\n{args.budget:g} s of training per row, {args.threads} threads, preset {args.preset}; {args.eval_n} generated clips vs "
          f"held-out clips, fd/kd_effnet at {args.effnet_size} px, precision/recall k=5; seeds per model row: {args.seeds}")  # fmt: skip
    print(
        f"{'dataset':<14}{'row':<16}{'steps':>8}{'clips/s':>9}{'fd_effnet':>16}{'kd_effnet':>11}{'precision':>11}{'recall':>8}{'x floor':>9}"
        f"{'px/frame':>10}"
    )
    for t in table:
        floor = next(f for f in table if f["dataset"] == t["dataset"] and f["row"] == "floor")
        spread = f" +-{t['fd_spread'] / 2:.1f}" if t["seeds"] > 1 else ""
        print(
            f"{t['dataset']:<14}{t['row']:<16}{t['steps']:>8.0f}{t['clips_per_s']:>9.1f}{t['fd']:>10.1f}{spread:>6}{t['kd']:>11.4f}"
            f"{t['precision']:>11.2f}{t['recall']:>8.2f}{t['fd'] / floor['fd']:>8.1f}x{t['pace']:>10.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "table": table, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    if not args.no_results:
        save_results(rows, args)


def save_results(rows: list[dict], args) -> None:
    """Per-seed rows, the floor, the command, commit, CPU and date into benchmarks/results/quality-DATASET.json."""
    import tables  # benchmarks/tables.py, beside this script: the one schema of results files

    metric = f"fd_effnet{args.eval_n}_{args.frames}f" + ("" if args.effnet_size == 224 else f"_{args.effnet_size}px")
    names = ("budget", "preset", "frames", "size", "clips", "eval_n", "effnet_size", "threads", "seeds")
    settings = {k: getattr(args, k) for k in names} | {"metric": metric}
    sizes = {d: args.size or DATASETS[d] for d in args.datasets.split(",")}
    for path in tables.save_quality(rows, settings, sizes, args.results):
        print(f"results: {path} (python benchmarks/tables.py puts them in the README)")


if __name__ == "__main__":
    main()
