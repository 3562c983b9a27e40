"""Pure series helpers for display: TensorBoard's debiased EMA and extreme-preserving
downsampling. Display only: flags and diagnosis always use the raw values."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Default smoothing weight (TensorBoard's scalarSmoothing) and the largest one offered.
DEFAULT_SMOOTHING = 0.6
MAX_SMOOTHING = 0.999


def smooth_ema(values: Sequence[float], weight: float = DEFAULT_SMOOTHING) -> np.ndarray:
    """TensorBoard's `classicSmoothing`: a debiased exponential moving average.

    A weight that is not finite counts as 0 and is clamped to [0, 1]. A constant series is
    returned untouched. NaN and +/-inf points are passed through unchanged and neither update
    the average nor its debiasing count. w = 0 gives the input back, w = 1 all zeros.
    """
    y = np.asarray(values, dtype=float)
    out = y.copy()
    if y.size == 0:
        return out
    w = float(weight) if weight is not None and math.isfinite(float(weight)) else 0.0
    w = min(max(w, 0.0), 1.0)
    if np.all(y == y[0]):
        return out
    last, n = 0.0, 0
    for i, v in enumerate(y):
        if not math.isfinite(v):
            continue
        last = w * last + (1.0 - w) * v
        n += 1
        debias = 1.0 if w == 1.0 else 1.0 - w ** n
        out[i] = last / debias
    return out


def downsample_minmax(x: Sequence[float], y: Sequence[float], max_points: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ~max_points points while keeping every bucket's minimum and maximum
    (and the first and last point), so spikes survive. Non-finite points are always kept: a
    diverging run must still show where it went to NaN. Vectorised (two sorts, no loop)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points or max_points < 4:
        return x, y
    buckets = max(1, (max_points - 2) // 2)
    bucket = (np.arange(n) * buckets) // n
    finite = np.isfinite(y)
    lo = np.where(finite, y, np.inf)
    hi = np.where(finite, -y, np.inf)
    first = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    order_lo = np.lexsort((lo, bucket))  # within each bucket, smallest first
    order_hi = np.lexsort((hi, bucket))  # within each bucket, largest first
    keep = np.concatenate([[0, n - 1], order_lo[first], order_hi[first],
                           np.flatnonzero(~finite)])
    idx = np.unique(keep)
    return x[idx], y[idx]
