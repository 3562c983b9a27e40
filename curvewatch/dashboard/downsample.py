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
    y = np.asarray(y)
    n = len(y)
    if n <= max_points or max_points < 6:
        return np.arange(n)
    finite = np.isfinite(y)
    per_bucket = 2 if finite.all() else 4
    size = -(-n // ((max_points - 2) // per_bucket))  # ceil: buckets of equal size
    rows = -(-n // size)
    base = np.arange(rows) * size
    low, high = _extremes(y, finite, size)
    picked = [[0, n - 1], low, high, np.asarray(keep, dtype=np.int64)]
    if per_bucket == 4:
        pad = rows * size - n
        bad = np.concatenate([~finite, np.zeros(pad, bool)]).reshape(rows, size)
        any_bad = bad.any(axis=1)
        first = bad.argmax(axis=1)
        last = size - 1 - bad[:, ::-1].argmax(axis=1)
        picked += [(base + first)[any_bad], (base + last)[any_bad]]
    idx = np.unique(np.concatenate(picked))
    return idx[(idx >= 0) & (idx < n)]


#: Points keep_indices compares at a time (whole buckets): a copy of a million-point column
#: as floats, twice, was most of a long run's Run page's memory above its history.
SLICE_POINTS = 1 << 16


def _extremes(y: np.ndarray, finite: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per bucket of `size` points, the index of its lowest and of its highest finite value
    (a bucket without one gives its first index), a slice of whole buckets at a time."""
    step = size * max(1, SLICE_POINTS // size)
    low, high = [], []
    for start in range(0, len(y), step):
        part = y[start:start + step].astype(float, copy=False)
        ok = finite[start:start + step]
        buckets = -(-len(part) // size)
        lo = np.full(buckets * size, np.inf)
        hi = np.full(buckets * size, -np.inf)
        np.copyto(lo[:len(part)], part, where=ok)
        np.copyto(hi[:len(part)], part, where=ok)
        at = start + np.arange(buckets) * size
        low.append(at + lo.reshape(buckets, size).argmin(axis=1))
        high.append(at + hi.reshape(buckets, size).argmax(axis=1))
    return np.concatenate(low), np.concatenate(high)


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
    picked = [keep_indices(_values(frame[c]), max_points) for c in numeric]
    rows = np.unique(np.concatenate(picked)) if picked else np.array([0, len(frame) - 1])
    return frame.iloc[rows]


def _values(column: pd.Series) -> np.ndarray:
    """A numeric column as numpy, without a copy where its dtype is numpy's own (a nullable
    one's missing values read NaN)."""
    if isinstance(column.dtype, np.dtype):
        return column.to_numpy()
    values: np.ndarray = column.to_numpy(dtype=float, na_value=np.nan)
    return values
