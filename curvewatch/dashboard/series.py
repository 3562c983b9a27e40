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
    last, n = 0.0, 0
    for i, v in enumerate(y):
        if not math.isfinite(v):
            continue
        last = w * last + (1.0 - w) * v
        n += 1
        debias = 1.0 if w == 1.0 else 1.0 - w ** n
        out[i] = last / debias
    return out
