"""Video VQ-VAE (stage 1 of the two-stage generator): clips <-> a grid of discrete tokens.

A 3D-conv encoder shrinks a clip (B, C, T, H, W) by `downsample` = (dt, ds, ds) to a latent grid
(B, D, T/dt, H/ds, W/ds); every latent vector is replaced by its nearest codebook entry (its index
is the token); a mirrored decoder turns the quantised grid back into a clip. As in VQ-VAE-2 and
VideoGPT the codebook is not trained by gradients but is an exponential moving average of the
encoder outputs assigned to each code, and codes nobody uses are restarted on random encoder
outputs (both counted in buffers, so they survive checkpoints). The encoder gets the decoder's
gradient through the quantiser by the straight-through estimator and is pulled towards its code
by the commitment loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidgan.config import TwoStageModelConfig, VQConfig


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two clips in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(x.float().clamp(-1, 1), y.float().clamp(-1, 1)).item()
    return 10 * math.log10(4.0 / max(mse, 1e-10))


def _log2(n: int, what: str) -> int:
    k = math.log2(n) if n > 0 else -1
    if k != int(k) or k < 0:
        raise ValueError(f"{what} downsampling must be a power of two (1, 2, 4, ...), got {n}")
    return int(k)


def downsample_steps(downsample: tuple[int, int, int] | list[int]) -> list[tuple[int, int, int]]:
    """(dt, dh, dw) -> the strides of the 2x down (or up) convolutions, time halving in the first ones."""
    dt, dh, dw = downsample
    n = [_log2(dt, "temporal"), _log2(dh, "height"), _log2(dw, "width")]
    return [tuple(2 if i < k else 1 for k in n) for i in range(max(n))]


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv3d(width, width, 3, padding=1)
        self.conv2 = nn.Conv3d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def _kernel(stride: tuple[int, int, int]) -> tuple[int, int, int]:
    # kernel 4, padding 1 halves a dimension exactly; kernel 3, padding 1 keeps it
    return tuple(4 if s == 2 else 3 for s in stride)


class Encoder(nn.Module):
    def __init__(self, channels: int, width: int, embed_dim: int, downsample, res_blocks: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv3d(channels, width, 3, padding=1)]
        for stride in downsample_steps(downsample):
            layers += [nn.ReLU(), nn.Conv3d(width, width, _kernel(stride), stride=stride, padding=1)]
        layers += [ResBlock(width) for _ in range(res_blocks)]
        layers += [nn.ReLU(), nn.Conv3d(width, embed_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, channels: int, width: int, embed_dim: int, downsample, res_blocks: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv3d(embed_dim, width, 3, padding=1)]
        layers += [ResBlock(width) for _ in range(res_blocks)]
        # nearest upsampling + conv rather than a transposed conv: same job, no checkerboard, and several
        # times faster on CPUs (torch's ConvTranspose3d has no fast CPU kernel)
        for stride in reversed(downsample_steps(downsample)):
            layers += [nn.ReLU(), nn.Upsample(scale_factor=stride, mode="nearest"), nn.Conv3d(width, width, 3, padding=1)]
        layers += [nn.ReLU(), nn.Conv3d(width, channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class Quantized:
    z_q: torch.Tensor  # (B, D, t, h, w) quantised latents, straight-through: gradients flow to the encoder
    codes: torch.Tensor  # (B, t, h, w) long token indices
    commitment: torch.Tensor  # mean ||z - sg(code)||^2
    perplexity: torch.Tensor  # exp(entropy) of the code histogram of this batch: "effective codes used"
    used: torch.Tensor  # distinct codes in this batch


class Codebook(nn.Module):
    """K codes of width D, updated by exponential moving averages with dead-code restarts.

    cluster_size[k] is the EMA of how many latent vectors code k gets per batch, embed_sum[k] the EMA
    of their sum; the code is their ratio (with Laplace smoothing). A code whose cluster_size falls
    below `restart_threshold` is dead: it is moved onto a random encoder output of the batch and
    given a short grace period (cluster_size = 2 x threshold) to attract vectors before it can be
    restarted again. The codebook is initialised from the first training batch's encoder outputs.
    """

    def __init__(self, codebook_size: int, embed_dim: int, decay: float = 0.99, restart_threshold: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.size, self.dim, self.decay, self.threshold, self.eps = codebook_size, embed_dim, decay, restart_threshold, eps
        self.register_buffer("embeddings", torch.randn(codebook_size, embed_dim))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", self.embeddings.clone())
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))  # training steps that moved the codes
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # dead codes moved onto encoder outputs, in all

    def _random_rows(self, flat: torch.Tensor, n: int, rng: torch.Generator | None) -> torch.Tensor:
        idx = torch.randint(len(flat), (n,), generator=rng, device="cpu").to(flat.device)
        return flat[idx]

    def codes_of(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, D) vectors -> (N,) index of the nearest code (squared Euclidean distance)."""
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embeddings.t() + self.embeddings.pow(2).sum(1)[None]
        return dist.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, t, h, w) codes -> (B, D, t, h, w) code vectors."""
        return F.embedding(codes, self.embeddings).permute(0, 4, 1, 2, 3)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, onehot: torch.Tensor, rng: torch.Generator | None) -> None:
        self.cluster_size.lerp_(onehot.sum(0), 1 - self.decay)
        self.embed_sum.lerp_(onehot.t() @ flat, 1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.size * self.eps) * n
        self.embeddings.copy_(self.embed_sum / smoothed[:, None])
        self.ema_updates += 1
        dead = self.cluster_size < self.threshold
        if dead.any():
            k = int(dead.sum())
            fresh = self._random_rows(flat, k, rng)
            self.embeddings[dead] = fresh
            self.cluster_size[dead] = 2 * self.threshold
            self.embed_sum[dead] = fresh * 2 * self.threshold
            self.restarts += k

    def forward(self, z: torch.Tensor, rng: torch.Generator | None = None) -> Quantized:
        b, d, t, h, w = z.shape
        flat = z.permute(0, 2, 3, 4, 1).reshape(-1, d).float()
        if self.training and not self.initialised:
            with torch.no_grad():
                self.embeddings.copy_(self._random_rows(flat, self.size, rng))
                self.embed_sum.copy_(self.embeddings)
                self.cluster_size.fill_(1.0)
                self.initialised.fill_(True)
        codes = self.codes_of(flat.detach())
        onehot = F.one_hot(codes, self.size).type_as(flat)
        if self.training:
            self._ema_update(flat.detach(), onehot, rng)
        z_q = self.lookup(codes.view(b, t, h, w)).to(z.dtype)
        commitment = F.mse_loss(z, z_q.detach())
        probs = onehot.mean(0)
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return Quantized(z + (z_q - z).detach(), codes.view(b, t, h, w), commitment, perplexity, (probs > 0).sum())


class VQVAE(nn.Module):
    """Clips (B, C, T, H, W) in [-1, 1] <-> tokens (B, T/dt, H/ds, W/ds); see the module docstring."""

    def __init__(
        self,
        channels: int = 3,
        width: int = 64,
        embed_dim: int = 32,
        codebook_size: int = 512,
        downsample=(4, 4, 4),
        res_blocks: int = 2,
        ema_decay: float = 0.99,
        restart_threshold: float = 1.0,
    ):
        super().__init__()
        self.downsample = tuple(int(d) for d in downsample)
        downsample_steps(self.downsample)  # bad factors fail here
        self.encoder = Encoder(channels, width, embed_dim, self.downsample, res_blocks)
        self.decoder = Decoder(channels, width, embed_dim, self.downsample, res_blocks)
        self.codebook = Codebook(codebook_size, embed_dim, ema_decay, restart_threshold)

    @classmethod
    def from_config(cls, model_cfg, vq_cfg) -> VQVAE:
        return cls(
            model_cfg.channels,
            vq_cfg.width,
            vq_cfg.embed_dim,
            vq_cfg.codebook_size,
            vq_cfg.downsample,
            vq_cfg.res_blocks,
            vq_cfg.ema_decay,
            vq_cfg.restart_threshold,
        )

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The token grid (t, h, w) of a clip of this shape; a clear error if it does not divide."""
        dt, dh, dw = self.downsample
        if frames % dt or height % dh or width % dw:
            raise ValueError(
                f"clips of {frames}x{height}x{width} (frames x height x width) do not divide by the VQ-VAE's downsampling "
                f"{dt}x{dh}x{dw}; prepare the data with --frames/--size multiples of it or change vq.downsample"
            )
        return frames // dt, height // dh, width // dw

    def forward(self, x: torch.Tensor, rng: torch.Generator | None = None) -> tuple[torch.Tensor, Quantized]:
        self.grid(*x.shape[2:])
        q = self.codebook(self.encoder(x), rng)
        return self.decoder(q.z_q), q

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clips -> (B, t, h, w) long tokens (the codebook is not updated)."""
        self.grid(*x.shape[2:])
        z = self.encoder(x)
        b, d, t, h, w = z.shape
        return self.codebook.codes_of(z.permute(0, 2, 3, 4, 1).reshape(-1, d).float()).view(b, t, h, w)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, t, h, w) tokens -> (B, C, T, H, W) clips, clamped to [-1, 1]."""
        return self.decoder(self.codebook.lookup(codes)).clamp(-1, 1)


class PatchDiscriminator(nn.Module):
    """A 3D PatchGAN critic for the optional adversarial term (as in VQGAN / TATS): one logit per
    overlapping spatio-temporal patch of a clip, so it judges local texture and motion rather than
    the whole clip. `layers` stride-2 convolutions in time and space (clips shorter than 2**layers
    frames have each frame repeated to that length)."""

    def __init__(self, channels: int = 3, width: int = 64, layers: int = 3):
        super().__init__()
        blocks, cin = [], channels
        for i in range(layers):
            cout = width * min(2**i, 8)
            blocks += [nn.utils.parametrizations.spectral_norm(nn.Conv3d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            cin = cout
        self.layers = layers
        self.body = nn.Sequential(*blocks)
        self.head = nn.Conv3d(cin, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        need = 2**self.layers
        if x.shape[2] < need:  # too few frames for the temporal strides: repeat each frame
            x = x.repeat_interleave(-(-need // x.shape[2]), dim=2)
        return self.head(self.body(x))


def vqvae_loss(x: torch.Tensor, recon: torch.Tensor, q: Quantized, kind: str = "l2", commitment_weight: float = 0.25):
    """(total, reconstruction) loss: L1 or L2 reconstruction + beta x commitment."""
    if kind == "l2":
        rec = F.mse_loss(recon, x)
    elif kind == "l1":
        rec = F.l1_loss(recon, x)
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; choose l1 or l2")
    return rec + commitment_weight * q.commitment, rec


def build_vqvae(cfg: TwoStageModelConfig, vq: VQConfig) -> tuple[nn.Module, nn.Module | None]:
    """Stage 1 of the two-stage generator: the VQ-VAE and, with vq.adversarial > 0, its patch critic."""
    model = VQVAE.from_config(cfg, vq)
    if vq.adversarial <= 0:
        return model, None
    return model, PatchDiscriminator(cfg.channels, vq.adversarial_width, layers=max(1, min(3, int(math.log2(cfg.resolution)) - 1)))
