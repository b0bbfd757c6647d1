"""What small flaws cost on the quality benchmark's scores: the training clips themselves, and the same
clips slightly degraded, scored against the held-out clips exactly as benchmarks/quality.py scores a
generator (same data, feature network, n and k).

A generator can do no better than the first row (the data floor); each other row is a flaw a generator
might have, applied to otherwise perfect clips, so its distance is what that flaw alone costs:
  half-pixel  every frame shifted by half a pixel left and up (bilinear resampling, as a layer moved
              by a fraction of a pixel is)
  blur-0.5    Gaussian blur, sigma 0.5 px;  blur-1: sigma 1 px
  noise-8     Gaussian noise, std 8 of 255
  dim-0.8     brightness times 0.8

    python benchmarks/metric_sensitivity.py --datasets moving-mnist --work q
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

FLAWS = ["as-is", "half-pixel", "blur-0.5", "blur-1", "noise-8", "dim-0.8"]


def degrade(clips: np.ndarray, flaw: str) -> np.ndarray:
    """(N, T, H, W, C) uint8 clips with one flaw (FLAWS), as uint8."""
    import torch
    import torch.nn.functional as F

    if flaw == "as-is":
        return clips
    if flaw == "noise-8":
        return np.clip(clips + np.random.default_rng(0).normal(0, 8, clips.shape), 0, 255).round().astype(np.uint8)
    if flaw == "dim-0.8":
        return (clips * 0.8).round().astype(np.uint8)
    x = torch.from_numpy(clips).float().permute(0, 1, 4, 2, 3).flatten(0, 1) / 255  # (N*T, C, H, W)
    n, c, h, w = x.shape
    if flaw == "half-pixel":
        theta = torch.tensor([[1.0, 0.0, 1.0 / w], [0.0, 1.0, 1.0 / h]]).expand(n, 2, 3)  # half a pixel = 1/w units
        x = F.grid_sample(x, F.affine_grid(theta, [n, c, h, w], align_corners=False), align_corners=False)
    elif flaw.startswith("blur-"):
        sigma = float(flaw.split("-")[1])
        k = torch.exp(-(torch.arange(-3.0, 4.0) ** 2) / (2 * sigma**2))
        k = (k / k.sum()).repeat(c, 1, 1, 1)
        x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), k.view(c, 1, 1, 7), groups=c)
        x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), k.view(c, 1, 7, 1), groups=c)
    else:
        raise ValueError(f"unknown flaw {flaw!r}; flaws: {', '.join(FLAWS)}")
    out = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return out.unflatten(0, clips.shape[:2]).permute(0, 1, 3, 4, 2).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="moving-mnist")
    ap.add_argument("--flaws", default=",".join(FLAWS))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=None, help="clip size (default: the quality benchmark's per dataset)")
    ap.add_argument("--clips", type=int, default=4000, help="moving-mnist training clips (as the quality benchmark)")
    ap.add_argument("--eval-n", type=int, default=256)
    ap.add_argument("--effnet-size", type=int, default=224)
    ap.add_argument("--work", type=Path, help="folder for data (the quality benchmark's --work reuses its clips)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    import quality  # benchmarks/quality.py, beside this script (the script's folder is on sys.path)

    work = args.work or Path(tempfile.mkdtemp(prefix="vidgan-sensitivity-"))
    rows = []
    for dataset in args.datasets.split(","):
        size = args.size or quality.DATASETS[dataset]
        train_dir, held_dir = quality.prepare_data(dataset, size, args.frames, args.clips, args.eval_n, work)
        clips = quality.folder_clips(train_dir, args.eval_n, args.frames)  # the floor row's clips
        for flaw in args.flaws.split(","):
            s = quality.score(degrade(clips, flaw), held_dir, args, work / "cache")
            rows.append({"dataset": dataset, "flaw": flaw, **s})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\ntraining clips with one flaw vs held-out clips ({args.eval_n} clips, fd/kd_effnet at {args.effnet_size} px, k = 5)")
    print("| dataset | clips | fd_effnet | kd_effnet | precision | recall | x floor |\n|---|---|---|---|---|---|---|")
    floors = {r["dataset"]: r["fd"] for r in rows if r["flaw"] == "as-is"}
    for r in rows:
        floor = floors.get(r["dataset"])
        times = f"{r['fd'] / floor:.1f}x" if floor else ""
        print(f"| {r['dataset']} | {r['flaw']} | {r['fd']:.1f} | {r['kd']:.4f} | {r['precision']:.2f} | {r['recall']:.2f} | {times} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
