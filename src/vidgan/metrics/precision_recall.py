"""Precision, recall, density and coverage of generated samples in a feature space (k-NN manifolds).

Each real sample gets a ball reaching its k-th nearest real neighbour; together the balls
estimate the real manifold (and likewise for generated samples). Following Kynkaanniemi et al.
2019 (precision, recall) and Naeem et al. 2020 (density, coverage):

    precision  share of generated samples inside some real ball        (are samples realistic?)
    recall     share of real samples inside some generated ball        (is the data's variety covered?)
    density    mean number of real balls containing a generated sample, / k   (about 1 when matched)
    coverage   share of real balls whose nearest generated sample lies inside  (robust recall)

A generator that repeats one real clip gets precision 1 and recall near 0: its generated balls
have radius 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float

    def as_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, "density": self.density, "coverage": self.coverage}


def _distances(a, b) -> torch.Tensor:
    a = torch.as_tensor(np.asarray(a), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(b), dtype=torch.float64)
    return torch.cdist(a, b)


def kth_neighbour_radii(x, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    d = _distances(x, x)
    if len(d) <= k:
        raise ValueError(f"need more than k={k} samples for k-NN radii, got {len(d)}")
    return d.kthvalue(k + 1, dim=1).values  # the first smallest is the row itself (distance 0)


def prdc(real, fake, k: int = 5) -> PRDC:
    real_radii = kth_neighbour_radii(real, k)
    fake_radii = kth_neighbour_radii(fake, k)
    d = _distances(real, fake)  # (n_real, n_fake)
    inside_real = d <= real_radii[:, None]  # [j, i]: fake i inside real ball j
    precision = inside_real.any(dim=0).double().mean().item()
    recall = (d <= fake_radii[None, :]).any(dim=1).double().mean().item()
    density = inside_real.sum(dim=0).double().mean().item() / k
    coverage = (d.min(dim=1).values <= real_radii).double().mean().item()
    return PRDC(precision, recall, density, coverage)


def nearest_neighbours(queries, pool) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, (index, distance) of its nearest row in `pool`."""
    d = _distances(queries, pool)
    dist, idx = d.min(dim=1)
    return idx.numpy(), dist.numpy()
