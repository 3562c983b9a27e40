"""Robust statistics for short, noisy, autocorrelated per-epoch series (numpy/pandas only)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

__all__ = ["median", "rolling_median", "noise", "inflation", "level_sd", "mann_kendall_z", "median_of_last", "last_finite", "finite", "theil_sen_slope"]

MAD_TO_SIGMA = 1.4826
#: The median of 5 Gaussian values varies about 1.15x as much as their mean (simulated).
MEDIAN_OF_FEW = 1.15
_MAX_RHO = 0.8


#: Above this many values `median` partitions (O(n)) instead of sorting the copy.
_SORT_MAX = 256


def median(x: np.ndarray) -> float:
    """np.median of a 1-D float array, the same float (NaN if any value is NaN or x is empty),
    without np.median's per-call cost: diagnose takes medians of a few dozen values hundreds of
    times a call, where np.median's 25-30 µs of overhead was a third of the replay's time."""
    n = x.size
    if n == 0:
        return float("nan")
    m = n // 2
    s = np.sort(x) if n <= _SORT_MAX else np.partition(x, (m - 1, m, n - 1))
    if np.isnan(s[-1]):  # NaN sorts (and partitions) last
        return float("nan")
    return float(s[m]) if n % 2 else float((s[m - 1] + s[m]) / 2.0)


def rolling_median(x: np.ndarray, window: int, min_periods: int = 1) -> np.ndarray:
    """Causal (trailing) rolling median; NaN values are skipped, a window with fewer than
    `min_periods` numbers gives NaN. A NaN-free series takes a numpy fast path."""
    x = np.asarray(x, dtype=float)
    if window <= 1:
        return x.copy()
    n = x.size
    if not np.isnan(x).any():
        out = np.empty(n)
        if n >= window:
            out[window - 1:] = _sliding_median(x, window)
        for i in range(min(window - 1, n)):
            out[i] = median(x[: i + 1]) if i + 1 >= min_periods else np.nan
        return out
    return pd.Series(x, copy=False).rolling(window, min_periods=min_periods).median().to_numpy()


#: Windows up to this size take the sorting network; larger ones np.median of the windows.
_NETWORK_MAX = 32


def _sliding_median(x: np.ndarray, window: int) -> np.ndarray:
    """Median of each full trailing window of a NaN-free x (n - window + 1 values), as
    np.median gives it. Small windows run a sorting network over the window's columns: a
    few dozen elementwise min/max over n values, where np.median copies and partitions an
    n x window array (0.8 s for a million epochs and a window of 10)."""
    if window > _NETWORK_MAX:
        med: np.ndarray = np.median(np.lib.stride_tricks.sliding_window_view(x, window), axis=1)
        return med
    m = x.size - window + 1
    out = np.empty(m)
    pairs = _merge_exchange(window)
    # a block of windows at a time, in place with one spare column: the temporaries stay
    # in cache and a few MB (fresh arrays per comparator cost page faults, 4x the time)
    for start in range(0, m, _NETWORK_BLOCK):
        stop = min(start + _NETWORK_BLOCK, m)
        cols = [x[start + i:stop + i].copy() for i in range(window)]
        spare = np.empty(stop - start)
        for i, j in pairs:
            np.minimum(cols[i], cols[j], out=spare)
            np.maximum(cols[i], cols[j], out=cols[j])
            cols[i], spare = spare, cols[i]
        if window % 2:
            out[start:stop] = cols[window // 2]
        else:
            out[start:stop] = (cols[window // 2 - 1] + cols[window // 2]) / 2.0
    return out


#: Windows whose medians the sorting network computes at a time (8 bytes a column each).
_NETWORK_BLOCK = 1 << 15


def _merge_exchange(n: int) -> list[tuple[int, int]]:
    """Comparators (i, j), i < j, of Batcher's merge-exchange sort of n items (Knuth, TAOCP
    vol. 3, 5.2.2 algorithm M): applied in order, they sort any n values."""
    pairs: list[tuple[int, int]] = []
    t = max(1, (n - 1).bit_length())
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while d > 0:
            pairs += [(i, i + d) for i in range(n - d) if i & p == r]
            d, q, r = q - p, q >> 1, p
        p >>= 1
    return pairs


def finite(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x[np.isfinite(x)]  # (numpy's stubs type a masked selection as Any)
    return out


def last_finite(x: np.ndarray, k: int) -> np.ndarray:
    """The last k finite values of x (fewer if x has fewer; all of them for k <= 0). Looks at
    a tail of x that grows until it holds k of them: O(k) for a long, mostly finite series,
    not O(n) (finite(x)[-k:] copies every finite value: 8 MB for a million epochs)."""
    n = x.size
    m = n if k <= 0 else min(n, max(2 * k, 64))
    while True:
        f = finite(x[n - m:])
        if f.size >= k or m == n:
            break
        m = min(n, 4 * m)
    return f if k <= 0 else f[-k:]


def median_of_last(x: np.ndarray, k: int) -> float:
    """Median of the last k finite values of x (NaN if none; all of them for k <= 0)."""
    f = last_finite(x, k)
    if f.size == 0:
        return float("nan")
    return median(f)


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
        mad = median(np.abs(d - median(d)))
        return MAD_TO_SIGMA * mad / np.float64(np.sqrt(2.0 * (1.0 - phi)))
    d2 = np.diff(x, 2)
    sd2 = MAD_TO_SIGMA * median(np.abs(d2 - median(d2)))
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
    correction), with the usual continuity correction. O(n log n) (see _kendall_s).
    """
    n = x.size
    if n < 3:
        return 0.0
    s = _kendall_s(x)
    var = n * (n - 1) * (2 * n + 5) / 18.0 * max(inflation, 1.0)
    if s == 0:
        return 0.0
    return float((s - np.sign(s)) / np.sqrt(var))  # var > 0: n >= 3


#: Below this length the pairwise sign matrix is cheaper than the sorting passes.
_PAIRWISE_MAX = 64


def _kendall_s(x: np.ndarray) -> float:
    """S = sum over i < j of sign(x[j] - x[i]) (ties count 0; NaN if a pair's difference is).

    Each pair i < j is counted once, at the highest bit in which i and j differ (i has 0
    there, j 1, the higher bits equal): per bit, the right-hand elements of each block
    are looked up among the left-hand ones by (block, rank) with searchsorted. log2(n)
    passes of O(n log n): 1 ms for 4,000 values where the n x n matrix took 1-2 s."""
    n = x.size
    if n <= _PAIRWISE_MAX:
        return float(np.sign(x[None, :] - x[:, None])[_upper_triangle(n)].sum())
    if np.isnan(x).any() or np.isposinf(x).sum() > 1 or np.isneginf(x).sum() > 1:
        return float("nan")  # as the pairwise sum: sign(NaN) and sign(inf - inf) are NaN
    rank = np.unique(x, return_inverse=True)[1].astype(np.int64).ravel()
    idx = np.arange(n, dtype=np.int64)
    s = 0
    for b in range((n - 1).bit_length()):
        right = ((idx >> b) & 1).astype(bool)
        block = (idx >> (b + 1)) * n
        left_keys = np.sort(block[~right] + rank[~right])
        lo, key = block[right], block[right] + rank[right]
        below = np.searchsorted(left_keys, key, "left") - np.searchsorted(left_keys, lo, "left")
        above = (np.searchsorted(left_keys, lo + n, "left")
                 - np.searchsorted(left_keys, key, "right"))
        s += int(below.sum()) - int(above.sum())
    return float(s)


@functools.cache
def _upper_triangle(n: int) -> tuple[np.ndarray, np.ndarray]:
    """np.triu_indices(n, 1), made once per n <= _PAIRWISE_MAX (diagnose asks thousands of times)."""
    i, j = np.triu_indices(n, 1)
    i.flags.writeable = j.flags.writeable = False  # shared by every caller
    return i, j


def theil_sen_slope(x: np.ndarray) -> float:
    """Median of pairwise slopes of a finite series against its index (robust trend per step).
    ValueError above MAX_SLOPE_VALUES values: its n^2/2 slopes would take minutes to hours."""
    n = x.size
    if n < 2:
        return 0.0
    if n > MAX_SLOPE_VALUES:
        raise ValueError(f"theil_sen_slope of {n:,} values ({n * (n - 1) // 2:,} pairwise "
                         f"slopes): at most {MAX_SLOPE_VALUES:,} values are accepted; pass a "
                         f"window")
    if n <= _PAIRWISE_SLOPES_MAX or not np.isfinite(x).all():
        i, j = np.triu_indices(n, 1)
        return median((x[j] - x[i]) / (j - i))
    return _median_slope_streamed(x)


#: The longest series theil_sen_slope takes: 1.25e9 slopes, about 5 s on a busy 2-core VM
#: (the pairwise arrays it replaced failed from about 15,000 values, out of memory).
MAX_SLOPE_VALUES = 50_000
#: Up to this length every pairwise slope is held at once (about 0.5 M of them, 4 MB).
_PAIRWISE_SLOPES_MAX = 1_000
#: Slopes computed at a time when they are streamed (8 bytes each: 4 MB).
_SLOPE_CHUNK = 1 << 19
#: Random pairs whose slopes bracket the median before the full pass.
_SLOPE_SAMPLE = 20_000


def _median_slope_streamed(x: np.ndarray, bracket: tuple[float, float] | None = None) -> float:
    """theil_sen_slope of a long finite series, the same floats as np.median of all slopes
    (each slope computed as (x[j] - x[i]) / (j - i)), in memory that does not grow as n^2:
    a bracket of the middle ranks (by default from a sample of pairs), one streamed pass over
    all slopes that counts those below it and keeps those inside; a bracket that missed is
    widened."""
    n = x.size
    total = n * (n - 1) // 2
    ranks = ((total - 1) // 2, total // 2)  # the middle one (odd total) or two
    b_lo, b_hi = bracket if bracket is not None else _sample_bracket(x)
    for lo, hi in ((b_lo, b_hi), (b_lo, np.inf), (-np.inf, b_hi), (-np.inf, np.inf)):
        below, inside = _slopes_between(x, lo, hi)
        if below <= ranks[0] and below + inside.size > ranks[1]:
            inside.sort()
            a, b = inside[ranks[0] - below], inside[ranks[1] - below]
            return float(a if a == b else (a + b) / 2.0)
    raise AssertionError("the full bracket holds every slope")  # unreachable


def _sample_bracket(x: np.ndarray) -> tuple[float, float]:
    """Slopes of random pairs (a fixed seed) 3 binomial sd either side of their median: the
    whole slopes' median lies between them but for a chance of about 0.3%."""
    n = x.size
    i, j = np.random.default_rng(0).integers(0, n, (2, _SLOPE_SAMPLE))
    i, j = np.minimum(i, j)[i != j], np.maximum(i, j)[i != j]
    sample = np.sort((x[j] - x[i]) / (j - i))
    half = int(3 * np.sqrt(sample.size) / 2)
    mid = sample.size // 2
    return float(sample[max(0, mid - half)]), float(sample[min(sample.size - 1, mid + half)])


def _slopes_between(x: np.ndarray, lo: float, hi: float) -> tuple[int, np.ndarray]:
    """(how many slopes are below lo, the slopes in [lo, hi]), over all pairs i < j of x,
    a block of offsets d = j - i at a time (pairs past the end are NaN and drop out)."""
    n = x.size
    padded = np.concatenate([x, np.full(n, np.nan)])
    step = max(1, _SLOPE_CHUNK // n)
    below, kept = 0, []
    for d0 in range(1, n, step):
        d = np.arange(d0, min(d0 + step, n))
        rows = n - d0  # the rows i with a partner i + d inside x for some d of the block
        ahead = np.lib.stride_tricks.sliding_window_view(padded, d[-1] + 1)[:rows, d0:]
        slopes = (ahead - x[:rows, None]) / d
        below += int(np.count_nonzero(slopes < lo))
        kept.append(slopes[(slopes >= lo) & (slopes <= hi)])
    return below, np.concatenate(kept)
