"""Every model trained for the same CPU budget on builtin:moving-mnist and builtin:shapes.

For each (dataset, model): train with the chosen preset for --budget seconds (one subprocess
per run, so peak RSS is per run), then print side by side: steps done, training clips/s,
peak RSS, and a sample-quality distance of 256 generated clips against 256 HELD-OUT real clips
(moving-mnist: digits the model never saw; shapes: another seed). Until the evaluation metrics
exist the distance is vidgan.metrics.pixel_stats.pixel_statistics_distance (intensity histogram
+ motion gap; lower is better; a sanity signal, not FVD). The baseline is videogan: the ratio of
each model's distance to videogan's on the same data is printed last.

    python benchmarks/model_zoo.py --budget 900            # the 15-minute comparison (~2 h for all 8 runs)
    python benchmarks/model_zoo.py --budget 60 --json zoo.json
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


def child(args) -> None:
    import torch

    torch.set_num_threads(2)
    from vidgan.config import load_config
    from vidgan.training.loop import train

    cfg = load_config(args.preset, {"data": args.data, "model.name": args.model, "train.steps": 10**7, "train.time_budget": args.budget, "train.checkpoint_every": 10**7, "train.sample_every": 10**7})
    t0 = time.monotonic()
    result = train(cfg, args.run, progress=False, log=lambda s: None)
    seconds = time.monotonic() - t0
    log = [json.loads(line) for line in (Path(args.run) / "log.jsonl").read_text().splitlines()]
    speeds = [r["clips_per_s"] for r in log[1:]] or [r["clips_per_s"] for r in log]
    print(json.dumps({"steps": result.step, "seconds": seconds, "clips_per_s": sum(speeds) / len(speeds), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=900.0, help="training seconds per (dataset, model)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--clips", type=int, default=2000, help="training clips per dataset")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    from vidgan.data.clips import ClipDataset
    from vidgan.data.prepare import PrepareSettings, prepare
    from vidgan.metrics.pixel_stats import pixel_statistics_distance
    from vidgan.pipeline import VideoPipeline

    work = Path(tempfile.mkdtemp(prefix="vidgan-zoo-"))
    settings = PrepareSettings(size=args.size, frames=args.frames)
    rows = []
    for dataset in args.datasets.split(","):
        train_dir, held_dir = work / dataset / "train", work / dataset / "heldout"
        quiet = {"progress": False, "log": lambda s: None}
        prepare(f"builtin:{dataset}", train_dir, settings, n=args.clips, seed=0, **quiet)
        held = {"split": "test"} if dataset == "moving-mnist" else {}
        prepare(f"builtin:{dataset}", held_dir, settings, n=256, seed=1, **held, **quiet)
        real = ClipDataset(held_dir).get_batch(range(256))[0].numpy()
        for model in args.models.split(","):
            run = work / dataset / model
            print(f"{dataset} / {model}: training {args.budget:g} s ...", flush=True)
            proc = subprocess.run([sys.executable, __file__, "--child", "--data", str(train_dir), "--model", model, "--run", str(run), "--preset", args.preset, "--budget", str(args.budget)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-2000:])
                continue
            stats = json.loads(proc.stdout.strip().splitlines()[-1])
            fake = VideoPipeline.from_pretrained(run)(n=256, seed=123)
            stats["distance"] = pixel_statistics_distance(fake, real)
            rows.append({"dataset": dataset, "model": model, **stats})

    print(f"\npreset {args.preset}, {args.size}x{args.size}x{args.frames}, {args.clips} training clips, budget {args.budget:g} s per run, 2 threads")
    print(f"{'dataset':<14}{'model':<18}{'steps':>7}{'clips/s':>9}{'peak RSS MB':>13}{'distance':>10}")
    for r in rows:
        print(f"{r['dataset']:<14}{r['model']:<18}{r['steps']:>7}{r['clips_per_s']:>9.1f}{r['peak_rss_mb']:>13.0f}{r['distance']:>10.3f}")
    print("\ndistance relative to videogan on the same dataset (lower is better):")
    for r in rows:
        base = next((b for b in rows if b["dataset"] == r["dataset"] and b["model"] == "videogan"), None)
        if base:
            print(f"  {r['dataset']:<14}{r['model']:<18}{r['distance'] / base['distance']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
