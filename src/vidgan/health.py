"""Weight health: is a set of network weights usable, and if not, which tensor is bad and how.

Checked by the training loop (every logged step and before every checkpoint: a checkpoint that
fails is never written), by `Run` when it picks a checkpoint to resume or sample from, and by
`VideoPipeline` before it generates. A loss can stay finite while BatchNorm running statistics
(buffers, not parameters) turn to inf, so buffers are checked too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# No trained weight or running statistic of these networks comes near this; a value beyond it means
# the optimizer has blown the weights up (a learning rate of 1e9 reaches it in one Adam step).
MAX_MAGNITUDE = 1e8


def tensor_problem(t: torch.Tensor, limit: float = MAX_MAGNITUDE) -> str | None:
    """'nan', 'inf' or 'magnitude 3.2e+30' when the tensor is unusable; None when it is fine."""
    import torch

    if not t.is_floating_point() or t.numel() == 0:
        return None
    t = t.detach()
    if torch.isnan(t).any():
        return "nan"
    if torch.isinf(t).any():
        return "inf"
    peak = t.abs().max().item()
    if peak > limit:
        return f"magnitude {peak:.2g}"
    return None


def weights_problem(named: Mapping[str, Mapping[str, torch.Tensor]] | Iterable, limit: float = MAX_MAGNITUDE) -> str | None:
    """The first bad tensor of {network: state_dict} as 'generator_ema: layers.3.running_var is inf',
    or None when every tensor is finite and of sane size."""
    items = named.items() if isinstance(named, Mapping) else named
    for network, state in items:
        for key, t in state.items():
            problem = tensor_problem(t, limit)
            if problem:
                return f"{network}: {key} is {problem}"
    return None


class DivergenceWatch:
    """Warns (once) when a loss grows by orders of magnitude over its early level: a run that is
    diverging while its numbers stay finite (WGAN with too high a learning rate: D loss -1e22)."""

    def __init__(self, factor: float = 1e3, floor: float = 1e4, warmup: int = 20):
        self.factor, self.floor, self.warmup = factor, floor, warmup
        self.early: dict[str, list[float]] = {}
        self.warned = False

    def __call__(self, step: int, losses: Mapping[str, float]) -> str | None:
        if self.warned:
            return None
        for key, value in losses.items():
            if not math.isfinite(value):
                continue
            seen = self.early.setdefault(key, [])
            if len(seen) < self.warmup:
                seen.append(abs(value))
                continue
            typical = sorted(seen)[len(seen) // 2]
            if abs(value) > max(self.floor, self.factor * typical):
                self.warned = True
                return (
                    f"step {step}: {key} is {value:.3g}, {abs(value) / max(typical, 1e-12):.0e} times its early level "
                    f"({typical:.3g}): training is diverging; lower the learning rates (train.lr_g, train.lr_d) "
                    "or add a penalty (--penalty r1 / gp)"
                )
        return None
