"""Robust statistics for short, noisy, autocorrelated per-epoch series (numpy/pandas only)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["rolling_median", "noise", "inflation", "level_sd", "mann_kendall_z", "median_of_last", "finite", "theil_sen_slope"]

MAD_TO_SIGMA = 1.4826
#: The median of 5 Gaussian values varies about 1.15x as much as their mean (simulated).
MEDIAN_OF_FEW = 1.15
_MAX_RHO = 0.8


def rolling_median(x: np.ndarray, window: int, min_periods: int = 1) -> np.ndarray:
    """Causal (trailing) rolling median; NaN values are skipped, a window with fewer than
    `min_periods` numbers gives NaN. A NaN-free series takes a numpy fast path."""
    x = np.asarray(x, dtype=float)
    if window <= 1:
        return x.copy()
    n = x.size
    if n >= 4 * window and not np.isnan(x).any():
        out = np.empty(n)
        out[window - 1:] = np.median(np.lib.stride_tricks.sliding_window_view(x, window), axis=1)
        for i in range(min(window - 1, n)):
            out[i] = np.median(x[: i + 1]) if i + 1 >= min_periods else np.nan
        return out
    return pd.Series(x, copy=False).rolling(window, min_periods=min_periods).median().to_numpy()


def finite(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x[np.isfinite(x)]  # (numpy's stubs type a masked selection as Any)
    return out


def median_of_last(x: np.ndarray, k: int) -> float:
    """Median of the last k finite values of x (NaN if none)."""
    f = finite(x)
    if f.size == 0:
        return float("nan")
    return float(np.median(f[-k:]))


def noise(x: np.ndarray, phi: float = 0.0) -> float:
    """Robust noise level sigma of a finite series whose noise has lag-1 autocorrelation phi.

    Second differences cancel a linear trend and most of a curve's bend; for AR(1) noise
    Var(d2) = sigma^2 (6 - 8 phi + 2 phi^2), and 1.4826 * MAD(d2) estimates sd(d2) while
    ignoring isolated outliers. phi is not estimated from the series: from 20-60 points its
    estimate has a standard error of 0.13-0.2, larger than the effect (docs/diagnosis.md).
    With fewer than 4 values, first differences are used (sigma = 1.4826 MAD(d1) / sqrt 2).
    """
    n = x.size
    if n < 2:
        return float("nan")
    # np.float64(np.sqrt(...)): typed as a float (np.sqrt of a float is Any to mypy) with
    # numpy's semantics kept for callers (a later x / 0.0 gives inf, not ZeroDivisionError)
    if n < 4:
        d = np.diff(x)
        mad = float(np.median(np.abs(d - np.median(d))))
        return MAD_TO_SIGMA * mad / np.float64(np.sqrt(2.0 * (1.0 - phi)))
    d2 = np.diff(x, 2)
    sd2 = MAD_TO_SIGMA * float(np.median(np.abs(d2 - np.median(d2))))
    return sd2 / np.float64(np.sqrt(6.0 - 8.0 * phi + 2.0 * phi * phi))


def inflation(phi: float) -> float:
    """AR(1) variance inflation (1 + phi) / (1 - phi) of long sums (used for trend tests)."""
    return (1.0 + phi) / (1.0 - phi)


def level_sd(sigma: float, phi: float, k: int) -> float:
    """Standard deviation of the median of k consecutive values of AR(1) noise.

    The variance of the mean of k AR(1) values is sigma^2/k * (1 + 2 sum_j (1 - j/k) phi^j);
    the median of a few values is about 1.15 times as variable as their mean.
    """
    if k <= 1:
        return sigma
    j = np.arange(1, k)
    f = 1.0 + 2.0 * float(np.sum((1.0 - j / k) * phi ** j))
    return MEDIAN_OF_FEW * sigma * np.float64(np.sqrt(f / k))


def mann_kendall_z(x: np.ndarray, inflation: float = 1.0) -> float:
    """Mann-Kendall trend statistic z of a finite series (positive = rising).

    The variance is the no-ties formula n(n-1)(2n+5)/18 times `inflation` (AR(1)
    correction), with the usual continuity correction. O(n^2); callers pass windows.
    """
    n = x.size
    if n < 3:
        return 0.0
    s = float(np.sign(x[None, :] - x[:, None])[np.triu_indices(n, 1)].sum())
    var = n * (n - 1) * (2 * n + 5) / 18.0 * max(inflation, 1.0)
    if s == 0:
        return 0.0
    return float((s - np.sign(s)) / np.sqrt(var))  # var > 0: n >= 3


def theil_sen_slope(x: np.ndarray) -> float:
    """Median of pairwise slopes of a finite series against its index (robust trend per step)."""
    n = x.size
    if n < 2:
        return 0.0
    i, j = np.triu_indices(n, 1)
    return float(np.median((x[j] - x[i]) / (j - i)))
