"""Diversity of a set of generated clips: the mode-collapse signal.

Clips are compared in a small, cheap space (each frame average-pooled to 8x8) so the score can
run every few training steps. A generator that has collapsed produces near-identical clips:
their mean pairwise distance falls far below that of real clips, and many pairs become
near-duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Diversity:
    mean_distance: float  # mean pairwise L2 distance between clips (pooled space)
    near_duplicates: float  # share of pairs closer than `duplicate_fraction` x the reference distance

    def as_dict(self) -> dict:
        return {"diversity": self.mean_distance, "near_duplicates": self.near_duplicates}


def pooled_features(videos: torch.Tensor, size: int = 8) -> torch.Tensor:
    """(B, C, T, H, W) float in [-1, 1] -> (B, C*T*size*size)."""
    b, c, t, h, w = videos.shape
    frames = videos.float().transpose(1, 2).reshape(b * t, c, h, w)
    pooled = F.adaptive_avg_pool2d(frames, min(size, h))
    return pooled.reshape(b, -1)


def pairwise_distances(features: torch.Tensor) -> torch.Tensor:
    """Distances of all distinct pairs (upper triangle), as a flat tensor."""
    d = torch.cdist(features, features)
    i, j = torch.triu_indices(len(features), len(features), offset=1)
    return d[i, j]


def diversity(videos: torch.Tensor, reference_distance: float | None = None, duplicate_fraction: float = 0.1) -> Diversity:
    """reference_distance: mean pairwise distance of real clips (default: of these clips)."""
    if len(videos) < 2:
        raise ValueError("diversity needs at least 2 clips")
    dists = pairwise_distances(pooled_features(videos))
    mean = dists.mean().item()
    ref = mean if reference_distance is None else reference_distance
    return Diversity(mean, (dists < duplicate_fraction * ref).float().mean().item())


def collapse_warning(gen: Diversity, real_distance: float, ratio: float = 0.1, max_duplicates: float = 0.5) -> str | None:
    """A one-line warning when generated clips are far less diverse than real ones, else None.

    The thresholds are loose on purpose: early, blurry samples are naturally less diverse than
    real clips (often 10-25% of the real distance on Moving MNIST) without having collapsed;
    half the pairs being near-duplicates, or a tenth of the real spread, is collapse."""
    if gen.mean_distance < ratio * real_distance or gen.near_duplicates > max_duplicates:
        return (
            f"possible mode collapse: sample diversity {gen.mean_distance:.3g} vs real {real_distance:.3g}, "
            f"{gen.near_duplicates:.0%} near-duplicate pairs; try spectral_norm, a lower lr_d or augmentation"
        )
    return None
