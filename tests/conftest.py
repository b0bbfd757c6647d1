"""Shared fixtures: tiny prepared datasets and tiny configs, made by the tests themselves.

Threads: torch's own default (OMP_NUM_THREADS where set, else the machine's cores), in test processes
and the processes they start; a module that trains tiny models asks for one thread (`one_thread`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import torch_threads
from vidgan.data.prepare import PrepareSettings, prepare


@pytest.fixture(scope="session")
def mnist_data(tmp_path_factory) -> Path:
    """64 Moving MNIST clips of 8x32x32 (real digits), prepared once per session."""
    out = tmp_path_factory.mktemp("mnist") / "data"
    prepare("builtin:moving-mnist", out, PrepareSettings(size=32, frames=8), n=64, seed=0, progress=False, log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def mnist16(tmp_path_factory) -> Path:
    """32 Moving MNIST clips of 8x16x16, prepared once per session."""
    out = tmp_path_factory.mktemp("mnist16") / "data"
    prepare("builtin:moving-mnist", out, PrepareSettings(size=16, frames=8), n=32, seed=0, progress=False, log=lambda s: None)
    return out


@pytest.fixture
def one_thread():
    """Tiny models: thread hand-offs cost more than a second core gives on a shared 2-core machine.
    Modules of tiny models use it for every test: pytestmark = pytest.mark.usefixtures("one_thread")."""
    with torch_threads(1):
        yield
