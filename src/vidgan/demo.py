"""`vidgan demo`: built-in Moving MNIST -> the sprites model (`sprites` recipe, small preset) trained for a time budget -> clips."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from vidgan.data.prepare import PrepareSettings, prepare
from vidgan.generation import generate
from vidgan.presets import resolve_config
from vidgan.run import Run
from vidgan.training.loop import train


@dataclass
class DemoResult:
    out: Path
    run_dir: Path
    samples_dir: Path
    steps: int
    seconds: float
    library_dir: Path | None = None


def run_demo(
    out: str | Path = "vidgan-demo",
    budget: float = 600.0,
    clips: int = 4000,
    size: int = 32,
    frames: int = 16,
    config: str | None = None,  # the recipe's base preset
    recipe: str | None = "sprites",  # Moving MNIST is objects moving over a plain background
    progress: bool = True,
    log=print,
) -> DemoResult:
    t0 = time.monotonic()
    out = Path(out)
    data_dir, run_dir, samples_dir = out / "data", out / "run", out / "samples"
    log(f"[1/3] preparing builtin:moving-mnist ({clips} clips of {frames}x{size}x{size}) in {data_dir}")
    prepare("builtin:moving-mnist", data_dir, PrepareSettings(size=size, frames=frames), n=clips, seed=0, progress=progress, log=log)
    # `budget` bounds the whole demo: training gets what preparing left, minus time to write the clips.
    train_budget = max(1.0, budget - (time.monotonic() - t0) - min(20.0, 0.05 * budget))
    overrides = {"data": str(data_dir), "train.time_budget": train_budget, "train.steps": 1_000_000}
    cfg = resolve_config(config, recipe=recipe, overrides=overrides)
    chosen = f"{recipe} recipe" if recipe else f"{config or 'small'} preset"
    resume = Run(run_dir).exists()
    log(
        f"[2/3] training {cfg.model.name} ({chosen}) for up to {train_budget:.0f} s in {run_dir}"
        + (" (continuing the earlier demo run)" if resume else "")
    )
    result = train(cfg, run_dir, resume=resume, progress=progress, log=log)
    library_dir = out / "library"
    log(f"[3/3] generating 16 clips into {samples_dir} and filing them in the library {library_dir}")
    generate(run_dir, samples_dir, {"n": 16, "seed": 0}, fmt="mp4", to_library=library_dir, tags=["demo"])
    seconds = time.monotonic() - t0
    log(
        f"done in {seconds:.0f} s ({result.step} training steps).\n"
        f"  grid of generated clips: {samples_dir / 'grid.gif'} (also grid.mp4)\n"
        f"  training samples over time: {run_dir / 'samples'}\n"
        f"  TensorBoard: tensorboard --logdir {run_dir / 'tb'}\n"
        f"  more clips: vidgan generate {run_dir} --n 64 --seed 1 --out {out / 'more'} --to-library {library_dir}\n"
        f"  browse the library (previews, provenance, downloads): vidgan serve {library_dir}"
    )
    return DemoResult(out, run_dir, samples_dir, result.step, seconds, library_dir)
