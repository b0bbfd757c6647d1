"""`vidgan` command line: parse, call the API, print. Errors are one line and exit 1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train GAN video generators on your own clips.")


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1)


def _known_errors() -> tuple[type[Exception], ...]:
    from vidgan.data.builtin import BuiltinDataError
    from vidgan.data.clips import DatasetError
    from vidgan.data.prepare import PrepareError
    from vidgan.data.video_io import VideoError
    from vidgan.training.checkpoint import CheckpointError
    from vidgan.training.loop import NonFiniteLossError, RunDirError
    from vidgan.text import TextModelError

    return (VideoError, PrepareError, DatasetError, BuiltinDataError, RunDirError, NonFiniteLossError, CheckpointError, TextModelError, ValueError, FileNotFoundError)


@app.command()
def prepare(
    src: str = typer.Argument(..., help="folder of videos (searched recursively), or builtin:moving-mnist|shapes|sample-clips"),
    out: Path = typer.Argument(..., help="output folder for the clip shards"),
    size: int = typer.Option(64, help="clip height and width (shorter side resized, then centre crop)"),
    frames: int = typer.Option(16, help="frames per clip"),
    fps: Optional[float] = typer.Option(None, help="resample videos to this frame rate (default: keep the source rate)"),
    stride: Optional[int] = typer.Option(None, help="frames between clip starts (default: --frames, no overlap)"),
    n: Optional[int] = typer.Option(None, help="builtin datasets: number of clips"),
    seed: int = typer.Option(0, help="builtin datasets: random seed"),
    digits: int = typer.Option(2, help="builtin:moving-mnist: digits per clip"),
    force: bool = typer.Option(False, help="rebuild OUT from scratch"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Cut videos into fixed-length clips stored as uint8 shards (+ index.json, skipped.json)."""
    from vidgan.data.prepare import PrepareSettings, prepare as run_prepare

    try:
        run_prepare(src, out, PrepareSettings(size=size, frames=frames, fps=fps, stride=stride), n=n, seed=seed, digits=digits, force=force, progress=progress)
    except _known_errors() as err:
        _fail(err)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the finished shards in {out} are kept; run the same command again to continue", err=True)
        raise typer.Exit(130)


@app.command()
def train(
    data: Optional[Path] = typer.Argument(None, help="prepared dataset folder (optional with --resume)"),
    out: Path = typer.Option(..., "--out", help="run folder: config.json, checkpoints/, samples/, tb/, log.jsonl"),
    config: str = typer.Option("small", help="preset (tiny, small, 64px, 128px) or a YAML file"),
    resume: bool = typer.Option(False, help="continue the run in --out from its newest checkpoint"),
    model: Optional[str] = typer.Option(None, help="videogan, videogan-2stream, tgan, mocogan (default: the preset's)"),
    loss: Optional[str] = typer.Option(None, help="nonsat, hinge, wgan or lsgan"),
    penalty: Optional[str] = typer.Option(None, help="none, r1 or gp (WGAN-GP)"),
    aug: Optional[str] = typer.Option(None, help='DiffAugment policy for small datasets, e.g. "color,translation,cutout"'),
    condition: Optional[str] = typer.Option(None, help="none, class (folder labels), text (captions) or first-frame (image-to-video)"),
    steps: Optional[int] = typer.Option(None, help="total training steps"),
    batch_size: Optional[int] = typer.Option(None, help="global batch size (split across torchrun processes)"),
    budget: Optional[float] = typer.Option(None, help="stop after this many seconds (checkpoint saved)"),
    seed: Optional[int] = typer.Option(None),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda if present)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train a video GAN. Multi-process: torchrun --nproc_per_node N -m vidgan train ..."""
    from vidgan.config import RunConfig, load_config
    from vidgan.training.loop import train as run_train

    try:
        if resume and (out / "config.json").exists():
            cfg = RunConfig.load(out / "config.json")
        else:
            cfg = load_config(config)
        if data is not None:
            cfg.data = str(data)
        if not cfg.data:
            raise ValueError("no dataset given: pass DATA (a folder made by `vidgan prepare`)")
        for key, value in {"steps": steps, "batch_size": batch_size, "time_budget": budget, "seed": seed}.items():
            if value is not None:
                setattr(cfg.train, key, value)
        for section, key, value in [("model", "name", model), ("model", "condition", condition), ("loss", "name", loss), ("loss", "penalty", penalty), ("loss", "augment", aug)]:
            if value is not None:
                setattr(getattr(cfg, section), key, value)
        result = run_train(cfg, out, resume=resume, device=device, progress=progress)
    except _known_errors() as err:
        _fail(err)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary line, not one per process
        typer.echo(f"{result.run_dir}: step {result.step}, loss D {result.loss_d:.4f} G {result.loss_g:.4f}")


@app.command()
def generate(
    run: Path = typer.Argument(..., help="run folder, checkpoint folder, or saved pipeline folder"),
    out: Path = typer.Option(..., "--out", help="folder for the clips"),
    n: int = typer.Option(16, help="number of clips"),
    seed: int = typer.Option(0, help="same seed, same clips"),
    format: str = typer.Option("mp4", help="mp4, gif, webm or png (a folder of frames per clip)"),
    step: Optional[int] = typer.Option(None, help="checkpoint step (default: newest)"),
    ema: bool = typer.Option(True, help="use the EMA generator"),
    grid: bool = typer.Option(True, help="also write grid.gif / grid.mp4"),
    label: Optional[int] = typer.Option(None, help="class index, for class-conditional models"),
    text: Optional[str] = typer.Option(None, help="a sentence, for text-conditional models"),
    first_frame: Optional[Path] = typer.Option(None, help="image to animate, for image-to-video models"),
    frames: Optional[int] = typer.Option(None, help="clip length, if the model can run longer than trained (tgan, mocogan)"),
    truncation: Optional[float] = typer.Option(None, help="redraw noise values beyond +-T (e.g. 1.0): fewer, more typical clips"),
    hold: Optional[str] = typer.Option(None, help="mocogan: 'content' (one subject, varied motion) or 'motion' (one motion, varied subjects)"),
    interpolate: Optional[tuple[int, int]] = typer.Option(None, help="SEED_A SEED_B: --n clips morphing from one seed's clip to the other's"),
    device: str = typer.Option("cpu"),
) -> None:
    """Sample clips from a trained generator."""
    from vidgan.pipeline import VideoPipeline, load_image, save_clips

    try:
        pipe = VideoPipeline.from_pretrained(run, step=step, ema=ema, device=device)
        m = pipe.config.model
        frame = None if first_frame is None else load_image(first_frame, m.resolution, m.channels)
        condition_args = {"label": label, "first_frame": frame, "text": text}
        if interpolate:
            clips = pipe.interpolate(interpolate[0], interpolate[1], steps=n, truncation=truncation, **condition_args)
        else:
            clips = pipe(n=n, seed=seed, frames=frames, truncation=truncation, hold=hold, **condition_args)
        condition = {k: v for k, v in {"label": label, "text": text, "first_frame": first_frame and str(first_frame), "frames": frames, "truncation": truncation, "interpolate": interpolate, "hold": hold}.items() if v is not None}
        paths = save_clips(pipe, clips, out, fmt=format, seed=seed, grid=grid, condition=condition)
        if interpolate:  # the morph as one video: the clips one after another
            from vidgan.data.video_io import write_video

            write_video(out / f"interpolation.{'mp4' if format == 'png' else format}", np.concatenate(list(clips)), fps=pipe.fps)
    except _known_errors() as err:
        _fail(err)
    typer.echo(f"wrote {len(paths)} clips to {out}" + (f" (preview: {out / 'grid.gif'})" if grid else ""))


@app.command()
def demo(
    out: Path = typer.Option(Path("vidgan-demo"), help="folder for the dataset, run and samples"),
    budget: float = typer.Option(600.0, help="seconds for the whole demo (most of it training)"),
    clips: int = typer.Option(4000, help="Moving MNIST clips to prepare"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Prepare built-in Moving MNIST, train a small VideoGAN for --budget seconds, generate clips."""
    from vidgan.demo import run_demo

    try:
        run_demo(out, budget=budget, clips=clips, progress=progress)
    except _known_errors() as err:
        _fail(err)


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="vidgan")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
