"""Helpers the tests import (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from vidgan.config import RunConfig, load_config


def tiny_config(data: Path, **overrides) -> RunConfig:
    """The `tiny` preset on `data`, logging every step, with no sample grids or checkpoints unless asked."""
    base = {"data": str(data), "train.log_every": 1, "train.sample_every": 1000, "train.checkpoint_every": 1000}
    return load_config("tiny", base | overrides)
