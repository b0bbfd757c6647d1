"""Run: the one owner of a run folder. Everything that reads or writes a run goes through it.

Layout of a run folder (diffusers-style: self-describing, no pickles):
    config.json                  the RunConfig the run was built from (dataset shape filled in)
    checkpoints/step_000001200/  NAME.safetensors per network (generator, generator_ema,
                                 discriminator, vqvae, ...), optimizers.safetensors (optimizer
                                 moments, RNG states), state.json (step, elapsed time, anything JSON)
    log.jsonl                    one line per logged training step
    metrics.jsonl                one line per metric result (vidgan.metrics)
    samples/step_*.gif           fixed-noise sample grids
    tb/                          TensorBoard scalars
A checkpoint is written into a hidden temporary folder, flushed, then renamed into place: a folder
named `step_*` is always complete, whatever moment the process was killed.

A folder written by `VideoPipeline.save_pretrained` (config.json + generator.safetensors, no
checkpoints/) and one checkpoint folder are accepted wherever a generator is read.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vidgan.config import RunConfig

if TYPE_CHECKING:
    import torch

CONFIG, LOG, METRICS, SAMPLES, TENSORBOARD, CHECKPOINTS = "config.json", "log.jsonl", "metrics.jsonl", "samples", "tb", "checkpoints"
STEP_PREFIX = "step_"
STATE, OPTIMIZERS = "state.json", "optimizers.safetensors"


class CheckpointError(Exception):
    pass


class RunDirError(RuntimeError):
    pass


def is_run(path: str | Path) -> bool:
    """A run folder or a saved pipeline: config.json with checkpoints/ or generator weights beside it."""
    path = Path(path)
    return (path / CONFIG).is_file() and ((path / CHECKPOINTS).is_dir() or (path / "generator.safetensors").is_file())


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path) / STATE).is_file()


def step_of(checkpoint: str | Path) -> int:
    """The training step a checkpoint folder (`step_000001200`) was saved at."""
    return int(Path(checkpoint).name[len(STEP_PREFIX) :])


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# safetensors.torch (and so torch) is imported where tensors are read or written, not with this module:
# the library's commands read run folders without loading torch.


def load_weights(checkpoint: str | Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(checkpoint) / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete, pass another checkpoint or retrain")
    return load_file(str(path))


def load_state(checkpoint: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """state.json and the optimizer/RNG tensors of one checkpoint."""
    from safetensors.torch import load_file

    checkpoint = Path(checkpoint)
    state = json.loads((checkpoint / STATE).read_text())
    return state, load_file(str(checkpoint / OPTIMIZERS))


class Run:
    """A run folder: its config, checkpoints, training log and samples."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG

    @property
    def log_path(self) -> Path:
        return self.root / LOG

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS

    @property
    def samples_dir(self) -> Path:
        return self.root / SAMPLES

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / TENSORBOARD

    def exists(self) -> bool:
        return self.config_path.is_file()

    def config(self) -> RunConfig:
        if not self.exists():
            raise CheckpointError(f"{self.config_path}: missing; a run dir needs the config.json it was trained with")
        return RunConfig.load(self.config_path)

    def save_config(self, cfg: RunConfig) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cfg.save(self.config_path)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_dir(self, step: int) -> Path:
        return self.root / CHECKPOINTS / f"{STEP_PREFIX}{step:09d}"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        root = self.root / CHECKPOINTS
        if not root.is_dir():
            return []
        found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX) and (p / STATE).is_file()]
        return sorted(found, key=step_of)

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def checkpoint(self, step: int | None = None) -> Path:
        """The checkpoint of `step` (default: the newest); a clear error when there is none."""
        if step is None:
            latest = self.latest()
            if latest is None:
                raise CheckpointError(f"{self.root}: no checkpoint found; train it first (`vidgan train DATA --out {self.root}`)")
            return latest
        folder = self.checkpoint_dir(step)
        if not is_checkpoint(folder):
            have = ", ".join(p.name for p in self.checkpoints()) or "none"
            raise CheckpointError(f"{self.root}: no checkpoint for step {step} (have: {have})")
        return folder

    def save_checkpoint(
        self, step: int, weights: dict[str, dict[str, torch.Tensor]], extra_tensors: dict[str, torch.Tensor], state: dict, keep: int = 3
    ) -> Path:
        """weights: {"generator": state_dict, ...}, each saved as NAME.safetensors; keeps the newest `keep`."""
        from safetensors.torch import save_file

        final = self.checkpoint_dir(step)
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, sd in weights.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(tmp / f"{name}.safetensors"))
        save_file({k: v.contiguous().cpu() for k, v in extra_tensors.items()}, str(tmp / OPTIMIZERS))
        (tmp / STATE).write_text(json.dumps({"step": step, **state}, indent=1))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        if final.exists():  # re-saving the same step (e.g. after a resume): replace it whole
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(final.parent)
        for old in self.checkpoints()[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        for stale in final.parent.glob(".tmp-*"):
            if stale != tmp and not _owned_by_live_process(stale):
                shutil.rmtree(stale, ignore_errors=True)
        return final

    # ------------------------------------------------------------------ starting and resuming

    def start(self, cfg: RunConfig, resume: bool) -> Path | None:
        """The checkpoint to resume from (None: a fresh run); refuses to overwrite another run or to
        resume with settings that change what the saved weights mean."""
        if not resume:
            if self.exists():
                raise RunDirError(f"{self.root}: already holds a run; pass --resume to continue it, or choose another --out")
            return None
        if not self.exists():
            raise RunDirError(f"{self.root}: no run to resume (no config.json); start it without --resume")
        conflict = cfg.resume_conflict(self.config())
        if conflict:
            raise RunDirError(f"{self.root}: the {conflict} settings differ from the saved run's config.json; resume with the saved config")
        return self.latest()

    # ------------------------------------------------------------------ training log

    def truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from: they belong to a lost future."""
        if self.log_path.exists():
            lines = [ln for ln in self.log_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            self.log_path.write_text("".join(ln + "\n" for ln in lines))

    def append_log(self, record: dict) -> None:
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict]:
        if not self.log_path.is_file():
            return []
        return [json.loads(ln) for ln in self.log_path.read_text().splitlines() if ln.strip()]

    def sample_path(self, step: int) -> Path:
        return self.samples_dir / f"step_{step:09d}.gif"


@dataclass
class GeneratorWeights:
    """Where a generator is read from: its config, the weights file and the checkpoint step."""

    config: RunConfig
    folder: Path  # the checkpoint (or saved pipeline) folder: a VideoPipeline's `source`
    file: Path
    step: int | None


def generator_file(folder: str | Path, ema: bool = True) -> Path:
    """The generator weights file in a checkpoint folder (EMA or raw) or in a `save_pretrained` folder (its one generator)."""
    folder = Path(folder)
    if not is_checkpoint(folder):
        return folder / "generator.safetensors"
    return folder / ("generator_ema.safetensors" if ema else "generator.safetensors")


def generator_weights(path: str | Path, step: int | None = None, ema: bool = True) -> GeneratorWeights:
    """The generator of a run dir (newest checkpoint, or `step`), of one checkpoint folder, or of a
    `save_pretrained` folder (which holds one generator)."""
    path = Path(path)
    if (path / "generator.safetensors").is_file() and (path / CONFIG).is_file() and not is_checkpoint(path):
        return GeneratorWeights(RunConfig.load(path / CONFIG), path, generator_file(path), None)
    folder = path if is_checkpoint(path) else Run(path).checkpoint(step)
    return GeneratorWeights(Run(folder.parent.parent).config(), folder, generator_file(folder, ema), step_of(folder))


def _owned_by_live_process(tmp: Path) -> bool:
    try:
        pid = int(tmp.name.rsplit("-", 1)[1])
        os.kill(pid, 0)
        return pid != os.getpid()
    except (ValueError, ProcessLookupError, PermissionError):
        return False
