"""CTVGAN: a continuous-time video GAN trained on a few frames per clip (in the line of StyleGAN-V / DIGAN).

Generator: every frame is drawn by one 2D image network (`synthesis`: "dcgan", BatchNorm and
transposed convolutions from the concatenated codes; "resize-conv", the same with nearest 2x
upsampling and 3x3 convolutions; or "style", StyleGAN2's modulated convolutions) from
  content  a mapping network (z -> w, as in StyleGAN2) whose w is the same for all frames of a clip
           (the style network modulates every convolution with it), so what a clip shows cannot
           drift from frame to frame;
  motion   random motion codes placed every `motion_spacing` frames on the time axis and linearly
           interpolated, so motion is a continuous, piecewise-linear function of time (bouncing and
           panning are piecewise linear too), plus sinusoids of time with learned frequencies whose
           phases come from the motion code (StyleGAN-V's acyclic time embedding). The style
           network turns the motion features into its 4x4 input map (in place of StyleGAN's
           constant), so they decide where things are and w decides what they look like.
Synthesis "layers" draws instead once per clip, from w alone, a smooth backdrop and a few layers
with alpha, and motion only moves the layers (`LayeredMotion`: a straight line bouncing between learned
walls, plus a learned offset from the motion features), so what moves keeps its shape, as objects
in video do; a frame is the layers composited at their positions at time t.
A frame is a function of (z, t) alone (in eval mode: while training, the DCGAN network's BatchNorm
uses batch statistics): the same frame comes out whether it is rendered by itself or inside a longer
clip, at any real-valued time, so clips can be any length and any frame rate.

Discriminator: sees K frames of a clip (default 3) at their times. A 2D residual backbone shared by
the frames runs to `fuse_resolution`, the frames' feature maps are then stacked along channels and
judged together (so D sees how they fit each other), and the time gaps between the frames are
embedded and used as a projection term (StyleGAN-V conditions on them the same way).

Training renders only those K frames per clip (vidgan.training's GAN step draws the times), so a
step costs about as much as an image GAN on K images, not a 3D GAN on all T frames.

Differences from StyleGAN-V: the DCGAN synthesis by default (on Moving MNIST at CPU budgets the style
network learned far more slowly; README), no noise inputs (per-frame noise flickers), bilinear
up/down-sampling instead of FIR filters, linear instead of cubic motion-code interpolation, an
equalised learning rate in D, and sizes chosen for CPU budgets (see the presets).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidgan.config import ModelConfig
from vidgan.models.layers import (
    Condition,
    ConditionEncoder,
    EqualLinear,
    ImageDecoder,
    generator_widths,
    maybe_spectral_norm,
    minibatch_std,
    projection,
    spatial_doublings,
)
from vidgan.models.moving_layers import LayeredMotion
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


class ModulatedConv(nn.Module):
    """StyleGAN2's modulated 3x3 convolution (optionally upsampling 2x first), with weight demodulation.

    Written as modulate-input / shared conv / demodulate-output (StyleGAN2's non-fused form): the same
    result as one grouped convolution per sample, but one ordinary convolution for the whole batch,
    which runs much faster on CPUs.
    """

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, up: bool = False, kernel: int = 3, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.affine = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.up, self.demodulate, self.padding = up, demodulate, kernel // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.affine(style)  # (N, in_ch)
        w = self.weight * self.scale
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x * s.to(x.dtype)[:, :, None, None], w.to(x.dtype), padding=self.padding)
        if self.demodulate:
            d = torch.rsqrt(s.pow(2) @ w.pow(2).sum(dim=(2, 3)).t() + 1e-8)  # (N, out_ch)
            x = x * d.to(x.dtype)[:, :, None, None]
        return x + self.bias.to(x.dtype)[None, :, None, None]


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
    continuous_time = True  # renders any real-valued times: G(z, times=...) (VideoPipeline's time_scale)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.frames, self.channels = cfg.frames, cfg.channels
        # layers with their own codes: one content code per layer (each drawn by itself), else one per clip
        self.codes_per_clip = cfg.moving_layers if cfg.synthesis == "layers" and cfg.own_layer_codes else 1
        self.content_dim = cfg.z_dim * self.codes_per_clip
        self.cond = ConditionEncoder(cfg.condition, cfg.cond_dim, cfg.num_classes, cfg.text_dim, cfg.channels)
        w_dim = cfg.w_dim
        layers: list[nn.Module] = []
        width = self.cond.width_with(cfg.z_dim)
        for _ in range(cfg.mapping_layers):
            layers += [EqualLinear(width, w_dim, lr_mul=0.01), nn.LeakyReLU(0.2)]
            width = w_dim
        self.mapping = nn.Sequential(*layers)
        w_dim = width  # no mapping layers: w is the normalised noise (and condition) itself
        self.motion = MotionEncoder(cfg.motion_dim, cfg.motion_spacing)
        self.synthesis = cfg.synthesis
        if cfg.synthesis in ("dcgan", "resize-conv"):
            # DCGAN's image generator (BatchNorm, transposed convs, tanh) from [w, motion features]:
            # far fewer images to a recognisable frame than the style network, which CPU budgets need.
            # "resize-conv": the same with nearest 2x upsampling + 3x3 convs in place of transposed convs.
            self.decoder = ImageDecoder(
                w_dim + self.motion.out_dim, cfg.channels, cfg.resolution, cfg.g_channels, cfg.max_channels, cfg.synthesis == "resize-conv"
            )
        elif cfg.synthesis == "layers":
            side = cfg.resolution * cfg.layer_size  # the layers are drawn at their own size
            if side < 4 or side != 2 ** round(math.log2(side)):
                raise ValueError(
                    f"model.layer_size {cfg.layer_size} makes {side:g}-pixel layers in {cfg.resolution}-pixel frames; "
                    "choose a size that gives a power of two >= 4 (e.g. 1.0, 0.5)"
                )
            self.layers = LayeredMotion(
                cfg.moving_layers, cfg.channels, cfg.motion_dim, self.motion.out_dim, cfg.layer_size, cfg.layer_snap
            )
            self.last_mask: torch.Tensor | None = None  # the layers' alpha (B, layers, h, w), for loss.mask_l1
            # with own codes the network draws one layer (and a backdrop) per code; else all layers at once
            drawn = self.layers.canvas_channels if self.codes_per_clip == 1 else 2 * cfg.channels + 1
            self.supersample = cfg.resolution // int(side) if cfg.layer_supersample else 1
            self.decoder = ImageDecoder(w_dim, drawn, int(side) * self.supersample, cfg.g_channels, cfg.max_channels)
            with torch.no_grad():  # layers start nearly transparent (alpha 0.12): no frame-sized rectangles moving about
                self.decoder.net[-2].bias[self.layers.alpha_channels if self.codes_per_clip == 1 else [drawn - 1]] = -1.0
        elif cfg.synthesis == "style":
            n = spatial_doublings(cfg.resolution)
            widths = generator_widths(cfg.g_channels, cfg.max_channels, n + 1)
            self.motion_channels = max(8, widths[0] // 4)
            self.to_input = EqualLinear(self.motion.out_dim, self.motion_channels * 16)
            self.const = nn.Parameter(torch.randn(1, widths[0], 4, 4))
            self.first = ModulatedConv(widths[0] + self.motion_channels, widths[0], w_dim)
            self.convs = nn.ModuleList()
            self.to_rgb = nn.ModuleList([ModulatedConv(widths[0], cfg.channels, w_dim, kernel=1, demodulate=False)])
            for i in range(n):
                self.convs.append(
                    nn.ModuleList(
                        [ModulatedConv(widths[i], widths[i + 1], w_dim, up=True), ModulatedConv(widths[i + 1], widths[i + 1], w_dim)]
                    )
                )
                self.to_rgb.append(ModulatedConv(widths[i + 1], cfg.channels, w_dim, kernel=1, demodulate=False))
        else:
            raise ValueError(f"unknown model.synthesis {cfg.synthesis!r}; choose dcgan, resize-conv, style or layers")
        self.register_buffer("w_avg", torch.zeros(w_dim))  # for truncation; tracked in training
        self.last_drawing: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def z_dim(self) -> int:
        return self.z_dim_for(self.frames)

    def z_dim_for(self, frames: int) -> int:
        """Noise width for a clip of `frames` frames: content, then one motion code per anchor."""
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        return self.content_dim + self.motion.dim * self.motion.anchors_for(frames - 1)

    def split_z(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content (B, z_dim), motion codes (B, J * motion_dim)): what --hold content|motion swaps."""
        return z[:, : self.content_dim], z[:, self.content_dim :]

    def join_z(self, content: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        return torch.cat([content, motion], dim=1)

    def mapped(self, z_content: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """Content noise (B, content_dim) -> styles (B * codes_per_clip, w_dim): one per layer with own codes."""
        n = self.codes_per_clip
        if n > 1:
            z_content = z_content.reshape(-1, z_content.shape[1] // n)
            cond = None if cond is None else cond._map(lambda v: v.repeat_interleave(n, dim=0))
        x = z_content * torch.rsqrt(z_content.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        return self.mapping(self.cond.attach(x, cond))

    def draw_layers(self, w: torch.Tensor) -> torch.Tensor:
        """Styles -> the layered synthesis's canvas (B, backdrop + layers, h, w). With own codes each
        layer is drawn by itself and the backdrop is the mean of the backdrops drawn with them."""
        canvas = self.decoder(w)
        if self.supersample > 1:  # drawn at the frame's resolution, box-filtered to the layer's
            canvas = F.avg_pool2d(canvas, self.supersample)
        n, c = self.codes_per_clip, self.channels
        if n == 1:
            return canvas
        canvas = canvas.unflatten(0, (-1, n))  # (B, n, 2C + 1, h, w): backdrop, then the layer with alpha
        return torch.cat([canvas[:, :, :c].mean(dim=1), canvas[:, :, c:].flatten(1, 2)], dim=1)

    def render(self, w: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Frames from styles w (N, w_dim) and motion features (N, out_dim): (N, C, H, W), in [-1, 1] in eval mode."""
        if self.synthesis != "style":
            return self.decoder(torch.cat([w, motion.to(w.dtype)], dim=1))
        x = torch.cat([self.const.expand(len(w), -1, -1, -1), self.to_input(motion).view(len(w), -1, 4, 4)], dim=1)
        x = lrelu(self.first(x, w))
        rgb = self.to_rgb[0](x, w)
        for (up, conv), to_rgb in zip(self.convs, self.to_rgb[1:]):
            x = lrelu(conv(lrelu(up(x, w)), w))
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + to_rgb(x, w)
        # Linear output while training, as in StyleGAN: a tanh saturates on the flat backgrounds of
        # clips (black, in Moving MNIST) and its vanishing gradient kept G from drawing anything there.
        return rgb if self.training else rgb.clamp(-1.0, 1.0)

    def forward(
        self,
        z: torch.Tensor,
        cond: Condition | None = None,
        frames: int | None = None,
        times: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
    ) -> torch.Tensor:
        """(B, C, K, H, W) frames at `times` ((B, K) or (K,), in frames from 0), or all of 0..frames-1."""
        B = z.shape[0]
        if times is None:
            times = torch.arange(self.frames if frames is None else frames, device=z.device, dtype=torch.float32)
        times = times.to(z.device, torch.float32)
        if times.dim() == 1:
            times = times.expand(B, -1)
        K = times.shape[1]
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
        motion = self.motion(codes, times)  # (B, K, out_dim)
        if self.synthesis == "layers":  # one drawing per clip, moved to each frame's time
            canvas = self.draw_layers(w)
            # for the mode-seeking term (loss.mode_seeking): what was drawn, and the noise it was drawn from
            drawn, n = self.layers.drawing(canvas), self.codes_per_clip  # with own codes: layer by layer
            self.last_drawing = (drawn.unflatten(1, (n, -1)).flatten(0, 1), content.reshape(B * n, -1))
            self.last_mask = self.layers.alpha(canvas)
            video = self.layers(canvas, codes[:, 0], motion, times).transpose(1, 2)
        else:
            frames_out = self.render(w.repeat_interleave(K, dim=0), motion.flatten(0, 1))
            video = frames_out.unflatten(0, (B, K)).transpose(1, 2)
        if self.cond.kind == "first-frame":
            at_zero = (times[:, :1] == 0).view(B, 1, 1, 1, 1)
            video = torch.where(at_zero, with_first_frame(video, cond), video)
        return video

    def __getstate__(self):
        # copy.deepcopy (the trainer's EMA copy) cannot copy a tensor that is part of a graph.
        state = super().__getstate__()
        return {**state, **{key: None for key in ("last_drawing", "last_mask") if key in state}}


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
    def __init__(self, cfg: ModelConfig):
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
        self.minibatch_std, self.content_std = cfg.minibatch_std, cfg.content_std
        self.final_conv = d_conv(ch + int(cfg.minibatch_std) + int(cfg.content_std), ch, 3, sn)
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
        h = h.unflatten(0, (B, K))
        # how much the clips of a group differ in what their frames show, wherever it is: the std of
        # position-free (spatially averaged) frame features, so a generator that draws one thing in
        # many places is still seen to draw one thing (the std of the maps below mostly sees places)
        content = minibatch_std(h.mean(dim=(3, 4)).flatten(1))[:, -1] if self.content_std else None
        h = h.flatten(1, 2)  # the K frames' maps side by side in channels
        for block in self.joint:
            h = block(h)
        if self.minibatch_std:
            h = minibatch_std(h)
        if content is not None:
            h = torch.cat([h, content.to(h.dtype)[:, None, None, None].expand(-1, 1, *h.shape[2:])], dim=1)
        h = lrelu(self.final(lrelu(self.final_conv(h)).flatten(1)))
        logit = self.out(h).flatten() + projection(h, self.cond(cond))
        if self.time_embed is not None:
            gaps = (times[:, 1:] - times[:, :-1]).float()
            logit = logit + projection(h, self.time_embed(time_features(gaps)).to(h.dtype))
        return logit


def build_ctvgan(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg), Discriminator(cfg)
