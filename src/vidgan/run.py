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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vidgan.config import RunConfig
from vidgan.config_upgrade import load_run_config

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


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file; a damaged or unreadable one is a CheckpointError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.exists() and not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: permission denied; make the file readable (chmod u+r)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        if isinstance(err, FileNotFoundError) or not path.exists():
            raise CheckpointError(f"{path}: missing; the checkpoint is incomplete, pass another checkpoint or retrain") from None
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: damaged ({why}); use an earlier checkpoint (--step) or retrain") from None


def load_weights(checkpoint: str | Path, name: str) -> dict[str, torch.Tensor]:
    return _read_tensors(Path(checkpoint) / f"{name}.safetensors")


def read_state(checkpoint: str | Path) -> dict:
    """state.json of a checkpoint: a dict with an integer step, or a CheckpointError naming the file."""
    path = Path(checkpoint) / STATE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied; make the file readable (chmod u+r)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); use an earlier checkpoint") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path}: has no integer 'step'; use an earlier checkpoint")
    return state


def load_state(checkpoint: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """state.json and the optimizer/RNG tensors of one checkpoint."""
    checkpoint = Path(checkpoint)
    return read_state(checkpoint), _read_tensors(checkpoint / OPTIMIZERS)


def checkpoint_problem(folder: str | Path, names: list[str] | None = None) -> str | None:
    """Why a checkpoint cannot be used (a file missing, damaged, state.json invalid, a weight
    non-finite or absurd), or None. `names`: the weight files to check (default: all of them)."""
    from vidgan.health import weights_problem

    folder = Path(folder)
    try:
        if is_checkpoint(folder):
            read_state(folder)
        files = [folder / f"{n}.safetensors" for n in names] if names else sorted(folder.glob("*.safetensors"))
        for f in files:
            tensors = _read_tensors(f)  # optimizer moments are only read: their scale says nothing about health
            problem = None if f.name == OPTIMIZERS else weights_problem({f.stem: tensors})
            if problem:
                return f"non-finite or exploded weights ({problem})"
    except CheckpointError as err:
        return str(err)
    return None


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
        return load_run_config(self.config_path)

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

    def newest_good(self, names: list[str] | None = None, log=None) -> Path | None:
        """The newest checkpoint that passes `checkpoint_problem`; each newer one skipped is said to `log`."""
        for folder in reversed(self.checkpoints()):
            problem = checkpoint_problem(folder, names)
            if problem is None:
                return folder
            if log is not None:
                log(f"skipping checkpoint {folder.name}: {problem}")
        return None

    def checkpoint(self, step: int | None = None, names: list[str] | None = None, log=None) -> Path:
        """The checkpoint of `step` (default: the newest good one, skipping damaged ones with a note to
        `log`); a clear error when there is none. `names`: the weight files that must be sound."""
        if step is None:
            good = self.newest_good(names, log)
            if good is None:
                if self.checkpoints():
                    raise CheckpointError(f"{self.root}: every checkpoint is damaged or non-finite; retrain (see the notes above)")
                raise CheckpointError(f"{self.root}: no checkpoint found; train it first (`vidgan train DATA --out {self.root}`)")
            return good
        folder = self.checkpoint_dir(step)
        if not is_checkpoint(folder):
            have = ", ".join(p.name for p in self.checkpoints()) or "none"
            raise CheckpointError(f"{self.root}: no checkpoint for step {step} (have: {have})")
        problem = checkpoint_problem(folder, names)
        if problem:
            good = self.newest_good(names)
            other = f"; the newest sound one is step {step_of(good)}" if good else ""
            raise CheckpointError(f"checkpoint {folder.name}: {problem}{other}")
        return folder

    def set_aside(self, folder: Path) -> Path:
        """Move a damaged checkpoint out of the way (kept for inspection, never deleted): checkpoints/rejected-step_*."""
        target = folder.parent / f"rejected-{folder.name}"
        n = 1
        while target.exists():
            n += 1
            target = folder.parent / f"rejected-{folder.name}-{n}"
        os.rename(folder, target)
        return target

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

    def start(self, cfg: RunConfig, resume: bool, log=print) -> Path | None:
        """The checkpoint to resume from (None: a fresh run); refuses to overwrite another run or to
        resume with settings that change what the saved weights mean. Damaged checkpoints newer than
        the newest sound one are said to `log` and set aside (checkpoints/rejected-step_*), never deleted."""
        if not resume:
            if self.exists():
                raise RunDirError(f"{self.root}: already holds a run; pass --resume to continue it, or choose another --out")
            return None
        if not self.exists():
            raise RunDirError(f"{self.root}: no run to resume (no config.json); start it without --resume")
        conflict = cfg.resume_conflict(self.config())
        if conflict:
            raise RunDirError(f"{self.root}: the {conflict} settings differ from the saved run's config.json; resume with the saved config")
        skipped: list[str] = []
        good = self.newest_good(log=skipped.append)
        for folder, note in zip(reversed(self.checkpoints()), skipped, strict=False):
            moved = self.set_aside(folder)
            log(f"{note}; moved to {moved.relative_to(self.root)} (kept, not deleted)")
        return good

    # ------------------------------------------------------------------ training log

    def truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (they belong to a lost future),
        and a line cut short by a kill."""
        if self.log_path.exists():
            lines = [ln for ln, record in _log_lines(self.log_path) if record["step"] <= step]
            self.log_path.write_text("".join(ln + "\n" for ln in lines))

    def append_log(self, record: dict) -> None:
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict]:
        if not self.log_path.is_file():
            return []
        return [record for _, record in _log_lines(self.log_path)]

    def mean_speed(self) -> float:
        """Mean training clips/s over the log's records, the first (the warm-up) left out when there are more."""
        log = self.read_log()
        speeds = [r["clips_per_s"] for r in log[1:] if "clips_per_s" in r] or [r["clips_per_s"] for r in log if "clips_per_s" in r]
        return sum(speeds) / len(speeds) if speeds else 0.0

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


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def generator_weights(path: str | Path, step: int | None = None, ema: bool = True, log=_say) -> GeneratorWeights:
    """The generator of a run dir (newest sound checkpoint, or `step`), of one checkpoint folder, or of a
    `save_pretrained` folder (which holds one generator). Damaged or non-finite generator weights are
    refused; in a run dir, newer damaged checkpoints are skipped with a note to `log`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run folder; pass the --out folder of `vidgan train`")
    if (path / CONFIG).is_file() and not (path / "generator.safetensors").is_file() and not is_checkpoint(path):  # a run dir
        run = Run(path)
        config = run.config()
        names = None if config.model.name == "vqvae" else ["generator_ema" if ema else "generator"]  # a VQ-VAE has no generator
        folder = run.checkpoint(step, names=names, log=log)
        return GeneratorWeights(config, folder, generator_file(folder, ema), step_of(folder))
    if is_checkpoint(path):
        config, at = Run(path.parent.parent).config(), step_of(path)
    elif (path / "generator.safetensors").is_file() and (path / CONFIG).is_file():
        config, at = load_run_config(path / CONFIG), None
    else:
        raise CheckpointError(
            f"{path}: not a run, a checkpoint or a saved pipeline (no config.json with weights); pass a `vidgan train --out` folder"
        )
    file = generator_file(path, ema)
    problem = None if config.model.name == "vqvae" else checkpoint_problem(path, [file.stem])
    if problem:
        raise CheckpointError(f"{path}: {problem}; pass an earlier checkpoint (--step) or retrain")
    return GeneratorWeights(config, path, file, at)


def _log_lines(path: Path) -> list[tuple[str, dict]]:
    """(line, record) of each complete line of a JSON-lines log; a torn line (a kill mid-write) is left out."""
    out = []
    for ln in path.read_text().splitlines():
        try:
            record = json.loads(ln)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            out.append((ln, record))
    return out


def _owned_by_live_process(tmp: Path) -> bool:
    try:
        pid = int(tmp.name.rsplit("-", 1)[1])
        os.kill(pid, 0)
        return pid != os.getpid()
    except (ValueError, ProcessLookupError, PermissionError):
        return False
