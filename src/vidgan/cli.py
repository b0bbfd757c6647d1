"""`vidgan` command line: parse, call the API, print. Errors are one line and exit 1."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import typer

from vidgan.errors import debugging, describe, fail, known_errors

# Plain click errors (no rich panels): a usage error is the usage line and one "Error: ..." line.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Train GAN video generators on your own clips.",
)


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="show Python tracebacks instead of one-line errors (also VIDGAN_DEBUG=1)"),
) -> None:
    if debug:
        os.environ["VIDGAN_DEBUG"] = "1"


@app.command()
def prepare(
    src: str = typer.Argument(..., help="folder of videos (searched recursively), or builtin:moving-mnist|shapes|sample-clips"),
    out: Path = typer.Argument(..., help="output folder for the clip shards"),
    size: int = typer.Option(64, min=8, max=1024, help="clip height and width (shorter side resized, then centre crop)"),
    frames: int = typer.Option(16, min=1, max=1024, help="frames per clip"),
    fps: float | None = typer.Option(None, min=0.01, max=1000.0, help="resample videos to this frame rate (default: keep the source rate)"),
    stride: int | None = typer.Option(None, min=1, help="frames between clip starts (default: --frames, no overlap)"),
    n: int | None = typer.Option(None, min=1, max=10_000_000, help="builtin datasets: number of clips"),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="builtin datasets: random seed"),
    digits: int = typer.Option(2, min=1, max=10, help="builtin:moving-mnist: digits per clip"),
    split: str = typer.Option("train", help="builtin:moving-mnist: 'train' or 'test' digits (held-out real clips for evaluation)"),
    force: bool = typer.Option(False, help="rebuild OUT from scratch"),
    any_size: bool = typer.Option(False, help="allow a --size that is not a power of two (no model trains on it; evaluation can use it)"),
    check: bool = typer.Option(True, help="refuse sizes whose memory or disk need exceeds what this machine has (--no-check: try anyway)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Cut videos into fixed-length clips stored as uint8 shards (+ index.json, skipped.json)."""
    from vidgan.data.prepare import PrepareSettings
    from vidgan.data.prepare import prepare as run_prepare

    if size & (size - 1) and not any_size:
        below = 1 << (size.bit_length() - 1)
        fail(
            f"--size {size}: the models train on powers of two (8, 16, 32, 64, 128, ...); use --size {below} or {below * 2}, or --any-size"
        )
    try:
        run_prepare(
            src,
            out,
            PrepareSettings(size=size, frames=frames, fps=fps, stride=stride),
            n=n,
            seed=seed,
            digits=digits,
            split=split,
            force=force,
            progress=progress,
            check=check,
        )
    except known_errors() as err:
        fail(err)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the finished shards in {out} are kept; run the same command again to continue", err=True)
        raise typer.Exit(130) from None


@app.command()
def train(
    data: Path | None = typer.Argument(None, help="prepared dataset folder (optional with --resume)"),
    out: Path = typer.Option(..., "--out", help="run folder: config.json, checkpoints/, samples/, tb/, log.jsonl"),
    config: str | None = typer.Option(None, help="preset (tiny, small, 64px, 128px) or a YAML file (default: the recipe's, else small)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its newest checkpoint"),
    model: str | None = typer.Option(
        None, help="ctvgan, sprites, videogan, videogan-2stream, tgan, mocogan, vqvae, videogpt (default: the preset's)"
    ),
    recipe: str | None = typer.Option(
        None,
        help="settings for a kind of data (src/vidgan/configs/recipes/): sprites (objects moving over a plain background, as vidgan demo)",
    ),
    loss: str | None = typer.Option(None, help="nonsat, hinge, wgan or lsgan"),
    penalty: str | None = typer.Option(None, help="none, r1 or gp (WGAN-GP)"),
    aug: str | None = typer.Option(
        None, help='DiffAugment policy for small datasets, e.g. "color,translation,cutout"; "auto": that one below 1,000 clips, none above'
    ),
    condition: str | None = typer.Option(None, help="none, class (folder labels), text (captions) or first-frame (image-to-video)"),
    steps: int | None = typer.Option(None, min=1, help="total training steps"),
    batch_size: int | None = typer.Option(None, min=1, help="global batch size (split across torchrun processes)"),
    budget: float | None = typer.Option(None, min=0.001, help="stop after this many seconds (checkpoint saved)"),
    eval_every: int | None = typer.Option(
        None, min=0, help="every N steps, score the EMA generator against the data (train.eval_metrics, eval_n) into RUN/metrics.jsonl"
    ),
    seed: int | None = typer.Option(None, min=0, max=2**63 - 1),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda if present)"),
    precision: str | None = typer.Option(
        None, help="auto, fp32, bf16 or fp16 (auto: bf16 on CPUs with bf16 matrix units and Ampere+ GPUs, fp16 on older GPUs)"
    ),
    compile: bool | None = typer.Option(
        None, "--compile/--no-compile", help="torch.compile G and D (falls back to eager if compiling fails)"
    ),
    accum: int | None = typer.Option(
        None, min=1, help="gradient accumulation: split each batch into this many micro-batches (same update, less memory)"
    ),
    vqvae: Path | None = typer.Option(
        None, "--vqvae", help="--model videogpt: the VQ-VAE run (`--model vqvae`) whose tokens the prior learns"
    ),
    tokens: Path | None = typer.Option(
        None,
        "--tokens",
        help="--model videogpt: token folder from `vidgan tokenize` (default: RUN/tokens of --vqvae if it matches DATA, else encoded at start)",
    ),
    settings: list[str] | None = typer.Option(
        None, "--set", help="any config setting, SECTION.KEY=VALUE (repeatable), e.g. --set vq.adversarial=0.1 --set train.lr_d=4e-4"
    ),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train a video GAN. Multi-process: torchrun --nproc_per_node N -m vidgan train ..."""
    from vidgan.presets import apply_settings, changed_setting, resolve_config, with_overrides
    from vidgan.run import Run
    from vidgan.training.loop import train as run_train

    try:
        chosen = {
            "data": data and str(data), "train.steps": steps, "train.batch_size": batch_size, "train.time_budget": budget,
            "train.seed": seed, "train.eval_every": eval_every, "train.precision": precision, "train.compile": compile,
            "train.grad_accum": accum, "model.condition": condition, "loss.name": loss,
            "loss.penalty": penalty, "loss.augment": aug, "vq.vqvae_run": vqvae and str(vqvae), "vq.tokens": tokens and str(tokens),
        }  # fmt: skip
        overrides = {k: v for k, v in chosen.items() if v is not None}
        if resume and not Run(out).exists():
            raise ValueError(f"{out}: no run to resume (no config.json there); check --out, or start it without --resume")
        if resume:
            cfg = apply_settings(with_overrides(Run(out).config(), overrides), settings or [])
            if recipe is not None or model is not None or config is not None:  # the same command again: honoured if it agrees
                given = " ".join(f"--{k} {v}" for k, v in (("config", config), ("model", model), ("recipe", recipe)) if v is not None)
                differs = changed_setting(
                    cfg, resolve_config(config, model=model, recipe=recipe, overrides=overrides, settings=settings or [])
                )
                if differs:
                    raise ValueError(f"{given} gives another {differs} than the run in {out} was started with; a resumed run keeps "
                                     f"its settings: drop {given}, or start a new run with another --out")  # fmt: skip
        else:
            cfg = resolve_config(config, model=model, recipe=recipe, overrides=overrides, settings=settings or [])
        if not cfg.data:
            raise ValueError("no dataset given: pass DATA (a folder made by `vidgan prepare`)")
        result = run_train(cfg, out, resume=resume, device=device, progress=progress)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        fail(f"{err.filename or out}: no space left on the device; the newest complete checkpoint is kept: "
             f"free some space, then continue with `vidgan train --resume --out {out}`")  # fmt: skip
    except known_errors() as err:
        fail(err)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary line, not one per process
        typer.echo(result.summary())


@app.command()
def tokenize(
    run: Path = typer.Argument(..., help="a VQ-VAE run (`vidgan train DATA --model vqvae --out RUN`)"),
    data: Path = typer.Argument(..., help="prepared dataset folder to turn into token grids"),
    out: Path | None = typer.Option(None, "--out", help="folder for tokens.npy + tokens.json (default: RUN/tokens)"),
    step: int | None = typer.Option(None, min=0, help="checkpoint step (default: newest)"),
    batch_size: int = typer.Option(32, min=1, help="clips per encoder batch"),
    device: str = typer.Option("cpu"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Write the VQ-VAE token grid of every clip of DATA (uint16 (N, t, h, w) in tokens.npy)."""
    from vidgan.training.two_stage import tokenize as run_tokenize

    try:
        folder = run_tokenize(run, data, out, step=step, batch_size=batch_size, progress=progress, device=device)
    except known_errors() as err:
        fail(err)
    info = json.loads((folder / "tokens.json").read_text())
    typer.echo(
        f"wrote {info['num_clips']} token grids {'x'.join(map(str, info['grid']))} ({info['codes_used']} of {info['codebook_size']} codes used) to {folder / 'tokens.npy'}"
    )


@app.command()
def generate(
    run: Path = typer.Argument(..., help="run folder, checkpoint folder, or saved pipeline folder"),
    out: Path = typer.Option(..., "--out", help="folder for the clips"),
    n: int = typer.Option(16, min=1, max=100_000, help="number of clips"),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="same seed, same clips"),
    format: str = typer.Option("mp4", help="mp4, gif, webm or png (a folder of frames per clip)"),
    step: int | None = typer.Option(None, min=0, help="checkpoint step (default: newest)"),
    ema: bool = typer.Option(True, help="use the EMA generator"),
    grid: bool = typer.Option(True, help="also write grid.gif / grid.mp4"),
    label: str | None = typer.Option(None, help="class name or index, for class-conditional models"),
    text: str | None = typer.Option(None, help="a sentence, for text-conditional models"),
    first_frame: Path | None = typer.Option(None, help="image to animate, for image-to-video models"),
    frames: int | None = typer.Option(
        None, min=1, max=4096, help="clip length, if the model can run longer than trained (tgan, mocogan, ctvgan, sprites)"
    ),
    truncation: float | None = typer.Option(None, min=0.01, help="redraw noise values beyond +-T (e.g. 1.0): fewer, more typical clips"),
    hold: str | None = typer.Option(None, help="mocogan: 'content' (one subject, varied motion) or 'motion' (one motion, varied subjects)"),
    interpolate: tuple[int, int] | None = typer.Option(None, help="SEED_A SEED_B: --n clips morphing from one seed's clip to the other's"),
    temperature: float | None = typer.Option(
        None, min=0.01, help="videogpt: token sampling temperature (default: the run's vq.temperature)"
    ),
    top_k: int | None = typer.Option(
        None, min=0, help="videogpt: sample among the k most likely tokens (0 = all; default: the run's vq.top_k)"
    ),
    time_scale: float | None = typer.Option(
        None,
        min=0.001,
        max=1000.0,
        help="ctvgan, sprites: frame i shows time i * T (0.5 = slow motion with twice the frames, 2 = twice as fast)",
    ),
    device: str = typer.Option("cpu"),
    to_library: Path | None = typer.Option(
        None, "--to-library", help="also file the clips in this library (created if missing), with their provenance"
    ),
) -> None:
    """Sample clips from a trained generator."""
    from vidgan.generation import generate as run_generate

    call = {"n": n, "seed": seed, "label": label, "text": text, "frames": frames, "truncation": truncation, "hold": hold}
    call |= {"interpolate": interpolate, "temperature": temperature, "top_k": top_k, "time_scale": time_scale}
    try:
        done = run_generate(
            run, out, call, fmt=format, grid=grid, step=step, ema=ema, device=device, first_frame=first_frame, to_library=to_library
        )
    except known_errors() as err:
        fail(err)
    paths, filed = done.paths, done.filed
    typer.echo(f"wrote {len(paths)} clips to {out}" + (f" (preview: {out / 'grid.gif'})" if grid else ""))
    if to_library is not None:
        flagged = sum(r.status == "duplicate" for r in filed)
        typer.echo(
            f"filed {len(filed)} clips in library {to_library} (ids {filed[0].clip_id}-{filed[-1].clip_id}"
            + (f", {flagged} flagged as near-duplicates" if flagged else "")
            + f"); browse: vidgan serve {to_library}"
        )


@app.command()
def demo(
    out: Path = typer.Option(Path("vidgan-demo"), help="folder for the dataset, run and samples"),
    budget: float = typer.Option(600.0, min=1.0, help="seconds for the whole demo (most of it training)"),
    clips: int = typer.Option(4000, min=16, max=1_000_000, help="Moving MNIST clips to prepare"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Prepare built-in Moving MNIST, train the sprites model (sprites recipe) for --budget seconds, generate clips."""
    from vidgan.demo import run_demo

    try:
        run_demo(out, budget=budget, clips=clips, progress=progress)
    except known_errors() as err:
        fail(err)


from vidgan.library.cli import app as library_app  # noqa: E402  (typer only: cheap to import)
from vidgan.library.cli import serve  # noqa: E402
from vidgan.metrics.cli import evaluate  # noqa: E402

app.command("evaluate")(evaluate)
app.add_typer(library_app, name="library")
app.command("serve")(serve)


def main(argv: list[str] | None = None) -> int:
    """The console entry point and its error boundary: whatever goes wrong reaches the user as one
    line naming the path or setting and the fix, with a non-zero exit code; a traceback only with
    --debug (anywhere on the command line) or VIDGAN_DEBUG=1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    before = os.environ.get("VIDGAN_DEBUG")
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        os.environ["VIDGAN_DEBUG"] = "1"
    try:
        return _run(argv)
    finally:  # main() may be called again in the same process (tests): --debug is for this call only
        if before is None:
            os.environ.pop("VIDGAN_DEBUG", None)
        else:
            os.environ["VIDGAN_DEBUG"] = before


def _run(argv: list[str]) -> int:
    try:
        app(args=argv, prog_name="vidgan")  # standalone: click reports usage errors itself (exit 2) and exits
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as err:  # noqa: BLE001 - the boundary: everything becomes one line (or a traceback with --debug)
        if debugging():
            raise
        typer.echo(f"error: {describe(err)}", err=True)
        return 1
    return 0


def run_main() -> None:  # pragma: no cover - console script `vidgan`
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run_main()
