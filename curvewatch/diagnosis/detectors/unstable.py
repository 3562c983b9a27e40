"""`unstable`: one-epoch swings of the training loss, clustered."""

from __future__ import annotations

import numpy as np

from ..findings import Finding
from ..history import NAMES, History
from ..thresholds import Thresholds
from .spec import Context, Spec


def _unstable(h: History, th: Thresholds) -> Finding | None:
    metric = "train_loss" if h.has("train_loss", 3) else ("val_loss" if h.has("val_loss", 3) else None)
    if metric is None:
        return None
    h = h.only(metric)
    x = h.cols[metric]
    fin = np.isfinite(x)
    xf = x if fin.all() else np.where(fin, x, np.nan)
    first = xf[np.argmax(fin)]
    # Per row from row 1 on (row 0 has no epoch before it): the rise from the epoch before, and
    # how much the loss had learned by then (its first value minus the lowest before). Built in
    # place, three float arrays of n at most (24 MB for a million epochs, not 56).
    n = xf.size
    rise = xf[1:] - xf[:-1]
    learned = np.fmin.accumulate(xf[:-1])
    np.subtract(first, learned, out=learned)
    swing = np.zeros(n, dtype=bool)
    s = swing[1:]
    with np.errstate(invalid="ignore"):
        tmp = np.abs(xf[:-1])
        tmp *= th.unstable_rise
        np.greater(rise, tmp, out=s)
        np.multiply(th.unstable_range, learned, out=tmp)
        s &= rise > tmp
        s &= rise > th.min_delta
        s &= learned > 0
    del tmp
    idx = np.nonzero(swing)[0]
    if idx.size == 0:
        return None
    # the latest cluster of swings (gaps shorter than unstable_window)
    gaps = np.nonzero(np.diff(idx) > th.unstable_window)[0]
    start_i = idx[gaps[-1] + 1] if gaps.size else idx[0]
    cl = idx[idx >= start_i]
    big = rise[cl - 1] > 0.5 * learned[cl - 1]  # (cl >= 1: row 0 never swings)
    if cl.size < th.unstable_swings and not big.any():
        return None
    last = cl[-1]
    ongoing = (h.n - 1 - last) < th.unstable_window
    ep = h.epochs
    largest = float(np.nanmax(rise[cl - 1] / np.abs(xf[cl - 1])))
    msg = (f"{NAMES[metric]} jumped up {cl.size} time{'s' if cl.size > 1 else ''} between epochs "
           f"{int(ep[cl[0]])} and {int(ep[last])}, by up to {largest:.0%} in one epoch: training is unstable.")
    return Finding("unstable", "warning", int(ep[cl[0]]), None if ongoing else int(ep[last]), metric, msg,
                   "Lower the learning rate (e.g. by 3x), increase the batch size, or add gradient "
                   "clipping (max norm 1.0).",
                   {"swings": int(cl.size), "largest_relative_rise": largest,
                    "swing_epochs": [int(e) for e in ep[cl][:20]]})


def detect(ctx: Context) -> Finding | None:
    return _unstable(ctx.h, ctx.th)


SPEC = Spec(kinds=("unstable",), columns=("train_loss", "val_loss"), span=True,
            thresholds=('min_delta', 'unstable_range', 'unstable_rise', 'unstable_swings', 'unstable_window'),
            detect=detect)
