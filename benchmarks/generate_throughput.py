"""Generation throughput: `VideoPipeline` as it samples today (fp32) against the same generator in bf16.

The 64px VideoGAN generator (random weights: speed does not depend on them) makes `--n` clips of
64x64x32 in batches of `--batch`, end to end to uint8 (T, H, W, C) arrays:

    pipeline fp32      VideoPipeline(G, config)(n, seed): what `vidgan generate` runs
    bf16 channels-last the same calls under bf16 autocast, channels-last-3d weights and vidgan's CPU
                       bf16 conv kernels (vidgan.training.speed), on a copy of the generator

The two run in turn, `--repeat` rounds, best time of each kept; the pixel difference between the
two outputs is printed (bf16 rounding: a few levels of 255 at most). Printed last: the speed-up.

    python benchmarks/generate_throughput.py
    python benchmarks/generate_throughput.py --n 64 --batch 16 --device cuda

With --models, the `small` preset's generators of those models (random weights) sample 32x32x16
grey clips through `VideoPipeline` (fp32, what `vidgan generate` runs), in turn, best of --repeat;
printed last: each model's clips/s over the first model's.

    python benchmarks/generate_throughput.py --models videogan,ctvgan,sprites:sprites --n 64
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import resource
import time

THREADS = 2


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="clips per measurement (default 32)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--models",
        help="compare these models' samplers (small preset, 32x32x16) instead; NAME:RECIPE for a model with a recipe (sprites:sprites)",
    )
    args = ap.parse_args(argv)
    if args.models:
        return compare_models(args)

    import numpy as np
    import torch

    from vidgan.config import RunConfig
    from vidgan.models.registry import build_model
    from vidgan.pipeline import VideoPipeline
    from vidgan.presets import resolve_config
    from vidgan.training import matmul_convs, speed

    if args.device == "cpu":
        torch.set_num_threads(THREADS)
    device = torch.device(args.device)
    cfg: RunConfig = resolve_config("64px", model="videogan").with_data_shape(frames=32, resolution=64, channels=3)
    torch.manual_seed(0)
    G = build_model(cfg.model)[0].to(device)
    pipe = VideoPipeline(G, cfg)
    fast_pipe = VideoPipeline(speed.to_channels_last(copy.deepcopy(G)), cfg)
    dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16

    def fast():
        with torch.autocast(device.type, dtype=dtype), matmul_convs.MatmulConvs() if device.type == "cpu" else contextlib.nullcontext():
            return fast_pipe(n=args.n, seed=0, batch_size=args.batch)

    fns = {"pipeline fp32": lambda: pipe(n=args.n, seed=0, batch_size=args.batch), f"{str(dtype)[6:]} channels-last": fast}
    outs = {k: f() for k, f in fns.items()}  # warm-up, and the outputs to compare
    best = {k: float("inf") for k in fns}
    for _ in range(args.repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[k] = min(best[k], time.perf_counter() - t0)
    a, b = outs.values()
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    print(
        f"64px VideoGAN generator ({sum(p.numel() for p in G.parameters()) / 1e6:.1f}M parameters), {args.n} clips of 64x64x32 "
        f"in batches of {args.batch}, device {args.device}; best of {args.repeat}; torch {torch.__version__}"
    )
    print(
        f"output difference bf16 vs fp32: mean {diff.mean():.2f}, max {diff.max()} levels of 255; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (both paths, one process)\n"
    )
    w = max(len(k) for k in fns)
    print(f"{'path'.ljust(w)}  {'best s':>8}  {'clips/s':>8}")
    print(f"{'-' * w}  {'-' * 8}  {'-' * 8}")
    for k, t in best.items():
        print(f"{k.ljust(w)}  {t:8.2f}  {args.n / t:8.2f}")
    names = list(best)
    print(f"\nspeed-up of {names[1]} over the fp32 pipeline: {best[names[0]] / best[names[1]]:.2f}x")


def compare_models(args) -> None:
    import torch

    from vidgan.models.registry import build_model
    from vidgan.pipeline import VideoPipeline
    from vidgan.presets import resolve_config

    if args.device == "cpu":
        torch.set_num_threads(THREADS)
    pipes = {}
    for name in args.models.split(","):
        model, _, recipe = name.partition(":")  # sprites:sprites = the sprites model with its recipe (as `vidgan demo`)
        cfg = resolve_config("small", model=model, recipe=recipe or None).with_data_shape(frames=16, resolution=32, channels=1)
        torch.manual_seed(0)
        pipes[name] = VideoPipeline(build_model(cfg.model)[0].to(args.device), cfg)
        pipes[name](n=args.batch, seed=0, batch_size=args.batch)  # warm-up
    best = {k: float("inf") for k in pipes}
    for _ in range(args.repeat):
        for k, pipe in pipes.items():
            t0 = time.perf_counter()
            pipe(n=args.n, seed=0, batch_size=args.batch)
            best[k] = min(best[k], time.perf_counter() - t0)
    print(
        f"small preset generators, {args.n} clips of 32x32x16 (grey) in batches of {args.batch}, fp32, device {args.device}; best of {args.repeat}"
    )
    first = next(iter(best))
    for k, t in best.items():
        print(f"  {k:<12}{args.n / t:8.1f} clips/s{best[first] / t:7.2f}x {first}")


if __name__ == "__main__":
    main()
