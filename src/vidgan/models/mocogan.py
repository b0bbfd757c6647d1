"""MoCoGAN (Tulyakov, Liu, Yang & Kautz, 2018): a clip is one content code plus a path of motion codes.

Generator:
  content  z_C (B, content_dim): drawn once per clip and given to every frame, so it is what stays
           the same (who or what is in the clip).
  motion   eps_1..eps_T (B, T, noise_dim), fresh noise per frame, turned by a GRU into motion codes
           m_1..m_T (B, T, motion_dim): m_t = GRU(eps_t, m_{t-1}), m_0 = 0. What changes over time
           can only enter through this path.
  frames   an image generator (2D transposed convolutions, DCGAN) maps [z_C, m_t] to frame t.

Everything is read from z = [z_C | eps_1 | ... | eps_T], so a clip is reproducible from z alone and
G.z_dim = content_dim + frames * noise_dim. `split_z` / `join_z` take z apart and put it back
together, so one can hold the content fixed and vary the motion (or the reverse). A longer clip
needs more motion noise: `z_dim_for(frames)`.

Discriminator: two heads, returned as (B, 2) logits that the losses average:
  video  VideoGAN's 3D discriminator on the whole clip: is the motion real?
  image  a 2D (DCGAN) discriminator on `image_frames` frames picked at random from each clip: is each
         frame a real image? It judges content alone, which the paper found makes training easier.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vidgan.config import MoCoGANConfig
from vidgan.models.layers import (
    Condition,
    ConditionEncoder,
    ImageDecoder,
    discriminator_width,
    leaky_relu,
    maybe_spectral_norm,
    projection,
    spatial_doublings,
)
from vidgan.models.videogan import Discriminator as VideoDiscriminator
from vidgan.models.videogan import with_first_frame


class Generator(nn.Module):
    def __init__(self, cfg: MoCoGANConfig):
        super().__init__()
        self.content_dim = cfg.content_dim or cfg.z_dim
        self.noise_dim, self.motion_dim, self.frames = cfg.noise_dim, cfg.motion_dim, cfg.frames
        self.z_dim = self.z_dim_for(cfg.frames)
        self.cond = ConditionEncoder(cfg.condition, cfg.cond_dim, cfg.num_classes, cfg.text_dim, cfg.channels)
        content_in = self.cond.width_with(self.content_dim)  # the condition is content
        self.motion = nn.GRUCell(cfg.noise_dim, cfg.motion_dim)
        self.image = ImageDecoder(content_in + cfg.motion_dim, cfg.channels, cfg.resolution, cfg.g_channels, cfg.max_channels)

    def z_dim_for(self, frames: int) -> int:
        return self.content_dim + frames * self.noise_dim

    def split_z(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, z_dim_for(T)) -> content (B, content_dim), motion noise (B, T, noise_dim)."""
        return z[:, : self.content_dim], z[:, self.content_dim :].unflatten(1, (-1, self.noise_dim))

    def join_z(self, content: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """The inverse of split_z: content (B, content_dim), motion noise (B, T, noise_dim) -> z."""
        return torch.cat([content, motion.flatten(1)], dim=1)

    def forward(self, z: torch.Tensor, cond: Condition | None = None, frames: int | None = None) -> torch.Tensor:
        frames = self.frames if frames is None else frames
        if frames < 1 or z.shape[1] != self.z_dim_for(frames):
            raise ValueError(
                f"{frames} frames need z of width content_dim + frames * noise_dim = {self.z_dim_for(frames)} "
                f"(G.z_dim_for({frames})), got {z.shape[1]}"
            )
        content, eps = self.split_z(z)
        content = self.cond.attach(content, cond)
        m = z.new_zeros(z.shape[0], self.motion_dim)
        codes = []
        for t in range(frames):
            m = self.motion(eps[:, t], m)
            codes.append(m)
        motion = torch.stack(codes, dim=1)  # (B, T, motion_dim)
        per_frame = torch.cat([content.unsqueeze(1).expand(-1, frames, -1), motion], dim=2)
        images = self.image(per_frame.flatten(0, 1))  # all B * T frames in one batch: (B*T, C, H, W)
        video = images.unflatten(0, (z.shape[0], frames)).transpose(1, 2)  # (B, C, T, H, W)
        return with_first_frame(video, cond) if self.cond.kind == "first-frame" else video


class ImageDiscriminator(nn.Module):
    """DCGAN's discriminator on single frames: strided 2D convolutions from the resolution down to 4x4."""

    def __init__(self, cfg: MoCoGANConfig):
        super().__init__()
        sn = cfg.spectral_norm
        layers, ch_in = [], cfg.channels
        for i in range(spatial_doublings(cfg.resolution)):
            ch_out = discriminator_width(cfg.d_channels, i, cfg.max_channels)
            layers.append(maybe_spectral_norm(nn.Conv2d(ch_in, ch_out, 4, stride=2, padding=1), sn))
            ch_in = ch_out
        self.convs = nn.ModuleList(layers)
        self.head = maybe_spectral_norm(nn.Conv2d(ch_in, 1, 4), sn)
        self.cond = ConditionEncoder(cfg.condition, ch_in, cfg.num_classes, cfg.text_dim, cfg.channels)
        for m in [*self.convs, self.head]:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, frames: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """frames (B, k, C, H, W) -> (B,): the mean logit of each clip's k frames."""
        b, k = frames.shape[:2]
        x = frames.flatten(0, 1)
        for conv in self.convs:
            x = leaky_relu(conv(x))
        c = self.cond(cond)
        c = None if c is None else c.repeat_interleave(k, dim=0)  # each frame is judged with its clip's condition
        logits = self.head(x).flatten() + projection(x.mean(dim=(2, 3)), c)
        return logits.view(b, k).mean(dim=1)


class Discriminator(nn.Module):
    def __init__(self, cfg: MoCoGANConfig):
        super().__init__()
        self.image_frames = cfg.image_frames
        self.video = VideoDiscriminator(cfg)
        self.image = ImageDiscriminator(cfg)

    def forward(self, x: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        b, t = x.shape[0], x.shape[2]
        # Drawn from torch's global (CPU) generator, which the trainer seeds and saves in checkpoints.
        picks = torch.randint(t, (b, self.image_frames)).to(x.device)
        frames = x.transpose(1, 2)[torch.arange(b, device=x.device)[:, None], picks]  # (B, k, C, H, W)
        return torch.stack([self.video(x, cond), self.image(frames, cond)], dim=1)


def build_mocogan(cfg: MoCoGANConfig) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg), Discriminator(cfg)
