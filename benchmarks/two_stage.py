"""The two-stage generator (VQ-VAE + Transformer prior) on builtin:moving-mnist under a CPU budget, beside VideoGAN.

Trains the VQ-VAE for --vq-share of --budget seconds and the prior for the rest, then prints:
- VQ-VAE reconstruction PSNR on HELD-OUT clips (digits it never saw) and codebook use;
- training clips/s of both stages (the log's mean, first logged interval dropped);
- sampling clips/s of the prior + decoder with and without the KV cache (same clips: checked);
- fd_effnet{n}_16f of --n generated clips against --n held-out real clips, measured as
  benchmarks/model_zoo.py does (EfficientNet-Lite0 features at 112 px, so the numbers compare runs
  of these two scripts only), for the two-stage model and for VideoGAN trained for the same total
  budget with the same preset. Lower is better. Ratios (cache speed-up, fd vs VideoGAN) come last.

    python benchmarks/two_stage.py --budget 600                 # 10 CPU minutes per model
    python benchmarks/two_stage.py --budget 120 --clips 500 --n 128 --json two_stage.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds per model (two-stage: both stages together)")
    ap.add_argument("--vq-share", type=float, default=0.5, help="share of the two-stage budget spent on the VQ-VAE")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--clips", type=int, default=2000, help="training clips")
    ap.add_argument("--n", type=int, default=256, help="generated and held-out clips for the quality distance")
    ap.add_argument("--sample-n", type=int, default=8, help="clips for the sampling-speed measurement")
    ap.add_argument("--no-gan", action="store_true", help="skip the VideoGAN baseline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from vidgan.data.clips import ClipDataset
    from vidgan.data.prepare import PrepareSettings, prepare
    from vidgan.data.video_io import to_model
    from vidgan.metrics.evaluate import EvalOptions, compute
    from vidgan.metrics.sources import ArraySource, DatasetSource
    from vidgan.models.vqvae import psnr
    from vidgan.pipeline import VideoPipeline
    from vidgan.presets import load_config
    from vidgan.run import Run
    from vidgan.training.loop import train
    from vidgan.training.two_stage import load_vqvae

    work = Path(tempfile.mkdtemp(prefix="vidgan-two-stage-"))
    quiet = {"progress": False, "log": lambda s: None}
    settings = PrepareSettings(size=args.size, frames=args.frames)
    train_dir, held_dir = work / "train", work / "heldout"
    prepare("builtin:moving-mnist", train_dir, settings, n=args.clips, seed=0, **quiet)
    prepare("builtin:moving-mnist", held_dir, settings, n=args.n, seed=1, split="test", **quiet)
    metric = f"fd_effnet{args.n}_{args.frames}f"
    options = EvalOptions(metrics=metric, effnet_size=112, cache=False, progress=False)
    long = {"train.steps": 10**7, "train.checkpoint_every": 10**7, "train.sample_every": 10**7}
    row: dict = {}

    print(f"VQ-VAE: training {args.budget * args.vq_share:g} s ...", flush=True)
    cfg = load_config(
        args.preset, {"data": str(train_dir), "model.name": "vqvae", "train.time_budget": args.budget * args.vq_share, **long}
    )
    result = train(cfg, work / "vq", **quiet)
    model, _, _ = load_vqvae(work / "vq")
    held = to_model(ClipDataset(held_dir).get_batch(range(min(args.n, 128)))[0])
    with torch.no_grad():
        codes = torch.cat([model.encode(held[i : i + 32]) for i in range(0, len(held), 32)])
        recon = torch.cat([model.decode(codes[i : i + 32]) for i in range(0, len(codes), 32)])
    row |= {
        "vq_steps": result.step,
        "vq_clips_per_s": Run(work / "vq").mean_speed(),
        "psnr_heldout": psnr(held, recon),
        "codes_used": int(len(codes.unique())),
        "codebook_size": cfg.vq.codebook_size,
        "grid": list(codes.shape[1:]),
    }

    print(f"prior: training {args.budget * (1 - args.vq_share):g} s ...", flush=True)
    cfg = load_config(
        args.preset,
        {
            "data": str(train_dir),
            "model.name": "videogpt",
            "vq.vqvae_run": str(work / "vq"),
            "train.time_budget": args.budget * (1 - args.vq_share),
            **long,
        },
    )
    result = train(cfg, work / "prior", **quiet)
    row |= {"prior_steps": result.step, "prior_clips_per_s": Run(work / "prior").mean_speed(), "prior_loss": result.loss}

    pipe = VideoPipeline.from_pretrained(work / "prior")
    timings = {}
    for cache in (True, False):
        pipe.generator.use_cache = cache
        t0 = time.perf_counter()
        clips = pipe(n=args.sample_n, seed=0)
        timings[cache] = (args.sample_n / (time.perf_counter() - t0), clips)
    assert np.array_equal(timings[True][1], timings[False][1]), "KV-cache and full-recompute samples differ"
    pipe.generator.use_cache = True
    row |= {"sample_clips_per_s_cache": timings[True][0], "sample_clips_per_s_no_cache": timings[False][0]}
    fake = pipe(n=args.n, seed=123)
    row["fd_effnet"] = compute(ArraySource(fake), DatasetSource(held_dir), options).records[0]["value"]

    gan = None
    if not args.no_gan:
        print(f"videogan: training {args.budget:g} s ...", flush=True)
        cfg = load_config(args.preset, {"data": str(train_dir), "model.name": "videogan", "train.time_budget": args.budget, **long})
        result = train(cfg, work / "gan", **quiet)
        fake = VideoPipeline.from_pretrained(work / "gan")(n=args.n, seed=123)
        gan = {
            "steps": result.step,
            "clips_per_s": Run(work / "gan").mean_speed(),
            "fd_effnet": compute(ArraySource(fake), DatasetSource(held_dir), options).records[0]["value"],
        }

    print(
        f"\npreset {args.preset}, moving-mnist {args.size}x{args.size}x{args.frames}, {args.clips} training clips, "
        f"{args.budget:g} s per model ({args.vq_share:.0%} VQ-VAE), {args.threads} threads, {metric} at 112 px vs {args.n} held-out clips"
    )
    print(
        f"VQ-VAE      steps {row['vq_steps']:>6}  train {row['vq_clips_per_s']:7.1f} clips/s  held-out recon PSNR {row['psnr_heldout']:.2f} dB  "
        f"codes used {row['codes_used']}/{row['codebook_size']}  token grid {'x'.join(map(str, row['grid']))}"
    )
    print(
        f"prior       steps {row['prior_steps']:>6}  train {row['prior_clips_per_s']:7.1f} clips/s  loss {row['prior_loss']:.3f} nats/token"
    )
    print(
        f"sampling    KV cache {row['sample_clips_per_s_cache']:.2f} clips/s, no cache {row['sample_clips_per_s_no_cache']:.2f} clips/s (identical clips)"
    )
    print(
        f"{metric:<17}two-stage {row['fd_effnet']:.2f}"
        + (f", videogan {gan['fd_effnet']:.2f} ({gan['steps']} steps, {gan['clips_per_s']:.1f} clips/s)" if gan else "")
    )
    print("\nratios:")
    print(f"  sampling speed, KV cache / no cache: {row['sample_clips_per_s_cache'] / row['sample_clips_per_s_no_cache']:.2f}x")
    if gan:
        print(f"  {metric}, two-stage / videogan: {row['fd_effnet'] / gan['fd_effnet']:.2f}x (lower is better)")
    if args.json:
        args.json.write_text(json.dumps({"two_stage": row, "videogan": gan, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))


if __name__ == "__main__":
    main()
