"""Helpers the tests import (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from vidgan.config import RunConfig, load_config


def tiny_config(data: Path, **overrides) -> RunConfig:
    """The `tiny` preset on `data`, logging every step, with no sample grids or checkpoints unless asked."""
    base = {"data": str(data), "train.log_every": 1, "train.sample_every": 1000, "train.checkpoint_every": 1000}
    return load_config("tiny", base | overrides)


def planned_schedule_end(tc, seconds_per_step: float = 1.0, world: int = 1) -> tuple[int | None, str | None]:
    """Drive the training loop's `_Horizon` for train config `tc` with a clock that runs
    `seconds_per_step` a step (on a rank of `world` processes, whose process group is already up);
    return the step it planned the learning-rate schedule to end at and what it said."""
    from types import SimpleNamespace

    from vidgan.training import loop

    info = SimpleNamespace(world=world, device="cpu")
    task = SimpleNamespace(cfg=SimpleNamespace(train=tc), ctx=SimpleNamespace(info=info), schedule_steps=None)
    clock, real_clock = {"now": 0.0}, loop.time.monotonic
    loop.time.monotonic = lambda: clock["now"]
    try:
        horizon, said = loop._Horizon(task, 0, t_start=0.0), None
        for step in range(1, 40):
            clock["now"] = step * seconds_per_step
            said = horizon(step)
            if said:
                break
    finally:
        loop.time.monotonic = real_clock
    return task.schedule_steps, said
