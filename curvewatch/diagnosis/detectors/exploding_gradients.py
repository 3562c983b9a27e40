"""`exploding_gradients`: a gradient norm that jumps or grows by orders of magnitude."""

from __future__ import annotations

import numpy as np

from ..findings import Finding
from ..history import NAMES, History, num
from ..layers import Layers, col_nanmedian, grad_rows, grad_series, layer_names
from ..stats import rolling_median
from ..thresholds import Thresholds
from .spec import Context, Spec


def _exploding(h: History, th: Thresholds, lf: Layers | None) -> Finding | None:
    h = grad_rows(h)
    series = grad_series(h)
    if series is None:
        return None
    metric, g = series
    f = th.grad_explode_factor
    n = g.size
    fin = np.isfinite(g)
    gf = g if fin.all() else np.where(fin, g, np.nan)
    # The masks below are built from at most three float arrays of n at a time (with views,
    # shifted slices and in-place products: 24 MB for a million epochs, not 75).
    # A spike: above f times the running median of the (up to) 10 epochs before; with fewer
    # than 3 of them f^2 times (an epoch-2 jump by 10x can be ordinary; by 100x it is not).
    med = rolling_median(gf, 10, min_periods=1)
    k3 = int(np.nonzero(fin)[0][2]) + 1 if int(fin.sum()) >= 3 else n  # rows with 3 finite before
    spike = np.zeros(n, dtype=bool)
    need = med[:-1] * f  # (row i's need, from row 1 on)
    need[:k3 - 1] = med[:k3 - 1] * (f * f)
    with np.errstate(invalid="ignore"):
        np.greater(g[1:], need, out=spike[1:])
    del need
    # growth by orders of magnitude: the level (median of 5) above f^2 times its lowest level before
    level = rolling_median(gf, 5, min_periods=3)
    grown = np.zeros(n, dtype=bool)
    if n > 1:
        low = np.fmin.accumulate(level[:-1])  # the lowest level before each row from row 1 on
        positive = low > 0
        low *= f * f
        with np.errstate(invalid="ignore"):
            np.greater(level[1:], low, out=grown[1:])
        grown[1:] &= positive
        del low, positive
    nonfinite = np.isinf(g)
    ev_mask = nonfinite | spike | grown
    idx = np.nonzero(ev_mask)[0]
    if idx.size == 0:
        return None
    gaps = np.nonzero(np.diff(idx) > th.unstable_window)[0]
    i0 = int(idx[gaps[-1] + 1] if gaps.size else idx[0])
    by_growth = bool(grown[i0] and not spike[i0] and not nonfinite[i0])
    # (the lowest level before row i0, or the median before it; NaN at row 0)
    if i0 == 0:
        ref = np.nan
    else:
        ref = np.fmin.reduce(level[:i0]) if by_growth else med[i0 - 1]
    with np.errstate(invalid="ignore"):
        high = ev_mask | ((g > f * ref) if np.isfinite(ref) else False)
    high[:i0] = False
    ongoing = bool(high[-1])
    last_high = int(np.nonzero(high)[0][-1]) if high.any() else int(i0)
    ep = h.epochs
    peak = float(np.fmax.reduce(g[i0:], initial=-np.inf))  # NaN skipped, -inf if all are
    names: list[str] = []
    if lf is not None:
        k = int(np.searchsorted(lf.epochs, ep[i0]))
        if k < len(lf) and lf.epochs[k] == ep[i0] and k >= 3:
            vals = lf.values(max(0, k - 10), k + 1)
            row, ref_rows = vals[-1], vals[:-1]
            base_l = col_nanmedian(ref_rows)
            ratio = row / base_l
            hit = np.isinf(row) | (ratio > th.grad_explode_factor)
            order = np.argsort(-np.where(np.isfinite(ratio), ratio, np.inf))
            names = [lf.names[j] for j in order if hit[j]]
    layer_txt = f" (layers {layer_names(names)})" if names else ""
    ref_txt = (f"{num(peak / ref)}x its {'lowest level' if by_growth else 'recent median'} {num(ref)}"
               if np.isfinite(ref) and ref > 0 and np.isfinite(peak) else "a non-finite value")
    verb = "has grown" if by_growth else "jumped"
    msg = (f"{NAMES[metric]} {verb} to {num(peak)} at epoch {int(ep[i0])}, {ref_txt}{layer_txt}: "
           f"gradients are exploding.")
    sev = "critical" if (not np.isfinite(peak)) or ongoing else "warning"
    return Finding("exploding_gradients", sev, int(ep[i0]), None if ongoing else int(ep[last_high]), metric, msg,
                   "Add gradient clipping (clip_grad_norm_ with max norm 1.0), lower the learning rate, "
                   "or add a warm-up; check for un-normalised inputs.",
                   {"peak": peak, "reference_median": float(ref) if np.isfinite(ref) else float("nan"),
                    "factor": th.grad_explode_factor, "layers": names[:20]})


def detect(ctx: Context) -> Finding | None:
    return _exploding(ctx.h, ctx.th, ctx.layers)


SPEC = Spec(kinds=("exploding_gradients",), columns=("grad_norm", "grad_norm_max"), span=True,
            thresholds=('grad_explode_factor', 'unstable_window'),
            detect=detect)
