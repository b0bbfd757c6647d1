"""Model registry: name -> builder, for every model vidgan trains.

A builder takes the run's model settings (its class in vidgan.config, chosen by model.name; and, for the two-stage models, its VQConfig) and returns
(generator, discriminator). Every generator maps noise `z` of shape (B, z_dim) to videos
(B, C, T, H, W) in [-1, 1] and has `z_dim`; `G(z, cond=None, frames=None)` and `G.z_dim_for(frames)`
(the noise width for a clip of that length; VideoGANs raise ValueError for any length but the
trained one). Every discriminator maps such videos to logits of shape (B,), or (B, K) for K heads
(the losses average over all of them). A discriminator with an attribute `k` (ctvgan) judges K
frames per clip: D(frames (B, C, K, H, W), cond, times=(B, K)); its generator renders any frame
times, G(z, cond, times=(B, K)), and the GAN step draws the times (vidgan.training.gan). A generator
whose `extra_outputs` names things (a mask, its drawing) returns them when called with extras=True:
G(z, cond, extras=True) -> (video, {name: value}), for the losses that need them.

`kind` says how a model trains (vidgan.training): "gan" (G and D, the GAN step), "vqvae" (stage 1
of the two-stage generator: an autoencoder, its "discriminator" the optional patch critic, and no
generator of its own) or "prior" (stage 2: a token Transformer plus the VQ-VAE that decodes it; no D).
"""

from __future__ import annotations

import torch.nn as nn

from vidgan.config import ModelBase, VQConfig
from vidgan.models import ctvgan, mocogan, sprites, tgan, transformer, videogan, vqvae

# name -> (builder, kind). A new model: one file in models/ with a builder, and one line here.
MODELS = {
    "videogan": (videogan.build_videogan, "gan"),
    "videogan-2stream": (videogan.build_videogan_2stream, "gan"),
    "tgan": (tgan.build_tgan, "gan"),
    "mocogan": (mocogan.build_mocogan, "gan"),
    "ctvgan": (ctvgan.build_ctvgan, "gan"),
    "sprites": (sprites.build_sprites, "gan"),
    "vqvae": (vqvae.build_vqvae, "vqvae"),
    "videogpt": (transformer.build_videogpt, "prior"),
}


def model_names() -> list[str]:
    return sorted(MODELS)


def _entry(name: str):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def model_kind(name: str) -> str:
    return _entry(name)[1]


def build_model(cfg: ModelBase, vq: VQConfig | None = None) -> tuple[nn.Module, nn.Module | None]:
    builder, kind = _entry(cfg.name)
    return builder(cfg) if kind == "gan" else builder(cfg, vq or VQConfig())
