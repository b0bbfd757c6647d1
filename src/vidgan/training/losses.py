"""GAN losses as pure functions of discriminator logits (StyleGAN2-ADA style: no loop state here)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LossPair = tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def d_loss_nonsat(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(real) - log(1 - D(fake)), written with softplus for stability."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_nonsat(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(fake) (Goodfellow et al. 2014)."""
    return F.softplus(-fake_logits).mean()


LOSSES: dict[str, LossPair] = {"nonsat": (d_loss_nonsat, g_loss_nonsat)}


def get_loss(name: str) -> LossPair:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
