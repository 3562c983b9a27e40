"""`vanishing_gradients`: layers whose gradients are a tiny fraction of the largest layer's, or a
global norm collapsed while the training loss is still high."""

from __future__ import annotations

import numpy as np

from ..findings import Finding
from ..history import NAMES, History, num
from ..layers import Layers, col_nanmedian, grad_rows, grad_series, layer_names
from ..stats import finite, median_of_last
from ..thresholds import Thresholds
from .spec import Context, Spec


def _vanishing(h: History, th: Thresholds, lf: Layers | None) -> Finding | None:
    h = grad_rows(h)
    ep = h.epochs
    # per layer: layers whose recent norm is a tiny fraction of the largest layer's
    if lf is not None:
        vals = lf.values(max(0, len(lf) - th.window), len(lf))
        recent = col_nanmedian(vals)
        okc = np.isfinite(recent)
        top = float(recent[okc].max()) if okc.any() else float("nan")
        if okc.sum() >= 2 and np.isfinite(top) and top > 0:
            small = okc & (recent < th.grad_vanish_factor * top)
            if small.any():
                idx = [j for j in np.argsort(recent) if small[j]]
                names = [lf.names[j] for j in idx]
                since = _since_small(lf, idx[0], th)
                return Finding("vanishing_gradients", "warning", int(since), None, "layers",
                               f"Gradients of {len(names)} layer{'s' if len(names) > 1 else ''} ({layer_names(names)}) are below "
                               f"{num(th.grad_vanish_factor)}x the largest layer's ({num(top)}) over the "
                               f"last {min(th.window, len(lf))} epochs: gradients are vanishing.",
                               "Use ReLU/GELU instead of sigmoid/tanh, add normalisation (BatchNorm/"
                               "LayerNorm) or residual connections, check the initialisation; a layer "
                               "at exactly 0 may be frozen or unused.",
                               {"layers": names[:20], "largest_layer_norm": top,
                                "smallest_ratio": float(recent[idx[0]] / top)})
    series = grad_series(h)
    if series is None or not h.has("train_loss", 3):
        return None
    metric, g = series
    gf = finite(g)
    if gf.size < th.window + 1:
        return None
    peak = float(gf.max())
    now = median_of_last(g, th.window)
    tr = h.cols["train_loss"]
    t_first, t_now = float(finite(tr)[0]), median_of_last(tr, th.window)
    if peak > 0 and now < th.grad_vanish_factor * peak and t_first > 0 and t_now >= th.underfit_level * t_first:
        below = np.nonzero(np.isfinite(g) & (g < th.grad_vanish_factor * peak))[0]
        return Finding("vanishing_gradients", "warning", int(ep[below[0]]) if below.size else int(ep[-1]), None, metric,
                       f"{NAMES[metric]} fell to {num(now)}, below {num(th.grad_vanish_factor)}x its peak "
                       f"{num(peak)}, while training loss is still {num(t_now)} ({t_now / t_first:.0%} of its "
                       f"first value): gradients are vanishing.",
                       "Use ReLU/GELU instead of sigmoid/tanh, add normalisation or residual connections, "
                       "check the initialisation and raise the learning rate.",
                       {"grad_now": now, "grad_peak": peak, "train_now": t_now, "train_first": t_first})
    return None


def _since_small(lf: Layers, j: int, th: Thresholds) -> int:
    """First epoch of the final run of epochs in which layer j was below the vanishing ratio."""
    lo = max(0, len(lf) - th.noise_window)
    vals = lf.values(lo, len(lf))
    top = np.nanmax(np.where(np.isfinite(vals), vals, np.nan), axis=1)
    small = vals[:, j] < th.grad_vanish_factor * top
    i = len(small) - 1
    while i > 0 and small[i - 1]:
        i -= 1
    return int(lf.epochs[lo + i])


def detect(ctx: Context) -> Finding | None:
    return _vanishing(ctx.h, ctx.th, ctx.layers)


SPEC = Spec(kinds=("vanishing_gradients",), columns=("grad_norm", "grad_norm_max", "train_loss"), span=True,
            thresholds=('grad_vanish_factor', 'noise_window', 'underfit_level', 'window'),
            detect=detect)
