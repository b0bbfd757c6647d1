"""Clip-loader throughput against what the training step consumes, in the same run.

A dataset of `--clips` RGB clips at 64x64x32 (builtin:shapes, prepared into a temporary folder, so
its shards sit in the page cache) is read the way `vidgan train` reads it: `ClipLoader` over the
trainer's `BatchOrder` (a fresh random permutation per epoch), batch `--batch`, for `--steps` steps.

    loader, 0 workers        uint8 batches sliced from the memmaps in the calling process (CPU default)
    loader, N workers        the same through N worker processes (the GPU default, with pinned memory there)
    loader + to_model        0 workers, plus the conversion to float (B, C, T, H, W) in [-1, 1]
    training step            vidgan's default train step (`GANStep`, as benchmarks/train_throughput.py)
                             at the same shape and batch: the clips/s the loader has to keep up with

Printed last: loader clips/s / training-step clips/s (target: at least 20x). Pass
`--step-clips-per-s X` to skip measuring the step (e.g. with a figure from train_throughput.py).

    python benchmarks/loader_throughput.py
    python benchmarks/loader_throughput.py --clips 1024 --steps 400 --workers 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

THREADS = 2
SIZE, FRAMES = 64, 32


def loader_rate(data, batch: int, steps: int, workers: int, convert: bool = False) -> float:
    """clips/s of iterating a ClipLoader for `steps` steps (worker start-up included: it is paid once per run)."""
    from vidgan.data.clips import ClipLoader
    from vidgan.data.video_io import to_model
    from vidgan.training.common import BatchOrder

    order = BatchOrder(len(data), batch, seed=0)
    t0 = time.perf_counter()
    for _, clips, _ in ClipLoader(data, order.indices, 0, batch, start=0, stop=steps, workers=workers):
        if convert:
            to_model(clips)
    return steps * batch / (time.perf_counter() - t0)


def step_rate(batch: int, steps: int) -> tuple[float, str]:
    import torch

    from vidgan.config import TrainConfig
    from vidgan.models.registry import build_model
    from vidgan.presets import load_config
    from vidgan.training import speed
    from vidgan.training.gan import GANStep, StepSettings

    cfg = load_config("64px").with_data_shape(frames=FRAMES, resolution=SIZE, channels=3)
    torch.manual_seed(0)
    G, D = build_model(cfg.model)
    plan = speed.resolve_speed(TrainConfig(), torch.device("cpu"), width=cfg.model.max_channels)
    real = torch.rand(batch, 3, FRAMES, SIZE, SIZE) * 2 - 1
    if plan.channels_last:
        speed.to_channels_last(G)
        speed.to_channels_last(D)
        real = real.contiguous(memory_format=torch.channels_last_3d)
    opt_g, opt_d = speed.make_adam(G.parameters(), 2e-4, (0.5, 0.999), plan), speed.make_adam(D.parameters(), 2e-4, (0.5, 0.999), plan)
    gan_step = GANStep(G, D, opt_g, opt_d, StepSettings.from_config(cfg.loss, 0), precision=speed.StepPrecision(plan))
    times = []
    for i in range(steps + 1):  # the first step warms up (oneDNN primitive creation)
        t0 = time.perf_counter()
        gan_step(real, torch.randn(batch, G.z_dim), torch.randn(batch, G.z_dim))
        if i:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times), plan.describe()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=512, help="clips in the dataset (default 512: 200 MB of shards)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300, help="loader steps per measurement (default 300)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for the second loader row (default 2)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the loader measurements; the best is kept (default 3)")
    ap.add_argument("--train-steps", type=int, default=2, help="timed training steps (default 2)")
    ap.add_argument("--step-clips-per-s", type=float, help="skip the training step and use this rate")
    args = ap.parse_args(argv)

    import torch

    from vidgan.data.clips import ClipDataset
    from vidgan.data.prepare import PrepareSettings, prepare

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory(prefix="vidgan-bench-loader-") as tmp:
        t0 = time.perf_counter()
        prepare(
            "builtin:shapes",
            Path(tmp) / "d",
            PrepareSettings(size=SIZE, frames=FRAMES),
            n=args.clips,
            seed=0,
            progress=False,
            log=lambda s: None,
        )
        data = ClipDataset(Path(tmp) / "d")
        mb = sum(f.stat().st_size for f in (Path(tmp) / "d").glob("shard_*.npy")) / 1e6
        print(
            f"{len(data)} clips of {FRAMES}x{SIZE}x{SIZE}x3 ({mb:.0f} MB of shards, page cache) prepared in {time.perf_counter() - t0:.1f} s; "
            f"batch {args.batch}, {args.steps} steps per loader measurement, best of {args.repeat}",
            flush=True,
        )
        rows = {"loader, 0 workers": [], f"loader, {args.workers} workers": [], "loader + to_model, 0 workers": []}
        for _ in range(args.repeat):  # the rows in turn, round after round
            rows["loader, 0 workers"].append(loader_rate(data, args.batch, args.steps, 0))
            rows[f"loader, {args.workers} workers"].append(loader_rate(data, args.batch, args.steps, args.workers))
            rows["loader + to_model, 0 workers"].append(loader_rate(data, args.batch, args.steps, 0, convert=True))
    if args.step_clips_per_s:
        step, what = args.step_clips_per_s, "given with --step-clips-per-s"
    else:
        step, what = step_rate(args.batch, args.train_steps)
    print(f"training step: {what}\n")
    best = {k: max(v) for k, v in rows.items()}
    w = max(len(k) for k in [*best, "training step (consumes)"])
    print(f"{'measurement'.ljust(w)}  {'clips/s':>9}  {'x step':>8}")
    print(f"{'-' * w}  {'-' * 9}  {'-' * 8}")
    for k, v in best.items():
        print(f"{k.ljust(w)}  {v:9.0f}  {v / step:8.0f}")
    print(f"{'training step (consumes)'.ljust(w)}  {step:9.2f}  {1:8.0f}")
    print(f"\nloader (0 workers) clips/s / training-step clips/s: {best['loader, 0 workers'] / step:.0f}x")


if __name__ == "__main__":
    main()
