"""Pure series helpers for display: TensorBoard's debiased EMA (downsampling lives in
dashboard.downsample). Display only: flags and diagnosis always use the raw values."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .downsample import downsample as downsample_minmax  # noqa: F401  (its old home)

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
    finite = np.isfinite(y)
    f = y[finite]
    if w == 0.0 or w == 1.0:  # the input back; all zeros (the average never moves from 0)
        out[finite] = f if w == 0.0 else 0.0
        return out
    n = np.arange(1, f.size + 1, dtype=float)
    out[finite] = _ema(f, w) / (1.0 - w ** n)
    return out


#: Weights below this are averaged by the plain loop (the blocks below would be too short).
_BLOCK_MIN_WEIGHT = 1e-12


def _ema(f: np.ndarray, w: float) -> np.ndarray:
    """last_k = w last_(k-1) + (1 - w) f_k from last_0 = 0, equal to that loop to float
    rounding, vectorised: within a block, last_(s+k) = w^k (carry + (1 - w) sum_(j<=k)
    f_(s+j) w^-j), blocks short enough that w^-k stays a finite float (a Python loop over
    10,000 points cost ~10 ms a trace: 0.5 s for the Compare page's 20 runs)."""
    if w < _BLOCK_MIN_WEIGHT:
        out, last = np.empty_like(f), 0.0
        for i, v in enumerate(f):
            last = w * last + (1.0 - w) * v
            out[i] = last
        return out
    block = max(1, min(f.size, int(600.0 / -math.log(w))))
    grow = w ** -np.arange(1, block + 1, dtype=float)
    out = np.empty_like(f)
    carry = 0.0
    for s in range(0, f.size, block):
        g = grow[:min(block, f.size - s)]
        out[s:s + g.size] = (carry + (1.0 - w) * np.cumsum(f[s:s + g.size] * g)) / g
        carry = float(out[s + g.size - 1])
    return out
