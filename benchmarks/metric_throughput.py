"""Feature-extraction throughput of the metric networks per path, and whether each path keeps the score.

What is measured (CPU, 2 threads by default; no GPU needed), all in this one run:

1. effnet-lite0 (behind fd_effnet2048_16f) on 16-frame clips at 64x64, resized to 224x224 inside the
   extractor as the protocol says, through each path:
     torch fp32          the reference (the path every score used before ONNX Runtime)
     onnxruntime fp32    the default when `vidgan[fast]` is installed (same protocol, same name)
     torch bf16          autocast: another protocol, its metric names end in _bf16
   For each: clips/s, frames/s, achieved GFLOP/s (multiply-adds counted on the network), the ratio
   to the reference, and from the same features fd(A, B) and fd(A, shuffled B) with their change
   against the reference (a path may share the name only within 0.5%). A = training digits,
   B = held-out digits of built-in Moving MNIST.
2. fd_effnet2048_16f at 64x64 per path, from the measured speed: cold (2048 generated + 2048 real
   clips) and with cached real statistics (2048 generated).
3. i3d and inception throughput with randomly initialised full-size networks (speed does not
   depend on the weights; the real weights cannot be installed here).

    python benchmarks/metric_throughput.py                    # about 5 minutes on 2 cores
    python benchmarks/metric_throughput.py --clips 8 --skip-i3d
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vidgan.data.clips import ClipDataset
from vidgan.data.prepare import PrepareSettings, prepare
from vidgan.metrics.extractors import EffNetLite0
from vidgan.metrics.frechet import frechet_distance_rows
from vidgan.metrics.runtime import onnx_available

PATHS = {"torch fp32": ("fp32", "torch"), "onnxruntime fp32": ("fp32", "onnxruntime"), "torch bf16": ("bf16", "torch")}


def multiply_adds(net: torch.nn.Module, run) -> int:
    """Multiply-adds of `run()` through the network's convolutions and linear layers (hooks count them)."""
    total = 0
    convs = (torch.nn.Conv2d, torch.nn.Conv3d)

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, convs):
            total += output.numel() * module.in_channels // module.groups * int(np.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (*convs, torch.nn.Linear))]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return total


def effnet_pass(precision: str, runtime: str, sets: dict[str, np.ndarray], batch: int) -> tuple[float, dict[str, np.ndarray]]:
    net = EffNetLite0(precision=precision, runtime=runtime)
    net(torch.from_numpy(sets["A"][:batch]))  # warm-up (oneDNN / ONNX Runtime pick their kernels on the first calls)
    rows, clips, start = {}, 0, time.perf_counter()
    for name, data in sets.items():
        rows[name] = np.concatenate([net(torch.from_numpy(data[i : i + batch]))["video"].numpy() for i in range(0, len(data), batch)])
        clips += len(data)
    return clips / (time.perf_counter() - start), rows


USER_PATHS = ("torch fp32", "torch fp32 channels-last", "torch bf16")


def user_networks(sets: dict[str, np.ndarray], n: int) -> None:
    """I3D and InceptionV3 at full size with random weights (speed does not depend on the weights; the
    real ones cannot be installed here): clips/s per path and how far each path moves a Frechet
    distance between two sets of clips computed from its features (the same check as above)."""
    from vidgan.metrics.fid import InceptionV3
    from vidgan.metrics.fvd import InceptionI3d

    torch.manual_seed(0)
    nets = {
        "i3d": (
            InceptionI3d().eval(),
            torch.channels_last_3d,
            lambda net, x, f: net(x.contiguous(memory_format=f), rescale=True, resize=True, return_features=True),
        ),
        "inception": (
            InceptionV3().eval(),
            torch.channels_last,
            lambda net, x, f: net(x.transpose(1, 2).flatten(0, 1).contiguous(memory_format=f), return_features=True),
        ),
    }
    for name, (net, layout, call) in nets.items():
        clips = {
            k: torch.from_numpy(v[:n]).permute(0, 4, 1, 2, 3).float().expand(-1, 3, -1, -1, -1)
            for k, v in sets.items()
            if k != "B shuffled"
        }
        one = clips["A"][:1]
        gflop = 2 * multiply_adds(net, lambda net=net, call=call, one=one: call(net, one, torch.contiguous_format)) / 1e9
        print(f"{name} (random weights, full size), {n} clips of 16 frames at 64x64 per set (A, B), {gflop:.1f} GFLOP per clip:")
        print(f"  {'path':<26}{'clips/s':>9}{'GFLOP/s':>9}{'x ref':>7}{'fd(A,B) change':>16}")
        ref = None
        for path in USER_PATHS:
            fmt = layout if "channels-last" in path else torch.contiguous_format
            model = net.to(memory_format=fmt)
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if "bf16" in path else contextlib.nullcontext()
            feats, seconds = {}, 0.0
            with torch.inference_mode(), ctx:
                call(model, clips["A"][:1], fmt)  # warm-up
                for key, x in clips.items():
                    rows = []
                    for i in range(len(x)):
                        start = time.perf_counter()
                        rows.append(call(model, x[i : i + 1], fmt).float().reshape(1, -1, rows_width(name)).mean(1).numpy())
                        seconds += time.perf_counter() - start
                    feats[key] = np.concatenate(rows)
            speed, fd = 2 * n / seconds, frechet_distance_rows(feats["A"], feats["B"])
            ref = ref or (speed, fd)
            print(f"  {path:<26}{speed:>9.3f}{speed * gflop:>9.1f}{speed / ref[0]:>6.2f}x{100 * (fd - ref[1]) / ref[1]:>+15.3f}%")


def rows_width(name: str) -> int:
    return 400 if name == "i3d" else 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="clips per set (A, B, shuffled B)")
    parser.add_argument("--batch", type=int, default=8, help="clips per extractor call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-i3d", action="store_true", help="skip the (slow) i3d / inception timings")
    parser.add_argument("--skip-effnet", action="store_true", help="only the i3d / inception timings")
    parser.add_argument("--user-clips", type=int, default=6, help="clips per set for i3d / inception")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        settings = PrepareSettings(size=64, frames=16)
        quiet = {"progress": False, "log": lambda s: None}
        prepare("builtin:moving-mnist", Path(tmp) / "train", settings, n=args.clips, seed=0, **quiet)
        prepare("builtin:moving-mnist", Path(tmp) / "test", settings, n=args.clips, seed=1, split="test", **quiet)
        a = ClipDataset(Path(tmp) / "train").get_batch(range(args.clips))[0].numpy()
        b = ClipDataset(Path(tmp) / "test").get_batch(range(args.clips))[0].numpy()
    rng = np.random.default_rng(0)
    sets = {"A": a, "B": b, "B shuffled": np.stack([c[rng.permutation(len(c))] for c in b])}

    if not args.skip_effnet:
        effnet(sets, args)
    if not args.skip_i3d:
        user_networks(sets, args.user_clips)


def effnet(sets: dict[str, np.ndarray], args) -> None:
    net = EffNetLite0(runtime="torch").net
    gmacs = multiply_adds(net, lambda: net.extract_features(torch.zeros(1, 3, 224, 224))) / 1e9
    print(f"effnet-lite0, 16-frame clips at 64x64 -> 224x224 ({2 * gmacs:.2f} GFLOP per frame), {args.threads} threads, "
          f"{3 * len(sets['A'])} clips per path")  # fmt: skip
    results = {}
    for label, (precision, runtime) in PATHS.items():
        if runtime == "onnxruntime" and not onnx_available():
            print(f"  {label}: skipped (pip install 'vidgan[fast]')")
            continue
        speed, rows = effnet_pass(precision, runtime, sets, args.batch)
        results[label] = (speed, frechet_distance_rows(rows["A"], rows["B"]), frechet_distance_rows(rows["A"], rows["B shuffled"]))
    ref_speed, ref_real, ref_shuffled = results["torch fp32"]
    print(f"  {'path':<18}{'clips/s':>9}{'frames/s':>10}{'GFLOP/s':>9}{'x ref':>7}{'fd(A,B)':>10}{'change':>9}{'fd(A,Bs)':>10}{'change':>9}"
          f"{'2048 cold':>11}{'cached':>9}")  # fmt: skip
    for label, (speed, fd_real, fd_shuffled) in results.items():
        print(
            f"  {label:<18}{speed:>9.2f}{16 * speed:>10.1f}{16 * speed * 2 * gmacs:>9.1f}{speed / ref_speed:>6.2f}x"
            f"{fd_real:>10.3f}{100 * (fd_real - ref_real) / ref_real:>+8.2f}%{fd_shuffled:>10.3f}"
            f"{100 * (fd_shuffled - ref_shuffled) / ref_shuffled:>+8.2f}%{2 * 2048 / speed / 60:>9.1f} m{2048 / speed / 60:>7.1f} m"
        )
    print("  (fd_effnet2048_16f at 64x64: 'cold' = 2048 generated + 2048 real clips, 'cached' = real statistics from the cache;"
          " a path may keep the metric name only if both fd changes are within 0.5%)")  # fmt: skip
    fast = results.get("onnxruntime fp32")
    if fast:
        print(f"effnet-lite0 onnxruntime / torch fp32 clips/s ratio: {fast[0] / ref_speed:.2f}")


if __name__ == "__main__":
    main()
