"""Shared fixtures: tiny prepared datasets and tiny configs, made by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two cores: keep every test process at the machine's size, and subprocesses (torchrun) at one thread each.
torch.set_num_threads(min(2, os.cpu_count() or 1))

from vidgan.config import load_config  # noqa: E402
from vidgan.data.prepare import PrepareSettings, prepare  # noqa: E402


@pytest.fixture(scope="session")
def mnist_data(tmp_path_factory) -> Path:
    """64 Moving MNIST clips of 8x32x32 (real digits), prepared once per session."""
    out = tmp_path_factory.mktemp("mnist") / "data"
    prepare("builtin:moving-mnist", out, PrepareSettings(size=32, frames=8), n=64, seed=0, progress=False, log=lambda s: None)
    return out


def tiny_config(data: Path, **overrides):
    base = {"data": str(data), "train.log_every": 1, "train.sample_every": 1000, "train.checkpoint_every": 1000}
    return load_config("tiny", base | overrides)


def read_log(run: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
