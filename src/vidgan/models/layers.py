"""Shared building blocks for the video models."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class _AllReduceSum(torch.autograd.Function):
    """Sum over DDP ranks whose gradient is the sum of the ranks' gradients (the adjoint of a sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


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

    local_statistics = False  # True: this process's batch statistics only (standing statistics on one rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed) or self.local_statistics:
            return super().forward(x)
        # Sums in float32 whatever the autocast dtype: E[x^2] - E[x]^2 in bf16 loses the variance.
        in_dtype, x = x.dtype, x.float()
        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([count, x.sum(dims), (x * x).sum(dims)])
        stats = _AllReduceSum.apply(stats)
        n = stats[0]
        mean = stats[1 : 1 + x.shape[1]] / n
        var = (stats[1 + x.shape[1] :] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
        shape = [1, -1] + [1] * (x.dim() - 2)
        x_hat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return (x_hat * self.weight.view(shape) + self.bias.view(shape)).to(in_dtype)


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def spatial_doublings(resolution: int) -> int:
    """How many 2x blocks take a 4x4 map to `resolution`: every model starts and ends at 4x4."""
    n = math.log2(resolution / 4)
    if resolution < 8 or n != int(n):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return int(n)


def generator_widths(g_channels: int, max_channels: int, blocks: int) -> list[int]:
    """Generator widths from the 4x4 block outwards: g_channels (capped) halving per block, at least 8."""
    return [min(max_channels, max(8, g_channels // 2**i)) for i in range(blocks)]


def discriminator_width(d_channels: int, depth: int, max_channels: int) -> int:
    """Discriminator width after `depth` + 1 downsampling blocks: d_channels doubling per block, capped."""
    return max(1, min(max_channels, d_channels * 2**depth))


class ImageDecoder(nn.Module):
    """DCGAN's generator: (N, in_dim) vectors -> (N, out_channels, resolution, resolution) images in [-1, 1].

    A 4x4 transposed convolution from the vector, then one transposed convolution per 2x upsampling
    with BatchNorm + ReLU between and tanh at the end. It is the per-frame image generator of TGAN and
    MoCoGAN and the background stream of the two-stream VideoGAN; widths follow the same rule as
    VideoGAN's generator, so a preset sizes it the same way.
    """

    def __init__(
        self, in_dim: int, out_channels: int, resolution: int, g_channels: int, max_channels: int, out_bias: list[float] | None = None
    ):
        """out_bias: the output channels' initial bias before the tanh (default 0)."""
        super().__init__()
        n = spatial_doublings(resolution)
        widths = generator_widths(g_channels, max_channels, n)
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_dim, widths[0], 4, bias=False), BatchNorm(widths[0]), nn.ReLU(inplace=True)]
        for i in range(n):
            last = i == n - 1
            out = out_channels if last else widths[i + 1]
            layers.append(nn.ConvTranspose2d(widths[i], out, 4, stride=2, padding=1, bias=last))
            layers += [nn.Tanh()] if last else [BatchNorm(out), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, 0.0, 0.02)  # DCGAN init
        if out_bias is not None:
            with torch.no_grad():
                layers[-2].bias.copy_(torch.tensor(out_bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, :, None, None])


class EqualLinear(nn.Module):
    """Linear layer with StyleGAN's equalised learning rate (weights scaled at run time; lr_mul slows it)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul = lr_mul / math.sqrt(in_dim), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


def minibatch_std(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, ...) with one more channel: the feature std within groups of consecutive samples.

    Groups are consecutive (samples 0-3, 4-7, ...) and of 4, 2 or 1 samples so that they never
    straddle the middle of the batch: the trainer scores [real; fake] in one call, and a group
    mixing the two would tell D which half it is in. A group's std is averaged over channels and
    positions to one number, broadcast as the extra channel of each of its samples.
    """
    b = x.shape[0]
    group = 4 if b % 8 == 0 else 2 if b % 4 == 0 else 1
    grouped = x.float().view(b // group, group, *x.shape[1:])
    std = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=list(range(1, x.dim())))  # (b // group,)
    extra = std.repeat_interleave(group).to(x.dtype).view(b, 1, *([1] * (x.dim() - 2)))
    return torch.cat([x, extra.expand(b, 1, *x.shape[2:])], dim=1)


CONDITIONS = ("none", "class", "text", "first-frame")


@dataclass
class Condition:
    """What a clip is generated from besides noise; any field may be None.

    labels: (B,) class indices; text: (B, text_dim) sentence embeddings;
    first_frame: (B, C, H, W) in [-1, 1].
    """

    labels: torch.Tensor | None = None
    text: torch.Tensor | None = None
    first_frame: torch.Tensor | None = None

    def _map(self, fn) -> Condition:
        return Condition(*(None if v is None else fn(v) for v in (self.labels, self.text, self.first_frame)))

    def __getitem__(self, index) -> Condition:
        return self._map(lambda v: v[index])

    def to(self, device) -> Condition:
        return self._map(lambda v: v.to(device))


class ConditionEncoder(nn.Module):
    """Condition -> (B, cond_dim) vector, for the kind of condition the model was built for."""

    def __init__(self, kind: str, cond_dim: int, num_classes: int = 0, text_dim: int = 384, channels: int = 3):
        super().__init__()
        if kind not in CONDITIONS:
            raise ValueError(f"unknown condition {kind!r}; choose one of {', '.join(CONDITIONS)}")
        if kind == "class" and num_classes < 1:
            raise ValueError("condition 'class' needs a dataset with class labels (sub-folders or a labelled builtin)")
        self.kind, self.dim = kind, cond_dim
        if kind == "class":
            self.embed = nn.Embedding(num_classes, cond_dim)
        elif kind == "text":
            self.embed = nn.Sequential(nn.Linear(text_dim, cond_dim), nn.LeakyReLU(0.2), nn.Linear(cond_dim, cond_dim))
            # Captions of one dataset share most of their sentence embedding ("a ... moving ..."):
            # what tells them apart is a small difference. Centring on the training captions' mean
            # and scaling to unit spread hands the network that difference at a usable size. Set
            # once by the trainer (standardise_text); saved with the weights.
            self.register_buffer("text_mean", torch.zeros(text_dim))
            self.register_buffer("text_scale", torch.ones(()))
        elif kind == "first-frame":
            self.embed = nn.Sequential(  # any resolution: strided convs, then global average
                nn.Conv2d(channels, 32, 4, 2, 1),
                nn.LeakyReLU(0.2),
                nn.Conv2d(32, 64, 4, 2, 1),
                nn.LeakyReLU(0.2),
                nn.Conv2d(64, cond_dim, 4, 2, 1),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def width_with(self, width: int) -> int:
        """Width of a code after `attach`: the condition's embedding is appended to it."""
        return width + (self.dim if self.active else 0)

    def attach(self, code: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """`code` (B, width) with the condition's embedding appended; unchanged for unconditional models."""
        c = self(cond)
        return code if c is None else torch.cat([code, c], dim=1)

    def forward(self, cond: Condition | None) -> torch.Tensor | None:
        if not self.active:
            return None
        field = {"class": "labels", "text": "text", "first-frame": "first_frame"}[self.kind]
        value = None if cond is None else getattr(cond, field)
        if value is None:
            raise ValueError(f"this model is {self.kind}-conditional: pass {field} (Condition({field}=...))")
        if self.kind == "text":
            value = (value - self.text_mean) * self.text_scale
        return self.embed(value)


@torch.no_grad()
def standardise_text(models: list[nn.Module], captions: torch.Tensor) -> None:
    """Set every text ConditionEncoder in `models` to centre and scale by these (N, text_dim) caption embeddings."""
    mean = captions.mean(dim=0)
    spread = (captions - mean).pow(2).mean().sqrt()
    for model in models:
        for m in model.modules():
            if isinstance(m, ConditionEncoder) and m.kind == "text":
                m.text_mean.copy_(mean)
                m.text_scale.fill_(1.0 / max(spread.item(), 1e-6))


def projection(features: torch.Tensor, cond_vec: torch.Tensor | None) -> torch.Tensor:
    """Projection discriminator term (Miyato & Koyama 2018): <embedding, pooled features> per clip."""
    if cond_vec is None:
        return torch.zeros(features.shape[0], device=features.device, dtype=features.dtype)
    return (features * cond_vec).sum(dim=1)
