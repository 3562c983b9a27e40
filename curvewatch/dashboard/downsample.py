"""Long series drawn at screen resolution: a chart a couple of thousand pixels wide cannot show
more points than that, so a trace keeps, per bucket of neighbouring points, the lowest and
the highest (spikes and the best epoch survive), plus where the series leaves the finite
numbers. Pure (numpy, pandas), O(n), display only: diagnosis and flags always read the full
history. `screen_rows` cuts a whole history so (or the rows of an epoch span: a zoom).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

#: Points a trace keeps: about one per horizontal pixel of a wide chart (TensorBoard: 1,000).
SCREEN_POINTS = 2_000


def keep_indices(y: Sequence[float], max_points: int = SCREEN_POINTS,
                 keep: Sequence[int] = ()) -> np.ndarray:
    """Sorted indices of the points to draw: all of them when there are at most max_points;
    else the first and last point, each bucket's minimum and maximum finite value, each
    bucket's first and last non-finite point (a NaN is shown as a gap), and `keep`. At most
    max_points + len(keep) indices; max_points below 6 keeps everything."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points or max_points < 6:
        return np.arange(n)
    finite = np.isfinite(y)
    per_bucket = 2 if finite.all() else 4
    size = -(-n // ((max_points - 2) // per_bucket))  # ceil: buckets of equal size
    rows = -(-n // size)
    pad = rows * size - n
    lo = np.concatenate([np.where(finite, y, np.inf), np.full(pad, np.inf)]).reshape(rows, size)
    hi = np.concatenate([np.where(finite, y, -np.inf), np.full(pad, -np.inf)]).reshape(rows,
                                                                                      size)
    base = np.arange(rows) * size
    picked = [[0, n - 1], base + lo.argmin(axis=1), base + hi.argmax(axis=1),
              np.asarray(keep, dtype=np.int64)]
    if per_bucket == 4:
        bad = np.concatenate([~finite, np.zeros(pad, bool)]).reshape(rows, size)
        any_bad = bad.any(axis=1)
        first = bad.argmax(axis=1)
        last = size - 1 - bad[:, ::-1].argmax(axis=1)
        picked += [(base + first)[any_bad], (base + last)[any_bad]]
    idx = np.unique(np.concatenate(picked))
    return idx[(idx >= 0) & (idx < n)]


def downsample(x: Sequence[float], y: Sequence[float], max_points: int = SCREEN_POINTS,
               keep: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) cut to keep_indices(y, max_points, keep), as float arrays."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    idx = keep_indices(y, max_points, keep)
    return x[idx], y[idx]


def screen_rows(frame: pd.DataFrame, span: tuple[float, float] | None = None, *,
                by: str = "epoch", max_points: int = SCREEN_POINTS) -> pd.DataFrame:
    """The rows of `frame` whose `by` lies in `span` (inclusive; all rows when None), cut to
    what a chart of any of its numeric columns shows: when more than max_points rows remain,
    the union over those columns of keep_indices, so each column keeps its extremes and its
    non-finite points per bucket (at most max_points + 2 rows a column). A span of at most
    max_points rows comes back whole: zooming in shows every epoch. Never mutates `frame`."""
    if span is not None and by in frame.columns:
        key = pd.to_numeric(frame[by], errors="coerce").to_numpy(dtype=float)
        frame = frame.iloc[np.flatnonzero((key >= span[0]) & (key <= span[1]))]
    if len(frame) <= max_points:
        return frame
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    picked = [keep_indices(frame[c].to_numpy(dtype=float, na_value=np.nan), max_points)
              for c in numeric]
    rows = np.unique(np.concatenate(picked)) if picked else np.array([0, len(frame) - 1])
    return frame.iloc[rows]
