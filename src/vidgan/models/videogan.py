"""VideoGAN (Vondrick, Pirsiavash & Torralba, 2016): a 3D-convolution generator and discriminator.

Generator: noise -> transposed 3D convolutions that double height and width (and time, where
needed) at every block -> tanh video. Discriminator: the mirror image, strided 3D convolutions
down to one logit. At 64x64x32 with the 64px preset this is the paper's network
(512-256-128-64 generator channels; 12.7M / 11.0M parameters).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from vidgan.config import ModelConfig
from vidgan.models.layers import BatchNorm, Condition, ConditionEncoder, leaky_relu, maybe_spectral_norm, projection
from vidgan.models.registry import register


def video_pyramid(cfg: ModelConfig) -> tuple[int, list[bool]]:
    """First-block frame count and, per 2x spatial block, whether that block also doubles time.

    Spatial size goes 4 -> resolution in n doublings. Time doubles as many times as the frame count
    has factors of two (at most n), in the blocks nearest the output; the rest is the first block's
    temporal extent. frames=32, n=4 -> starts at 2 frames; frames=20, n=4 -> starts at 5 frames.
    """
    n = math.log2(cfg.resolution / 4)
    if cfg.resolution < 8 or n != int(n):
        raise ValueError(f"resolution must be a power of two >= 8, got {cfg.resolution}")
    n = int(n)
    twos = (cfg.frames & -cfg.frames).bit_length() - 1  # factors of two in frames
    ups = min(n, twos)
    return cfg.frames >> ups, [i >= n - ups for i in range(n)]


def _channels(base: int, depth: int, cap: int) -> int:
    return max(1, min(cap, base * 2**depth))


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.z_dim = cfg.z_dim
        t0, time_ups = video_pyramid(cfg)
        n = len(time_ups)
        self.cond = ConditionEncoder(cfg.condition, cfg.cond_dim, cfg.num_classes, cfg.text_dim, cfg.channels)
        z_in = cfg.z_dim + (cfg.cond_dim if self.cond.active else 0)
        # widths halve from the widest (g_channels, at 4x4) towards the output
        widths = [min(cfg.max_channels, max(8, cfg.g_channels // 2**i)) for i in range(n)]
        self.stem = nn.Sequential(
            nn.ConvTranspose3d(z_in, widths[0], kernel_size=(t0, 4, 4), bias=False),
            BatchNorm(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks = []
        for i, up_t in enumerate(time_ups):
            last = i == n - 1
            out = cfg.channels if last else widths[i + 1]
            kt, st = (4, 2) if up_t else (3, 1)
            conv = nn.ConvTranspose3d(widths[i], out, (kt, 4, 4), stride=(st, 2, 2), padding=1, bias=last)
            blocks += [conv, nn.Tanh()] if last else [conv, BatchNorm(out), nn.ReLU(inplace=True)]
        self.blocks = nn.Sequential(*blocks)
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose3d, nn.Conv3d)):
                nn.init.normal_(m.weight, 0.0, 0.02)  # DCGAN init, as in the paper

    def forward(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        c = self.cond(cond)
        if c is not None:
            z = torch.cat([z, c], dim=1)
        video = self.blocks(self.stem(z.view(z.shape[0], -1, 1, 1, 1)))
        return with_first_frame(video, cond) if self.cond.kind == "first-frame" else video


class Discriminator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        t0, time_ups = video_pyramid(cfg)
        downs = list(reversed(time_ups))  # mirror of the generator
        sn = cfg.spectral_norm
        layers, ch_in = [], cfg.channels
        for i, down_t in enumerate(downs):
            ch_out = _channels(cfg.d_channels, i, cfg.max_channels)
            kt, st = (4, 2) if down_t else (3, 1)
            layers.append(maybe_spectral_norm(nn.Conv3d(ch_in, ch_out, (kt, 4, 4), stride=(st, 2, 2), padding=1), sn))
            ch_in = ch_out
        self.convs = nn.ModuleList(layers)
        self.head = maybe_spectral_norm(nn.Conv3d(ch_in, 1, kernel_size=(t0, 4, 4)), sn)
        self.cond = ConditionEncoder(cfg.condition, ch_in, cfg.num_classes, cfg.text_dim, cfg.channels)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        for conv in self.convs:
            x = leaky_relu(conv(x))
        return self.head(x).flatten() + projection(x.mean(dim=(2, 3, 4)), self.cond(cond))


def with_first_frame(video: torch.Tensor, cond: Condition) -> torch.Tensor:
    """Image-to-video: the given frame is frame 0; the generator makes the frames after it."""
    return torch.cat([cond.first_frame.unsqueeze(2).to(video.dtype), video[:, :, 1:]], dim=2)


@register("videogan")
def build_videogan(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg), Discriminator(cfg)
