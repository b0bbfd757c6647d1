"""DiffAugment for video (Zhao et al. 2020): differentiable augmentations applied to real AND fake clips before D.

Clips are (B, C, T, H, W) in [-1, 1]. Every random parameter is drawn once per clip and the same transform is
applied to every frame of that clip, so augmentation never adds motion that D could learn to look for. All ops
are differentiable w.r.t. the clips (the generator is trained through them).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125  # largest shift, as a fraction of H and of W
CUTOUT_RATIO = 0.5  # side of the cut-out rectangle, as a fraction of H and of W


def _per_clip(x: torch.Tensor) -> tuple[int, ...]:
    return (x.shape[0],) + (1,) * (x.ndim - 1)


def _rand(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) of shape (B, 1, 1, 1, 1), on x's device and dtype."""
    device = generator.device if generator is not None else x.device
    return torch.rand(_per_clip(x), generator=generator, device=device).to(x.device, x.dtype)


def _randint(low: int, high: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Integers in [low, high) of shape (B, 1, 1, 1, 1), on x's device."""
    device = generator.device if generator is not None else x.device
    return torch.randint(low, high, _per_clip(x), generator=generator, device=device).to(x.device)


def color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness (+U[-0.5, 0.5]), saturation (x U[0, 2] around the channel mean; RGB only), contrast (x U[0.5, 1.5])."""
    x = x + (_rand(x, generator) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand(x, generator) * 2.0) + mean
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)  # the whole clip's mean: one contrast for all frames
    return (x - mean) * (_rand(x, generator) + 0.5) + mean


def translation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each clip by whole pixels, up to TRANSLATION_RATIO of H and W, with zero padding."""
    B, C, T, H, W = x.shape
    max_h, max_w = int(H * TRANSLATION_RATIO + 0.5), int(W * TRANSLATION_RATIO + 0.5)
    shift_h = _randint(-max_h, max_h + 1, x, generator)
    shift_w = _randint(-max_w, max_w + 1, x, generator)
    # Output pixel i reads input pixel i - shift; indices off the frame land on the one-pixel zero border.
    padded = F.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(H, device=x.device).view(1, 1, 1, H, 1) - shift_h + 1).clamp(0, H + 1)
    cols = (torch.arange(W, device=x.device).view(1, 1, 1, 1, W) - shift_w + 1).clamp(0, W + 1)
    out = padded.gather(3, rows.expand(B, C, T, H, W + 2))
    return out.gather(4, cols.expand(B, C, T, H, W))


def cutout(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a CUTOUT_RATIO-sized rectangle (a square for square frames) centred anywhere in the frame."""
    B, C, T, H, W = x.shape
    size_h, size_w = int(H * CUTOUT_RATIO + 0.5), int(W * CUTOUT_RATIO + 0.5)
    top = _randint(0, H + (1 - size_h % 2), x, generator) - size_h // 2
    left = _randint(0, W + (1 - size_w % 2), x, generator) - size_w // 2
    rows = torch.arange(H, device=x.device).view(1, 1, 1, H, 1)
    cols = torch.arange(W, device=x.device).view(1, 1, 1, 1, W)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return x * (~inside).to(x.dtype)


AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


# loss.augment "auto": DiffAugment's policy for datasets of fewer than SMALL_DATASET_CLIPS clips, none for larger
# ones (augmentation helps a discriminator that would otherwise learn a small training set by heart; StyleGAN2-ADA
# and DiffAugment both show it costing quality on large ones); the screens behind it, and how small their gain
# was against the spread of single runs: docs/experiments/2026-12-03-natural-video-augment.md.
AUTO_POLICY = "color,translation,cutout"
SMALL_DATASET_CLIPS = 1000


def resolve_policy(policy: str, clips: int | None) -> str:
    """The policy a run uses: `policy` itself, or for "auto" AUTO_POLICY when `clips` < SMALL_DATASET_CLIPS, else ""."""
    if policy.strip() != "auto":
        return policy
    if clips is None:
        raise ValueError('loss.augment "auto" depends on how many training clips there are; give the count, or name a policy')
    return AUTO_POLICY if clips < SMALL_DATASET_CLIPS else ""


def augment(x: torch.Tensor, policy: str = "color,translation,cutout", generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the comma-separated AUGMENTATIONS in `policy`, in order; an empty policy returns x itself."""
    names = [name.strip() for name in policy.split(",") if name.strip()]
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; available: {', '.join(AUGMENTATIONS)}")
    if names and x.ndim != 5:
        raise ValueError(f"augment expects clips of shape (B, C, T, H, W), got {tuple(x.shape)}")
    for name in names:
        x = AUGMENTATIONS[name](x, generator)
    return x
