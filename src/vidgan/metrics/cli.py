"""`vidgan evaluate`: score a run, a folder of videos or a prepared dataset against real clips."""

from __future__ import annotations

from pathlib import Path

import typer

from vidgan.errors import fail, known_errors


def evaluate(
    target: Path = typer.Argument(..., help="run folder (newest checkpoint), checkpoint folder, folder of videos, or prepared dataset"),
    real: Path | None = typer.Option(None, "--real", help="real clips: a prepared dataset or a folder of videos"),
    metrics: str = typer.Option(
        "fd_effnet2048_16f,pr,diversity",
        help="comma-separated: fd_effnet2048_16f, kd_effnet2048_16f, fvd2048_16f, fvd2048_128f, kvd2048_16f, fid50k, is2048, isv2048_16f, pr, diversity",
    ),
    n: int | None = typer.Option(
        None,
        min=2,
        max=1_000_000,
        help="clips (frames for fid/is) per side; replaces the count in the metric names, and the recorded name says so",
    ),
    i3d_weights: Path | None = typer.Option(
        None, help="I3D weights for fvd/kvd: StyleGAN-V's i3d_torchscript.pt or a vidgan safetensors file"
    ),
    inception_weights: Path | None = typer.Option(
        None, help="Inception weights for fid/is: inception-2015-12-05.pt (TorchScript) or a vidgan safetensors file"
    ),
    c3d_weights: Path | None = typer.Option(
        None, help="C3D weights for isv (video Inception Score): StyleGAN-V's c3d_ucf101.pt or a vidgan safetensors file"
    ),
    all_checkpoints: bool = typer.Option(False, help="evaluate every checkpoint of the run (one line per metric and step)"),
    step: int | None = typer.Option(None, min=0, help="evaluate this checkpoint step (default: the newest)"),
    out: Path | None = typer.Option(None, help="folder for metrics.jsonl and report.html (default: the run / TARGET folder)"),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="seed for clip offsets, real-clip choice and generator noise"),
    size: int | None = typer.Option(None, min=8, max=1024, help="evaluation resolution (default: the generated side's)"),
    effnet_size: int = typer.Option(
        224,
        min=32,
        max=1024,
        help="input size of the EfficientNet-Lite0 features (224 = standard; smaller is faster on a CPU, and the names get a _<size>px suffix)",
    ),
    batch_size: int = typer.Option(16, min=1, help="clips per feature batch"),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1 ..."),
    precision: str = typer.Option(
        "auto",
        help="fp32 (auto) or bf16 autocast: faster, but it moves fd_effnet by about 1%, so it is another protocol: its metric names end in _bf16",
    ),
    cache: bool = typer.Option(True, help="reuse cached real statistics (~/.cache/vidgan/metrics or $VIDGAN_CACHE_DIR)"),
    report: bool = typer.Option(True, help="write report.html"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Score generated clips against real clips; append to metrics.jsonl and write report.html."""
    from vidgan.metrics.evaluate import EvalOptions
    from vidgan.metrics.evaluate import evaluate as run_evaluate

    options = EvalOptions(
        metrics=metrics,
        n=n,
        seed=seed,
        size=size,
        batch_size=batch_size,
        device=device,
        precision=precision,
        effnet_size=effnet_size,
        i3d_weights=i3d_weights,
        inception_weights=inception_weights,
        c3d_weights=c3d_weights,
        cache=cache,
        progress=progress,
    )
    try:
        result = run_evaluate(target, real, options, out=out, all_checkpoints=all_checkpoints, step=step, report=report, log=typer.echo)
    except known_errors() as err:
        fail(err)
    except KeyboardInterrupt:
        typer.echo("interrupted: lines already appended to metrics.jsonl are kept; cached real statistics are complete files", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"wrote {result.metrics_file}" + (f" and {result.report}" if result.report else ""))
