"""Feature-extraction throughput of the metric networks, and whether bf16 keeps the effnet score.

What is measured (CPU, 2 threads by default; no GPU needed):

1. effnet-lite0 (the offline default behind fd_effnet2048_16f): clips/s for 16-frame clips at
   64x64 (resized to 224x224 inside the extractor, as the protocol says), in fp32 and in bf16
   autocast, both channels-last. Clips are built-in Moving MNIST (prepared into a temporary
   folder): set A (training digits), set B (held-out digits), and B with its frames shuffled.
   From the same features: fd(A, B) and fd(A, shuffled B) in each precision, and their
   relative change bf16 vs fp32 (the issue's rule: bf16 only where the score moves < 0.5%).
2. The time fd_effnet2048_16f takes at 64x64 on this machine, from the measured clips/s:
   2048 generated + 2048 real clips on a cold cache, 2048 generated with cached real stats.
3. i3d and inception throughput with randomly initialised full-size networks (speed does not
   depend on the weights; the real weights cannot be installed here): clips/s for 16-frame
   clips (i3d) and frames/s (inception).
Printed last: the bf16 / fp32 clips/s ratio of effnet-lite0.

Run (about 5-10 minutes on the 2-core CPU with the defaults; --clips 8 for a quick look):

    python benchmarks/metric_throughput.py
    python benchmarks/metric_throughput.py --clips 8 --skip-i3d
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vidgan.data.clips import ClipDataset
from vidgan.data.prepare import PrepareSettings, prepare
from vidgan.metrics.extractors import EffNetLite0
from vidgan.metrics.frechet import frechet_distance_rows


def effnet_pass(precision: str, sets: dict[str, np.ndarray], batch: int) -> tuple[float, dict[str, np.ndarray]]:
    net = EffNetLite0(precision=precision)
    net(torch.from_numpy(sets["A"][:1]))  # warm-up (oneDNN picks its kernels on the first call)
    rows, clips, start = {}, 0, time.perf_counter()
    for name, data in sets.items():
        rows[name] = np.concatenate([net(torch.from_numpy(data[i : i + batch]))["video"].numpy() for i in range(0, len(data), batch)])
        clips += len(data)
    return clips / (time.perf_counter() - start), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="clips per set (A, B, shuffled B)")
    parser.add_argument("--batch", type=int, default=8, help="clips per extractor call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-i3d", action="store_true", help="skip the (slow) i3d / inception timings")
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

    print(f"effnet-lite0, 16-frame clips at 64x64 -> 224x224, {args.threads} threads, {3 * args.clips} clips per precision")
    results = {}
    for precision in ("fp32", "bf16"):
        speed, rows = effnet_pass(precision, sets, args.batch)
        fd_real = frechet_distance_rows(rows["A"], rows["B"])
        fd_shuffled = frechet_distance_rows(rows["A"], rows["B shuffled"])
        results[precision] = (speed, fd_real, fd_shuffled)
        print(
            f"  {precision}: {speed:6.2f} clips/s ({16 * speed:6.1f} frames/s)   fd(A, B) = {fd_real:.4f}   fd(A, B shuffled) = {fd_shuffled:.4f}"
        )
    (s32, r32, h32), (s16, r16, h16) = results["fp32"], results["bf16"]
    print(
        f"  bf16 vs fp32 score change: fd(A, B) {100 * (r16 - r32) / r32:+.2f}%, fd(A, B shuffled) {100 * (h16 - h32) / h32:+.2f}%  (rule: within 0.5%)"
    )
    for precision, (speed, _, _) in results.items():
        print(
            f"  fd_effnet2048_16f at 64x64, {precision}: cold cache {2 * 2048 / speed / 60:.1f} min, cached real stats {2048 / speed / 60:.1f} min"
        )

    if not args.skip_i3d:
        from vidgan.metrics.fid import InceptionV3
        from vidgan.metrics.fvd import InceptionI3d

        x = torch.from_numpy(a[:2]).permute(0, 4, 1, 2, 3).float().expand(-1, 3, -1, -1, -1)
        i3d = InceptionI3d().eval()
        with torch.no_grad():
            i3d(x[:1, :, :4], rescale=True, resize=True, return_features=True)
            start = time.perf_counter()
            i3d(x, rescale=True, resize=True, return_features=True)
            print(
                f"i3d (random weights, full size), 16-frame clips at 64x64 -> 224x224 fp32: {2 / (time.perf_counter() - start):.3f} clips/s"
            )
            inception = InceptionV3().eval()
            frames = x[:, :, 0].contiguous()
            inception(frames[:1], return_features=True)
            start = time.perf_counter()
            inception(frames.repeat(4, 1, 1, 1), return_features=True)
            print(
                f"inception (random weights, full size), frames at 64x64 -> 299x299 fp32: {8 / (time.perf_counter() - start):.2f} frames/s"
            )

    print(f"effnet-lite0 bf16 / fp32 clips/s ratio: {s16 / s32:.2f}")


if __name__ == "__main__":
    main()
