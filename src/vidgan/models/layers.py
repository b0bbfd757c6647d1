"""Shared building blocks for the video models."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.nn.functional import all_reduce


class BatchNorm(nn.BatchNorm3d):
    """BatchNorm3d whose batch statistics span all DDP ranks, on CPU (gloo) as on GPU.

    torch's SyncBatchNorm only runs on accelerators; with plain per-rank statistics a 2-process
    run would not compute the same function as one process on the same global batch. The sums
    go through an autograd-aware all_reduce so the gradient is the single-process gradient.
    Works for any (B, C, ...) input despite the 3d in the name.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([count, x.sum(dims), (x * x).sum(dims)])
        stats = all_reduce(stats)
        n = stats[0]
        mean = stats[1 : 1 + x.shape[1]] / n
        var = (stats[1 + x.shape[1] :] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
        shape = [1, -1] + [1] * (x.dim() - 2)
        x_hat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return x_hat * self.weight.view(shape) + self.bias.view(shape)


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)
