"""A cheap, documented sample-quality distance for use until feature-based metrics are computed.

pixel_statistics_distance(fake, real) = L1 distance between the two sets' 8-bin intensity
histograms (0..2) + |mean absolute frame-to-frame change of fake - of real| / 255.
It sees brightness/sparsity and the amount of motion, nothing about shapes; it is a
sanity signal (did training move toward the data at all?), never a substitute for FVD.
"""

from __future__ import annotations

import numpy as np


def pixel_statistics_distance(fake: np.ndarray, real: np.ndarray) -> float:
    """fake, real: uint8 clips (N, T, H, W, C)."""
    bins = np.linspace(0, 256, 9)
    h_f = np.histogram(fake, bins)[0] / fake.size
    h_r = np.histogram(real, bins)[0] / real.size

    def motion(v: np.ndarray) -> float:
        return float(np.abs(np.diff(v.astype(np.float32), axis=1)).mean() / 255)

    return float(np.abs(h_f - h_r).sum() + abs(motion(fake) - motion(real)))
