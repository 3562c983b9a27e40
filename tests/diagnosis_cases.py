"""Curve builders for the diagnosis tests: short formula curves with seeded noise."""

from __future__ import annotations

import numpy as np
import pandas as pd


def epochs(n: int) -> np.ndarray:
    return np.arange(1, n + 1)


def decay(n: int, start: float = 2.3, floor: float = 0.1, tau: float = 8.0) -> np.ndarray:
    """A loss falling exponentially from `start` towards `floor`."""
    e = epochs(n)
    return floor + (start - floor) * np.exp(-(e - 1) / tau)


def noisy(x: np.ndarray, rel: float, seed: int, phi: float = 0.3) -> np.ndarray:
    """x times (1 + AR(1) noise of relative size rel): the noise of a per-epoch mean."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=x.size)
    z = np.empty_like(e)
    z[0] = e[0]
    for i in range(1, x.size):
        z[i] = phi * z[i - 1] + np.sqrt(1 - phi * phi) * e[i]
    return x * (1.0 + rel * z)


def u_shape(n: int, turn: int, slope: float, start: float = 2.3, floor: float = 0.3, tau: float = 6.0) -> np.ndarray:
    """A validation loss that falls, reaches its minimum near `turn`, then rises by `slope`/epoch."""
    e = epochs(n)
    base = floor + (start - floor) * np.exp(-(e - 1) / tau)
    return base + np.where(e > turn, slope * (e - turn), 0.0)


def frame(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"epoch": epochs(n), **{k: np.asarray(v, dtype=float) for k, v in cols.items()}})


def kinds(findings) -> list[str]:
    return [f.kind for f in findings]
