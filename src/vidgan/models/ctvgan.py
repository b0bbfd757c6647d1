"""CTVGAN: a continuous-time video GAN trained on a few frames per clip (in the line of StyleGAN-V / DIGAN).

Generator: every frame is drawn by one 2D image network (DCGAN's: BatchNorm and transposed
convolutions) from the concatenation of
  content  a mapping network (z -> w, as in StyleGAN2) whose w is the same for all frames of a clip,
           so what a clip shows cannot drift from frame to frame;
  motion   random motion codes placed every `motion_spacing` frames on the time axis and linearly
           interpolated, so motion is a continuous, piecewise-linear function of time, plus sinusoids
           of time with learned frequencies whose phases come from the motion code (StyleGAN-V's
           acyclic time embedding).
A frame is a function of (z, t) alone (in eval mode: while training, BatchNorm uses batch
statistics): the same frame comes out whether it is rendered by itself or inside a longer clip, at
any real-valued time, so clips can be any length and any frame rate.

Discriminator: sees K frames of a clip (default 3) at their times. A 2D residual backbone shared by
the frames runs to `fuse_resolution`, the frames' feature maps are then stacked along channels and
judged together (so D sees how they fit each other), and the time gaps between the frames are
embedded and used as a projection term (StyleGAN-V conditions on them the same way).

Training renders only those K frames per clip (vidgan.training's GAN step draws the times), so a
step costs about as much as an image GAN on K images, not a 3D GAN on all T frames.

Differences from StyleGAN-V: a DCGAN image network (at CPU budgets a style network learned far more
slowly; docs/experiments/), no noise inputs (per-frame noise flickers), bilinear down-sampling
instead of FIR filters, linear instead of cubic motion-code interpolation, an equalised learning rate
in D, and sizes chosen for CPU budgets (see the presets). The sprites model (vidgan.models.sprites)
shares this model's codes, motion and discriminator and draws objects once per clip instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidgan.config import ContinuousTimeModel
from vidgan.models.layers import (
    Condition,
    ConditionEncoder,
    EqualLinear,
    ImageDecoder,
    maybe_spectral_norm,
    minibatch_std,
    projection,
    spatial_doublings,
)
from vidgan.models.videogan import with_first_frame

GAIN = math.sqrt(2.0)  # leaky-ReLU gain, so activations keep unit variance


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * GAIN


class EqualConv2d(nn.Module):
    """Conv2d with StyleGAN's equalised learning rate: N(0, 1) weights scaled by 1/sqrt(fan_in) at run
    time, so one Adam learning rate moves every layer by the same relative amount."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale, self.padding = 1.0 / math.sqrt(in_ch * kernel * kernel), kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def d_conv(in_ch: int, out_ch: int, kernel: int, sn: bool, bias: bool = True) -> nn.Module:
    """A discriminator conv: spectrally normalised (spectral_norm: true) or with an equalised learning rate."""
    if sn:
        return maybe_spectral_norm(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias), True)
    return EqualConv2d(in_ch, out_ch, kernel, bias)


def d_linear(in_dim: int, out_dim: int, sn: bool) -> nn.Module:
    return maybe_spectral_norm(nn.Linear(in_dim, out_dim), True) if sn else EqualLinear(in_dim, out_dim)


class MotionEncoder(nn.Module):
    """Motion codes at fixed times -> per-frame motion features at any real time t (in frames)."""

    def __init__(self, motion_dim: int, spacing: float, frequencies: int = 8):
        super().__init__()
        self.dim, self.spacing = motion_dim, float(spacing)
        self.mlp = nn.Sequential(EqualLinear(motion_dim, motion_dim), nn.LeakyReLU(0.2), EqualLinear(motion_dim, motion_dim))
        # Periods from 2 frames to 64 frames, learned from there.
        self.log_omega = nn.Parameter(torch.linspace(math.log(2 * math.pi / 64), math.log(math.pi), frequencies))
        self.phase = EqualLinear(motion_dim, frequencies)
        self.out_dim = motion_dim + 2 * frequencies

    def anchors_for(self, t_max: float) -> int:
        """Motion codes needed to cover times 0..t_max (one at 0, then one every `spacing` frames)."""
        return int(math.floor(max(0.0, t_max) / self.spacing)) + 2

    def forward(self, codes: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """codes (B, J, motion_dim), times (B, K) -> (B, K, out_dim)."""
        pos = (times / self.spacing).clamp_min(0)
        left = pos.floor().long().clamp(max=codes.shape[1] - 2)
        frac = (pos - left).unsqueeze(-1)
        gather = lambda i: codes.gather(1, i.unsqueeze(-1).expand(-1, -1, codes.shape[2]))  # noqa: E731
        u = self.mlp(gather(left) * (1 - frac) + gather(left + 1) * frac)
        angle = times.unsqueeze(-1) * self.log_omega.exp() + self.phase(u)
        return torch.cat([u, torch.sin(angle), torch.cos(angle)], dim=-1)


class Generator(nn.Module):
    """ctvgan's generator. `forward(..., extras=True)` also returns what a loss may need of the
    rendering (here nothing: `extra_outputs` names what a subclass returns)."""

    continuous_time = True  # renders any real-valued times: G(z, times=...) (VideoPipeline's time_scale)
    extra_outputs: tuple[str, ...] = ()

    def __init__(self, cfg: ContinuousTimeModel):
        super().__init__()
        self._build_codes(cfg, codes_per_clip=1)
        self.decoder = ImageDecoder(self.w_dim + self.motion.out_dim, cfg.channels, cfg.resolution, cfg.g_channels, cfg.max_channels)
        self.register_buffer("w_avg", torch.zeros(self.w_dim))  # for truncation; tracked in training

    def _build_codes(self, cfg: ContinuousTimeModel, codes_per_clip: int) -> None:
        """The condition, the mapping network (content noise -> styles w) and the motion encoder."""
        self.frames, self.channels = cfg.frames, cfg.channels
        self.codes_per_clip = codes_per_clip  # content codes per clip (sprites: one per object)
        self.content_dim = cfg.z_dim * codes_per_clip
        self.cond = ConditionEncoder(cfg.condition, cfg.cond_dim, cfg.num_classes, cfg.text_dim, cfg.channels)
        layers: list[nn.Module] = []
        width = self.cond.width_with(cfg.z_dim)
        for _ in range(cfg.mapping_layers):
            layers += [EqualLinear(width, cfg.w_dim, lr_mul=0.01), nn.LeakyReLU(0.2)]
            width = cfg.w_dim
        self.mapping = nn.Sequential(*layers)
        self.w_dim = width  # no mapping layers: w is the normalised noise (and condition) itself
        self.motion = MotionEncoder(cfg.motion_dim, cfg.motion_spacing)

    @property
    def z_dim(self) -> int:
        return self.z_dim_for(self.frames)

    def z_dim_for(self, frames: int) -> int:
        """Noise width for a clip of `frames` frames: content, then one motion code per anchor."""
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        return self.content_dim + self.motion.dim * self.motion.anchors_for(frames - 1)

    def split_z(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content (B, content_dim), motion codes (B, J * motion_dim)): what --hold content|motion swaps."""
        return z[:, : self.content_dim], z[:, self.content_dim :]

    def join_z(self, content: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        return torch.cat([content, motion], dim=1)

    def mapped(self, z_content: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """Content noise (B, content_dim) -> styles (B * codes_per_clip, w_dim)."""
        n = self.codes_per_clip
        if n > 1:
            z_content = z_content.reshape(-1, z_content.shape[1] // n)
            cond = None if cond is None else cond._map(lambda v: v.repeat_interleave(n, dim=0))
        x = z_content * torch.rsqrt(z_content.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        return self.mapping(self.cond.attach(x, cond))

    def draw(self, w: torch.Tensor, content: torch.Tensor, codes: torch.Tensor, motion: torch.Tensor, times: torch.Tensor):
        """Styles (B, w_dim), content noise, motion codes (B, J, motion_dim), motion features (B, K, F) and
        times (B, K) -> frames (B, C, K, H, W) and the extra outputs (a dict)."""
        B, K = times.shape
        frames = self.decoder(torch.cat([w.repeat_interleave(K, dim=0), motion.flatten(0, 1).to(w.dtype)], dim=1))
        return frames.unflatten(0, (B, K)).transpose(1, 2), {}

    def forward(
        self,
        z: torch.Tensor,
        cond: Condition | None = None,
        frames: int | None = None,
        times: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        extras: bool = False,
    ):
        """(B, C, K, H, W) frames at `times` ((B, K) or (K,), in frames from 0), or all of 0..frames-1;
        with `extras`, (frames, {name: tensor} for the names in `extra_outputs`)."""
        B = z.shape[0]
        if times is None:
            times = torch.arange(self.frames if frames is None else frames, device=z.device, dtype=torch.float32)
        times = times.to(z.device, torch.float32)
        if times.dim() == 1:
            times = times.expand(B, -1)
        need = self.z_dim_for(int(math.floor(times.max().item())) + 1)
        if z.shape[1] < need:
            raise ValueError(f"noise of width {z.shape[1]} covers fewer frames than asked; use z_dim_for(frames) = {need}")
        content, codes = self.split_z(z)
        w = self.mapped(content, cond)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().float().mean(0), 0.005)
        if truncation_psi != 1.0:
            w = self.w_avg.lerp(w, truncation_psi)
        codes = codes.reshape(B, -1, self.motion.dim)
        video, extra = self.draw(w, content, codes, self.motion(codes, times), times)
        if self.cond.kind == "first-frame":
            at_zero = (times[:, :1] == 0).view(B, 1, 1, 1, 1)
            video = torch.where(at_zero, with_first_frame(video, cond), video)
        return (video, extra) if extras else video


class DBlock(nn.Module):
    """Residual 2x downsampling block (StyleGAN2's resnet D)."""

    def __init__(self, in_ch: int, out_ch: int, sn: bool):
        super().__init__()
        self.conv1 = d_conv(in_ch, in_ch, 3, sn)
        self.conv2 = d_conv(in_ch, out_ch, 3, sn)
        self.skip = d_conv(in_ch, out_ch, 1, sn, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(lrelu(self.conv2(lrelu(self.conv1(x)))), 2)
        return (y + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


def time_features(gaps: torch.Tensor, n: int = 8) -> torch.Tensor:
    """Fourier features of time gaps (in frames): (B, K-1) -> (B, (K-1) * 2n)."""
    freqs = math.pi * 2.0 ** torch.arange(n, device=gaps.device, dtype=torch.float32) / 64
    angle = gaps.unsqueeze(-1) * freqs
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(1)


class Discriminator(nn.Module):
    def __init__(self, cfg: ContinuousTimeModel):
        super().__init__()
        n = spatial_doublings(cfg.resolution)
        self.k, sn = cfg.sparse_frames, cfg.spectral_norm
        fuse = min(max(4, cfg.fuse_resolution), cfg.resolution)
        widths = [min(cfg.max_channels, cfg.d_channels * 2**i) for i in range(n + 1)]
        self.from_rgb = d_conv(cfg.channels, widths[0], 1, sn)
        f = spatial_doublings(cfg.resolution) - spatial_doublings(fuse) if fuse >= 8 else n  # blocks before fusing
        self.per_frame = nn.ModuleList([DBlock(widths[i], widths[i + 1], sn) for i in range(f)])
        self.joint = nn.ModuleList([DBlock(widths[i] * (self.k if i == f else 1), widths[i + 1], sn) for i in range(f, n)])
        ch = widths[n] * (self.k if f == n else 1)
        self.minibatch_std = cfg.minibatch_std
        self.final_conv = d_conv(ch + int(cfg.minibatch_std), ch, 3, sn)
        self.final = d_linear(ch * 16, ch, sn)
        self.out = d_linear(ch, 1, sn)
        self.time_embed = nn.Sequential(EqualLinear((self.k - 1) * 16, ch), nn.LeakyReLU(0.2), EqualLinear(ch, ch)) if self.k > 1 else None
        self.cond = ConditionEncoder(cfg.condition, ch, cfg.num_classes, cfg.text_dim, cfg.channels)

    def forward(self, x: torch.Tensor, cond: Condition | None = None, times: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, K, H, W) and the frames' times (B, K) -> logits (B,)."""
        B, C, K, H, W = x.shape
        if K != self.k:
            raise ValueError(f"this discriminator judges {self.k} frames per clip, got {K}")
        if times is None:
            times = torch.arange(K, device=x.device, dtype=torch.float32).expand(B, -1)
        h = lrelu(self.from_rgb(x.transpose(1, 2).flatten(0, 1)))
        for block in self.per_frame:
            h = block(h)
        h = h.unflatten(0, (B, K)).flatten(1, 2)  # the K frames' maps side by side in channels
        for block in self.joint:
            h = block(h)
        if self.minibatch_std:
            h = minibatch_std(h)
        h = lrelu(self.final(lrelu(self.final_conv(h)).flatten(1)))
        logit = self.out(h).flatten() + projection(h, self.cond(cond))
        if self.time_embed is not None:
            gaps = (times[:, 1:] - times[:, :-1]).float()
            logit = logit + projection(h, self.time_embed(time_features(gaps)).to(h.dtype))
        return logit


def build_ctvgan(cfg: ContinuousTimeModel) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg), Discriminator(cfg)
