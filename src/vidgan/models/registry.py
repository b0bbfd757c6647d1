"""Model registry: name -> builder(ModelConfig) -> (generator, discriminator).

Every generator maps noise `z` of shape (B, z_dim) to videos (B, C, T, H, W) in [-1, 1] and
has `z_dim`; `G(z, cond=None, frames=None)` and `G.z_dim_for(frames)` (the noise width for a
clip of that length; VideoGANs raise ValueError for any length but the trained one). Every
discriminator maps such videos to logits of shape (B,), or (B, K) for K heads (the losses
average over all of them). The trainer, sampling and metrics rely on nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from vidgan.config import ModelConfig

Builder = Callable[[ModelConfig], "tuple[nn.Module, nn.Module]"]
_MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def wrap(builder: Builder) -> Builder:
        _MODELS[name] = builder
        return builder

    return wrap


def model_names() -> list[str]:
    _import_builtin_models()
    return sorted(_MODELS)


def build_model(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    _import_builtin_models()
    if cfg.name not in _MODELS:
        raise ValueError(f"unknown model {cfg.name!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[cfg.name](cfg)


def _import_builtin_models() -> None:
    # Imported for their @register side effect; kept lazy so `import vidgan` stays light.
    from vidgan.models import mocogan, tgan, videogan  # noqa: F401
