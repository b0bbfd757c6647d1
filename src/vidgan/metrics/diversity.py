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


@dataclass
class FeatureDiversity:
    """Diversity of generated clips in a feature space, relative to real clips in the same space."""

    ratio: float  # mean pairwise distance of generated / of real clips (1 = as varied as the data)
    mean_distance: float
    real_distance: float
    near_duplicates: float  # share of generated pairs closer than duplicate_fraction x real_distance
    alarm: str | None  # a one-line warning when the set looks collapsed, else None

    def as_dict(self) -> dict:
        return {
            "ratio": self.ratio,
            "mean_distance": self.mean_distance,
            "real_distance": self.real_distance,
            "near_duplicates": self.near_duplicates,
            "alarm": self.alarm,
        }


def feature_diversity(
    fake, real, duplicate_fraction: float = 0.1, ratio_alarm: float = 0.1, duplicates_alarm: float = 0.5
) -> FeatureDiversity:
    """fake, real: feature rows (N, D). Same thresholds as `collapse_warning`, in feature space."""
    fake, real = torch.as_tensor(fake, dtype=torch.float64), torch.as_tensor(real, dtype=torch.float64)
    if len(fake) < 2 or len(real) < 2:
        raise ValueError("feature diversity needs at least 2 generated and 2 real clips")
    gen, ref = pairwise_distances(fake), pairwise_distances(real)
    real_mean = ref.mean().item()
    mean = gen.mean().item()
    ratio = mean / real_mean if real_mean > 0 else float("nan")
    dup = (gen < duplicate_fraction * real_mean).double().mean().item()
    alarm = None
    if ratio < ratio_alarm or dup > duplicates_alarm:
        alarm = f"possible mode collapse: generated clips are {ratio:.2f}x as varied as real ones, {dup:.0%} near-duplicate pairs"
    return FeatureDiversity(ratio, mean, real_mean, dup, alarm)
