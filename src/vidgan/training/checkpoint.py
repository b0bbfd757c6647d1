"""Checkpoints: safetensors weights + JSON state, committed atomically, resumable.

Layout of one checkpoint (`RUN/checkpoints/step_000001200/`):
    generator.safetensors, generator_ema.safetensors, discriminator.safetensors
    optimizers.safetensors   optimizer tensors (Adam moments) and RNG states
    state.json               step, elapsed time, optimizer hyper-parameters, anything JSON
A checkpoint is written into a hidden temporary folder, flushed to disk, then renamed into
place: a folder named `step_*` is always complete, whatever moment the process was killed.
No pickles anywhere: a checkpoint from a stranger can be loaded safely.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STEP_PREFIX = "step_"


class CheckpointError(Exception):
    pass


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{STEP_PREFIX}{step:09d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into safetensors-able tensors and JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value.detach().contiguous().clone()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            idx, key = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    # JSON has no tuples: give hyper-parameters such as Adam's betas back their tuple type.
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
    # safetensors stores tensors in the standard layout; give each moment its parameter's memory format
    # (channels-last weights): fused Adam walks parameter and state memory in step, so a mismatch scrambles it.
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    opt.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    weights: dict[str, dict[str, torch.Tensor]],
    extra_tensors: dict[str, torch.Tensor],
    state: dict,
    keep: int = 3,
) -> Path:
    """weights: {"generator": state_dict, ...} each saved as NAME.safetensors."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, sd in weights.items():
        save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(tmp / f"{name}.safetensors"))
    save_file({k: v.contiguous().cpu() for k, v in extra_tensors.items()}, str(tmp / "optimizers.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=1))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it whole
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in final.parent.glob(".tmp-*"):
        if stale != tmp and not _owned_by_live_process(stale):
            shutil.rmtree(stale, ignore_errors=True)
    return final


def _owned_by_live_process(tmp: Path) -> bool:
    try:
        pid = int(tmp.name.rsplit("-", 1)[1])
        os.kill(pid, 0)
        return pid != os.getpid()
    except (ValueError, ProcessLookupError, PermissionError):
        return False


def load_weights(ckpt: str | Path, name: str) -> dict[str, torch.Tensor]:
    path = Path(ckpt) / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete, pass another checkpoint or retrain")
    return load_file(str(path))


def load_state(ckpt: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    ckpt = Path(ckpt)
    state = json.loads((ckpt / "state.json").read_text())
    return state, load_file(str(ckpt / "optimizers.safetensors"))
