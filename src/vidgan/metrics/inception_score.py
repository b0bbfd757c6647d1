"""Inception Score (Salimans et al. 2016) from class probabilities, as StyleGAN2-ADA computes it.

IS = exp(E_x KL(p(y|x) || p(y))), averaged over `splits` equal parts of the samples (mean, std).
High when each sample is confidently one class and the samples spread over many classes;
a set that is uniformly spread over k classes, each sample certain, scores exactly k.
"""

from __future__ import annotations

import numpy as np


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < splits:
        raise ValueError(f"need (N, classes) probabilities with N >= splits ({splits}), got shape {probs.shape}")
    scores = []
    for i in range(splits):
        part = probs[i * len(probs) // splits : (i + 1) * len(probs) // splits]
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 * log 0 counts as 0
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
