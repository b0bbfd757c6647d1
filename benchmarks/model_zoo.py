"""Every model trained for the same CPU budget on builtin:moving-mnist and builtin:shapes.

For each (dataset, model): train with the chosen preset for --budget seconds (one subprocess
per run, so peak RSS is per run), then print side by side: steps done, training clips/s,
peak RSS, and two sample-quality distances of 256 generated clips against 256 HELD-OUT real
clips (moving-mnist: digits the model never saw; shapes: another seed):
- fd_effnet256_16f: Frechet distance in EfficientNet-Lite0 feature space with its temporal term
  (vidgan.metrics; frames resized to 112 px instead of 224 to keep the benchmark affordable on a
  CPU, so the numbers compare runs of this script only);
- pixel: vidgan.metrics.pixel_stats.pixel_statistics_distance (intensity histogram + motion gap).
Lower is better for both. `--losses hinge,lsgan` adds videogan runs with those losses. The baseline
is videogan with the non-saturating loss: each run's ratio to it on the same data is printed last.

    python benchmarks/model_zoo.py --budget 900            # the 15-minute comparison (~2 h for all 8 runs)
    python benchmarks/model_zoo.py --budget 240 --losses hinge --json zoo.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ["videogan", "videogan-2stream", "tgan", "mocogan"]
DATASETS = ["moving-mnist", "shapes"]


def peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM starts afresh at exec; ru_maxrss would carry
    the parent's peak over from the fork (the parent holds the evaluation networks)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> None:
    import torch

    torch.set_num_threads(2)
    from vidgan.presets import load_config
    from vidgan.training.loop import train

    cfg = load_config(
        args.preset,
        {
            "data": args.data,
            "model.name": args.model,
            "loss.name": args.loss,
            "train.steps": 10**7,
            "train.time_budget": args.budget,
            "train.checkpoint_every": 10**7,
            "train.sample_every": 10**7,
            "train.seed": args.seed,
        },
    )
    t0 = time.monotonic()
    result = train(cfg, args.run, progress=False, log=lambda s: None)
    seconds = time.monotonic() - t0
    log = [json.loads(line) for line in (Path(args.run) / "log.jsonl").read_text().splitlines()]
    speeds = [r["clips_per_s"] for r in log[1:]] or [r["clips_per_s"] for r in log]
    print(json.dumps({"steps": result.step, "seconds": seconds, "clips_per_s": sum(speeds) / len(speeds), "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=900.0, help="training seconds per (dataset, model)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--clips", type=int, default=2000, help="training clips per dataset")
    ap.add_argument("--eval-n", type=int, default=256, help="generated and held-out clips per quality distance")
    ap.add_argument("--losses", default="", help="extra losses to train videogan with, e.g. hinge,lsgan")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--seed", type=int, default=0, help="training seed of every run (data and held-out sets stay fixed)")
    ap.add_argument("--loss", default="nonsat", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    from vidgan.data.clips import ClipDataset
    from vidgan.data.prepare import PrepareSettings, prepare
    from vidgan.metrics.evaluate import EvalOptions, compute
    from vidgan.metrics.pixel_stats import pixel_statistics_distance
    from vidgan.metrics.sources import ArraySource, DatasetSource
    from vidgan.pipeline import VideoPipeline

    work = Path(tempfile.mkdtemp(prefix="vidgan-zoo-"))
    settings = PrepareSettings(size=args.size, frames=args.frames)
    rows = []
    for dataset in args.datasets.split(","):
        train_dir, held_dir = work / dataset / "train", work / dataset / "heldout"
        quiet = {"progress": False, "log": lambda s: None}
        prepare(f"builtin:{dataset}", train_dir, settings, n=args.clips, seed=0, **quiet)
        held = {"split": "test"} if dataset == "moving-mnist" else {}
        prepare(f"builtin:{dataset}", held_dir, settings, n=args.eval_n, seed=1, **held, **quiet)
        real = ClipDataset(held_dir).get_batch(range(args.eval_n))[0].numpy()
        plan = [(m, "nonsat") for m in args.models.split(",")] + [("videogan", loss) for loss in args.losses.split(",") if loss]
        for model, loss in plan:
            run = work / dataset / f"{model}-{loss}"
            print(f"{dataset} / {model} / {loss}: training {args.budget:g} s ...", flush=True)
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--data",
                    str(train_dir),
                    "--model",
                    model,
                    "--loss",
                    loss,
                    "--run",
                    str(run),
                    "--preset",
                    args.preset,
                    "--budget",
                    str(args.budget),
                    "--seed",
                    str(args.seed),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print(proc.stderr[-2000:])
                continue
            stats = json.loads(proc.stdout.strip().splitlines()[-1])
            fake = VideoPipeline.from_pretrained(run)(n=args.eval_n, seed=123)
            stats["pixel"] = pixel_statistics_distance(fake, real)
            # real statistics are cached (keyed by the held-out set and protocol): computed once per dataset
            options = EvalOptions(
                metrics=f"fd_effnet{args.eval_n}_{args.frames}f", effnet_size=112, progress=False, cache_dir=work / "cache"
            )
            stats["fd_effnet"] = compute(ArraySource(fake), DatasetSource(held_dir), options).records[0]["value"]
            rows.append({"dataset": dataset, "model": model, "loss": loss, **stats})
            print(f"  {json.dumps(rows[-1])}", flush=True)

    print(
        f"\npreset {args.preset}, {args.size}x{args.size}x{args.frames}, {args.clips} training clips, budget {args.budget:g} s per run, seed {args.seed}, 2 threads; "
        f"quality: {args.eval_n} generated vs {args.eval_n} held-out clips, fd_effnet at 112 px"
    )
    print(f"{'dataset':<14}{'model':<18}{'loss':<8}{'steps':>7}{'clips/s':>9}{'peak RSS MB':>13}{'fd_effnet':>11}{'pixel':>8}")
    for r in rows:
        print(
            f"{r['dataset']:<14}{r['model']:<18}{r['loss']:<8}{r['steps']:>7}{r['clips_per_s']:>9.1f}{r['peak_rss_mb']:>13.0f}{r['fd_effnet']:>11.2f}{r['pixel']:>8.3f}"
        )
    print("\nrelative to videogan/nonsat on the same dataset (fd_effnet, pixel; lower is better):")
    for r in rows:
        base = next((b for b in rows if b["dataset"] == r["dataset"] and b["model"] == "videogan" and b["loss"] == "nonsat"), None)
        if base:
            print(
                f"  {r['dataset']:<14}{r['model']:<18}{r['loss']:<8}{r['fd_effnet'] / base['fd_effnet']:.2f}x {r['pixel'] / base['pixel']:.2f}x"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
