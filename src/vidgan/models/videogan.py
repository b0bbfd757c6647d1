"""VideoGAN (Vondrick, Pirsiavash & Torralba, 2016): a 3D-convolution generator and discriminator.

Generator: noise -> transposed 3D convolutions that double height and width (and time, where
needed) at every block -> tanh video. Discriminator: the mirror image, strided 3D convolutions
down to one logit. At 64x64x32 with the 64px preset this is the paper's network
(512-256-128-64 generator channels; 12.7M / 11.0M parameters).

"videogan" is the paper's one-stream baseline; "videogan-2stream" (TwoStreamGenerator, below) is its
main model: a moving foreground over a static background, blended by a learned mask.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vidgan.config import GANModel
from vidgan.models.layers import (
    BatchNorm,
    Condition,
    ConditionEncoder,
    ImageDecoder,
    discriminator_width,
    generator_widths,
    leaky_relu,
    maybe_spectral_norm,
    minibatch_std,
    projection,
    spatial_doublings,
)


def video_pyramid(cfg: GANModel) -> tuple[int, list[bool]]:
    """First-block frame count and, per 2x spatial block, whether that block also doubles time.

    Spatial size goes 4 -> resolution in n doublings. Time doubles as many times as the frame count
    has factors of two (at most n), in the blocks nearest the output; the rest is the first block's
    temporal extent. frames=32, n=4 -> starts at 2 frames; frames=20, n=4 -> starts at 5 frames.
    """
    n = spatial_doublings(cfg.resolution)
    twos = (cfg.frames & -cfg.frames).bit_length() - 1  # factors of two in frames
    ups = min(n, twos)
    return cfg.frames >> ups, [i >= n - ups for i in range(n)]


def video_decoder(cfg: GANModel, in_dim: int, out_channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The 3D upsampling stack: (B, in_dim, 1, 1, 1) -> stem -> blocks -> (B, out_channels, T, H, W).

    The last block ends in its transposed convolution: the caller picks the output activation.
    """
    t0, time_ups = video_pyramid(cfg)
    n = len(time_ups)
    widths = generator_widths(cfg.g_channels, cfg.max_channels, n)  # widest at 4x4, halving outwards
    stem = nn.Sequential(
        nn.ConvTranspose3d(in_dim, widths[0], kernel_size=(t0, 4, 4), bias=False),
        BatchNorm(widths[0]),
        nn.ReLU(inplace=True),
    )
    blocks = []
    for i, up_t in enumerate(time_ups):
        last = i == n - 1
        out = out_channels if last else widths[i + 1]
        kt, st = (4, 2) if up_t else (3, 1)
        blocks.append(nn.ConvTranspose3d(widths[i], out, (kt, 4, 4), stride=(st, 2, 2), padding=1, bias=last))
        if not last:
            blocks += [BatchNorm(out), nn.ReLU(inplace=True)]
    for m in [*stem, *blocks]:
        if isinstance(m, nn.ConvTranspose3d):
            nn.init.normal_(m.weight, 0.0, 0.02)  # DCGAN init, as in the paper
    return stem, nn.Sequential(*blocks)


def check_frames(frames: int | None, trained: int) -> None:
    """VideoGAN's time axis is fixed by its architecture: it generates the length it was built for only."""
    if frames is not None and frames != trained:
        raise ValueError(f"this VideoGAN generates {trained} frames only (got frames={frames}); tgan and mocogan can generate longer clips")


class Generator(nn.Module):
    def __init__(self, cfg: GANModel, extra_channels: int = 0):
        super().__init__()
        self.z_dim, self.frames, self.channels = cfg.z_dim, cfg.frames, cfg.channels
        self.cond = ConditionEncoder(cfg.condition, cfg.cond_dim, cfg.num_classes, cfg.text_dim, cfg.channels)
        self.stem, self.blocks = video_decoder(cfg, self.cond.width_with(cfg.z_dim), cfg.channels + extra_channels)

    def z_dim_for(self, frames: int) -> int:
        check_frames(frames, self.frames)
        return self.z_dim

    def decode(self, z: torch.Tensor, cond: Condition | None, frames: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3D stack's raw output (B, C + extra, T, H, W) and the conditioned noise it came from."""
        check_frames(frames, self.frames)
        z = self.cond.attach(z, cond)
        return self.blocks(self.stem(z.view(z.shape[0], -1, 1, 1, 1))), z

    def finish(self, video: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        return with_first_frame(video, cond) if self.cond.kind == "first-frame" else video

    def forward(self, z: torch.Tensor, cond: Condition | None = None, frames: int | None = None) -> torch.Tensor:
        return self.finish(torch.tanh(self.decode(z, cond, frames)[0]), cond)


class TwoStreamGenerator(Generator):
    """Vondrick et al.'s main generator: a moving foreground over a static background.

    The paper's prior is a still camera: most pixels of a clip do not move, so spending a whole 3D
    stream on them wastes capacity and lets the background flicker. The foreground stream is the
    one-stream generator's 3D stack with C + 1 output channels: C for the foreground video f (tanh)
    and one for a mask m (sigmoid) saying, per pixel and frame, how much of the foreground shows.
    (One conv with C + 1 outputs is two heads on the same features: each output channel has its own
    weights.) The background stream draws one image b from the same noise with 2D transposed
    convolutions, and the clip is m * f + (1 - m) * b with b repeated over time.

    The paper adds a small L1 sparsity prior lambda * |m| to G's loss so the foreground covers only
    what moves: `G(z, extras=True)` returns (video, {"mask": m}), the (B, 1, T, H, W) mask still
    attached to the graph, for the trainer's loss.mask_l1; this module does not apply it.
    """

    extra_outputs = ("mask",)

    def __init__(self, cfg: GANModel):
        super().__init__(cfg, extra_channels=1)
        self.background = ImageDecoder(self.cond.width_with(cfg.z_dim), cfg.channels, cfg.resolution, cfg.g_channels, cfg.max_channels)

    def forward(self, z: torch.Tensor, cond: Condition | None = None, frames: int | None = None, extras: bool = False):
        out, z = self.decode(z, cond, frames)
        foreground = torch.tanh(out[:, : self.channels])
        mask = torch.sigmoid(out[:, self.channels :])
        background = self.background(z).unsqueeze(2)  # (B, C, 1, H, W): the same image at every frame
        video = self.finish(mask * foreground + (1 - mask) * background, cond)
        return (video, {"mask": mask}) if extras else video


class Discriminator(nn.Module):
    def __init__(self, cfg: GANModel):
        super().__init__()
        t0, time_ups = video_pyramid(cfg)
        downs = list(reversed(time_ups))  # mirror of the generator
        sn = cfg.spectral_norm
        layers, ch_in = [], cfg.channels
        for i, down_t in enumerate(downs):
            ch_out = discriminator_width(cfg.d_channels, i, cfg.max_channels)
            kt, st = (4, 2) if down_t else (3, 1)
            layers.append(maybe_spectral_norm(nn.Conv3d(ch_in, ch_out, (kt, 4, 4), stride=(st, 2, 2), padding=1), sn))
            ch_in = ch_out
        self.convs = nn.ModuleList(layers)
        self.minibatch_std = cfg.minibatch_std
        self.head = maybe_spectral_norm(nn.Conv3d(ch_in + int(cfg.minibatch_std), 1, kernel_size=(t0, 4, 4)), sn)
        self.cond = ConditionEncoder(cfg.condition, ch_in, cfg.num_classes, cfg.text_dim, cfg.channels)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        for conv in self.convs:
            x = leaky_relu(conv(x))
        h = minibatch_std(x) if self.minibatch_std else x
        return self.head(h).flatten() + projection(x.mean(dim=(2, 3, 4)), self.cond(cond))


def with_first_frame(video: torch.Tensor, cond: Condition) -> torch.Tensor:
    """Image-to-video: the given frame is frame 0; the generator makes the frames after it."""
    return torch.cat([cond.first_frame.unsqueeze(2).to(video.dtype), video[:, :, 1:]], dim=2)


def build_videogan(cfg: GANModel) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg), Discriminator(cfg)


def build_videogan_2stream(cfg: GANModel) -> tuple[nn.Module, nn.Module]:
    return TwoStreamGenerator(cfg), Discriminator(cfg)
