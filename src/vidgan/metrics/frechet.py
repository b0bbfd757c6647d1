"""Feature statistics, the Frechet distance, the kernel (MMD) distance, and cached real statistics.

Everything here works on plain feature matrices (N, D): which network made them is the
extractor's business (extractors.py), which clips went in is the protocol's (evaluate.py).

- FeatureStats accumulates the mean and covariance in float64 over batches (Chan et al.'s
  parallel update, so the result equals the one-shot estimate and batches can come from
  several processes). The covariance divides by N (ddof=0), as StyleGAN-V and StyleGAN2-ADA do.
- frechet_distance: |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), with the trace of the
  matrix square root taken from the eigenvalues of F^T S2 F, S1 = F F^T (symmetric PSD, so a
  symmetric eigensolver gives real, stable values; no complex parts to throw away, no eps
  offsets). frechet_distance_rows computes the same number from the feature rows, exactly and
  far faster when there are fewer rows than dimensions (2048 clips of 2560-d features).
- kernel_distance: unbiased MMD^2 with the polynomial kernel (x.y / D + 1)^3 averaged over
  random subsets (KID / KVD, Binkowski et al. 2018, as in StyleGAN2-ADA).
- Real statistics are cached as .npz (no pickle) under a key made of the dataset's
  fingerprint, the protocol and the extractor's identity; change any of them, get a new key.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

CACHE_VERSION = 1  # bump when the way clips or features are made changes


class FeatureStats:
    """Streaming mean / covariance of feature rows (float64), optionally keeping the rows (float32)."""

    def __init__(self, keep_features: bool = False):
        self.keep_features = keep_features
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None  # sum of outer products of deviations from the mean
        self._rows: list[np.ndarray] = []

    @property
    def dim(self) -> int | None:
        return None if self.mean is None else len(self.mean)

    def append(self, x) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be (N, D), got shape {x.shape}")
        if len(x) == 0:
            return
        if self.mean is not None and x.shape[1] != len(self.mean):
            raise ValueError(f"features changed width: {x.shape[1]} after {len(self.mean)}")
        if self.keep_features:
            self._rows.append(x.astype(np.float32))
        mean_b = x.mean(axis=0)
        dev = x - mean_b
        self._merge(len(x), mean_b, dev.T @ dev)

    def _merge(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if self.count == 0:
            self.count, self.mean, self.m2 = n_b, mean_b.copy(), m2_b.copy()
            return
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + np.outer(delta, delta) * (self.count * n_b / n)
        self.count = n

    def merge(self, other: FeatureStats) -> None:
        if other.count:
            self._merge(other.count, other.mean, other.m2)
            self._rows.extend(other._rows)

    @property
    def cov(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature rows, got {self.count}")
        return self.m2 / self.count

    @property
    def features(self) -> np.ndarray | None:
        if not self.keep_features:
            return None
        return np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim or 0), np.float32)

    @classmethod
    def from_features(cls, x, keep_features: bool = False) -> FeatureStats:
        stats = cls(keep_features)
        stats.append(x)
        return stats


def _sym(s) -> torch.Tensor:
    s = torch.as_tensor(np.asarray(s, np.float64))
    return (s + s.T) / 2


def _tr_sqrt(m: torch.Tensor) -> float:
    """Trace of the square root of a symmetric PSD matrix: sum of sqrt(eigenvalues), negatives from rounding as 0."""
    return torch.linalg.eigvalsh(_sym(m)).clamp(min=0).sqrt().sum().item()


def _tr_sqrt_product(sigma1, sigma2) -> float:
    """tr((S1 S2)^1/2) = tr((F^T S2 F)^1/2) for any factor S1 = F F^T (AB and BA share eigenvalues).

    F is the Cholesky factor (fast); a singular S1 (fewer samples than dimensions) uses its PSD
    square root from an eigendecomposition instead."""
    s1, s2 = _sym(sigma1), _sym(sigma2)
    factor, info = torch.linalg.cholesky_ex(s1)
    if info.item() != 0:
        w, v = torch.linalg.eigh(s1)
        factor = (v * w.clamp(min=0).sqrt()) @ v.T
    return _tr_sqrt(factor.T @ s2 @ factor)


def _frechet(mean_term: float, tr1: float, tr2: float, tr_covmean: float) -> float:
    return float(max(mean_term + tr1 + tr2 - 2 * tr_covmean, 0.0))  # rounding can leave -1e-12 for identical inputs


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2); >= 0."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in width: {mu1.shape} vs {mu2.shape}")
    tr_covmean = _tr_sqrt_product(sigma1, sigma2)
    diff = mu1 - mu2
    return _frechet(diff @ diff, np.trace(sigma1), np.trace(sigma2), tr_covmean)


def frechet_distance_rows(x, y) -> float:
    """The same distance from the feature rows themselves (covariances with ddof=0), exact and much
    cheaper when there are fewer rows than dimensions: with A, B the centred rows,
    tr((S1 S2)^1/2) = sum of singular values of A B^T / sqrt(n1 n2)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"features differ in width: {x.shape[1]} vs {y.shape[1]}")
    a, b = x - x.mean(0), y - y.mean(0)
    c = (a @ b.T) / np.sqrt(len(x) * len(y))
    gram = c @ c.T if len(x) <= len(y) else c.T @ c
    tr_covmean = _tr_sqrt(torch.from_numpy(gram))
    diff = x.mean(0) - y.mean(0)
    return _frechet(diff @ diff, (a * a).sum() / len(x), (b * b).sum() / len(y), tr_covmean)


def frechet_distance_sqrtm(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """The pytorch-fid / StyleGAN-V formula (scipy.linalg.sqrtm, eps offset when it fails): for comparison."""
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    covmean = scipy.linalg.sqrtm(np.dot(sigma1, sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def stats_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Frechet distance of two accumulated sets; from the rows when both were kept and are fewer than the dimensions."""
    if a.keep_features and b.keep_features and min(a.count, b.count) < a.dim:
        return frechet_distance_rows(a.features, b.features)
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def kernel_distance(x, y, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Unbiased polynomial-kernel MMD^2 between feature sets x and y: (mean, std) over random subsets."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    m = min(len(x), len(y), max_subset_size)
    if m < 2:
        raise ValueError(f"the kernel distance needs at least 2 rows on each side, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kaa = (a @ a.T / d + 1) ** 3
        kbb = (b @ b.T / d + 1) ** 3
        kab = (a @ b.T / d + 1) ** 3
        within = (kaa.sum() - np.trace(kaa) + kbb.sum() - np.trace(kbb)) / (m * (m - 1))
        values.append(within - 2 * kab.mean())
    return float(np.mean(values)), float(np.std(values))


# ----------------------------------------------------------------------------- cached statistics


def default_cache_dir() -> Path:
    return Path(os.environ.get("VIDGAN_CACHE_DIR") or Path.home() / ".cache" / "vidgan" / "metrics")


def cache_key(fingerprint: str, protocol: dict, extractor_id: str) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "data": fingerprint, "protocol": protocol, "extractor": extractor_id}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass
class CachedFeatures:
    """What the cache holds for one (dataset, protocol, extractor): statistics, maybe the rows, and
    `refs` (N, 2): which source item and frame offset each row came from (for nearest-neighbour views)."""

    stats: FeatureStats
    refs: np.ndarray
    meta: dict = field(default_factory=dict)


def save_cached(path: Path, entry: CachedFeatures) -> None:
    """Rows when they were kept (the statistics follow from them), else mean and scatter matrix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    s = entry.stats
    arrays = {"refs": np.asarray(entry.refs, np.int64), "meta": np.array(json.dumps(entry.meta))}
    if s.keep_features:
        arrays["features"] = s.features
    else:
        arrays |= {"count": np.int64(s.count), "mean": s.mean, "m2": s.m2}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)  # a crash never leaves a half-written cache file under the real name


def load_cached(path: Path, need_features: bool) -> CachedFeatures | None:
    """The cached entry, or None when there is none (or it lacks the rows we need, or is unreadable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "features" in z:
                stats = FeatureStats.from_features(z["features"], keep_features=True)
            elif need_features:
                return None
            else:
                stats = FeatureStats()
                stats.count, stats.mean, stats.m2 = int(z["count"]), z["mean"], z["m2"]
            return CachedFeatures(stats, z["refs"], json.loads(str(z["meta"])))
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache file is recomputed, not trusted
