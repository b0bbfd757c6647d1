"""TGAN (Saito, Matsumoto & Saito, 2017): one noise vector, a path of frame latents, one image per latent.

Generator, in two parts:
  temporal generator  z0 (B, z_dim) -> per-frame latents z_1..z_T (B, T, frame_dim)
  image generator     [z0, z_t] -> frame t, with 2D transposed convolutions (DCGAN), the same weights
                      for every frame; the frames are stacked into the clip (B, C, T, H, W).
z0 says what the clip shows and the path z_1..z_T how it changes; all randomness is in z0.

The paper's temporal generator is a stack of 1D transposed convolutions over time. Each of them
doubles the length, so the number of frames is fixed when the network is built. We use a GRU
unrolled for T steps instead: the same kind of deterministic map from z0 to a sequence, with weights
that do not depend on T, so a model trained on 16 frames can be asked for 32 (`frames=`).

Discriminator: VideoGAN's 3D discriminator. TGAN kept D Lipschitz with singular value clipping
(clamping every weight's singular values to at most 1 after each update); spectral normalisation
(`spectral_norm: true`) enforces the same bound by dividing by the largest singular value, and is
what later GANs use.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vidgan.config import TGANConfig
from vidgan.models.layers import Condition, ConditionEncoder, ImageDecoder
from vidgan.models.videogan import Discriminator, with_first_frame


class TemporalGenerator(nn.Module):
    """z0 (B, in_dim) -> latents (B, T, frame_dim) for any T: a GRU that reads z0 at every step.

    The initial state is computed from z0 too, so the whole path is a function of z0 alone.
    """

    def __init__(self, in_dim: int, frame_dim: int):
        super().__init__()
        self.initial = nn.Linear(in_dim, frame_dim)
        self.gru = nn.GRU(in_dim, frame_dim, batch_first=True)

    def forward(self, z0: torch.Tensor, frames: int) -> torch.Tensor:
        h0 = torch.tanh(self.initial(z0)).unsqueeze(0)  # (1, B, frame_dim): GRU states live in [-1, 1]
        path, _ = self.gru(z0.unsqueeze(1).expand(-1, frames, -1).contiguous(), h0)
        return path


class Generator(nn.Module):
    def __init__(self, cfg: TGANConfig):
        super().__init__()
        self.z_dim, self.frames = cfg.z_dim, cfg.frames
        self.cond = ConditionEncoder(cfg.condition, cfg.cond_dim, cfg.num_classes, cfg.text_dim, cfg.channels)
        z_in = self.cond.width_with(cfg.z_dim)
        frame_dim = cfg.frame_dim or cfg.z_dim
        self.temporal = TemporalGenerator(z_in, frame_dim)
        self.image = ImageDecoder(z_in + frame_dim, cfg.channels, cfg.resolution, cfg.g_channels, cfg.max_channels)

    def z_dim_for(self, frames: int) -> int:
        return self.z_dim  # the GRU unrolls from the same z0 for any length

    def forward(self, z: torch.Tensor, cond: Condition | None = None, frames: int | None = None) -> torch.Tensor:
        frames = self.frames if frames is None else frames
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        z = self.cond.attach(z, cond)
        path = self.temporal(z, frames)  # (B, T, frame_dim)
        per_frame = torch.cat([z.unsqueeze(1).expand(-1, frames, -1), path], dim=2)  # [z0, z_t] for each t
        images = self.image(per_frame.flatten(0, 1))  # all B * T frames in one batch: (B*T, C, H, W)
        video = images.unflatten(0, (z.shape[0], frames)).transpose(1, 2)  # (B, C, T, H, W)
        return with_first_frame(video, cond) if self.cond.kind == "first-frame" else video


def build_tgan(cfg: TGANConfig) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg), Discriminator(cfg)
