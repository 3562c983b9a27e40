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
    xf = np.where(fin, x, np.nan)
    first = xf[np.argmax(fin)]
    runmin = np.fmin.accumulate(xf)
    prev = np.concatenate(([np.nan], xf[:-1]))
    prev_min = np.concatenate(([np.nan], runmin[:-1]))
    learned = first - prev_min
    with np.errstate(invalid="ignore"):
        rise = xf - prev
        swing = (rise > th.unstable_rise * np.abs(prev)) & (rise > th.unstable_range * learned) & (rise > th.min_delta) & (learned > 0)
        big = swing & (rise > 0.5 * learned)
    idx = np.nonzero(swing)[0]
    if idx.size == 0:
        return None
    # the latest cluster of swings (gaps shorter than unstable_window)
    gaps = np.nonzero(np.diff(idx) > th.unstable_window)[0]
    start_i = idx[gaps[-1] + 1] if gaps.size else idx[0]
    cl = idx[idx >= start_i]
    if cl.size < th.unstable_swings and not big[cl].any():
        return None
    last = cl[-1]
    ongoing = (h.n - 1 - last) < th.unstable_window
    ep = h.epochs
    largest = float(np.nanmax(rise[cl] / np.abs(prev[cl])))
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
