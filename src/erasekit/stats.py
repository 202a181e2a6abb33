"""Shared statistics: bootstrap intervals over prompts (seeds of one prompt stay together)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

N_BOOT = 1000
BOOT_SEED = 0


def bootstrap_mean(
    values: Sequence[float], groups: Sequence[int] | None = None, n_boot: int = N_BOOT, seed: int = BOOT_SEED
) -> tuple[float, float, float]:
    """Mean of ``values`` and its 95% percentile bootstrap interval.

    With ``groups`` (one id per value, e.g. the prompt index) whole groups are resampled, so the
    interval accounts for seeds of one prompt being correlated (a cluster bootstrap).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("bootstrap_mean needs at least one value")
    g = np.arange(v.size) if groups is None else np.asarray(groups)
    ids, inverse = np.unique(g, return_inverse=True)
    sums = np.bincount(inverse, weights=v, minlength=ids.size)
    counts = np.bincount(inverse, minlength=ids.size).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, ids.size, size=(n_boot, ids.size))
    boots = sums[picks].sum(1) / counts[picks].sum(1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(v.mean()), float(low), float(high)


def bootstrap_stat(
    n: int, stat: Callable[[np.ndarray], float], n_boot: int = 200, seed: int = BOOT_SEED
) -> tuple[float, float]:
    """95% percentile interval of ``stat(indices)`` over ``n_boot`` resamples of ``range(n)``."""
    rng = np.random.default_rng(seed)
    boots = [stat(rng.integers(0, n, size=n)) for _ in range(n_boot)]
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(low), float(high)
