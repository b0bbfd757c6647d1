"""Helpers the tests import (fixtures live in conftest.py)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from vidgan.config import RunConfig
from vidgan.presets import load_config


def tiny_config(data: Path, **overrides) -> RunConfig:
    """The `tiny` preset on `data`, logging every step, with no sample grids or checkpoints unless asked."""
    base = {"data": str(data), "train.log_every": 1, "train.sample_every": 1000, "train.checkpoint_every": 1000}
    return load_config("tiny", base | overrides)


@contextmanager
def torch_threads(n: int):
    """Run the block on `n` torch threads, then restore the count (tiny models: hand-offs between threads
    cost more than a second core gives, and far more on a busy machine). Module-scoped fixtures use it
    where the function-scoped `one_thread` fixture cannot reach."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FakeClock:
    """A clock for the training loop's `clock`: it shows `now` (seconds) and moves only when told."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def planned_schedule_end(tc, seconds_per_step: float = 1.0, world: int = 1) -> tuple[int | None, str | None]:
    """Drive the training loop's `_Horizon` for train config `tc` with a clock that runs
    `seconds_per_step` a step (on a rank of `world` processes, whose process group is already up);
    return the step it planned the learning-rate schedule to end at and what it said."""
    from types import SimpleNamespace

    from vidgan.training import loop

    info = SimpleNamespace(world=world, device="cpu")
    task = SimpleNamespace(cfg=SimpleNamespace(train=tc), ctx=SimpleNamespace(info=info), schedule_steps=None)
    clock = FakeClock()
    horizon, said = loop._Horizon(task, 0, t_start=0.0, clock=clock), None
    for step in range(1, 40):
        clock.now = step * seconds_per_step
        said = horizon(step)
        if said:
            break
    return task.schedule_steps, said
