"""`still_improving`: the monitored loss still falls significantly at the last epoch (info)."""

from __future__ import annotations

import numpy as np

from ..findings import Finding
from ..history import NAMES, History, num
from ..signals import level_noise, monitored, trend, trend_width
from ..stats import finite, median
from ..thresholds import Thresholds
from .spec import Context, Spec


def _still_improving(h: History, th: Thresholds, metric: str | None) -> Finding | None:
    if metric is None:
        return None
    h = h.only(metric)
    x = h.cols[metric]
    if not np.isfinite(x[-1]):
        return None
    f = finite(x)
    width = trend_width(th)
    if f.size < max(6, th.window + 3):
        return None
    win = f[-width:]
    z, _ = trend(x, th, width)
    if z >= -th.trend_z:
        return None
    k = max(1, min(th.window, win.size // 3))
    before, now = median(win[:k]), median(win[-k:])
    sigma, phi, s_med = level_noise(x, th)
    need = max(th.min_delta, th.min_rel_delta * abs(now), th.plateau_z * s_med)
    if before - now <= need:
        return None
    # the level must be at (or within noise of) its best: a curve that fell and turned up is not improving
    if now > float(np.nanmin(h.smooth(metric, th.window))) + need:
        return None
    fin_idx = np.nonzero(np.isfinite(x))[0]
    start = int(h.epochs[fin_idx[-win.size]])
    name = NAMES[metric]
    return Finding("still_improving", "info", start, None, metric,
                   f"{name} is still falling at the last epoch ({num(before)} to {num(now)} over the last "
                   f"{win.size} epochs, a steady fall well beyond its epoch-to-epoch noise): training "
                   "longer should help.",
                   "Train for more epochs" + (" (resume from the last checkpoint)" if h.best_checkpoint
                                              else "") + ", or raise the learning rate if progress "
                   "is slow.",
                   {"level_before": before, "level_now": now, "trend_z": z, "window": int(win.size),
                    "sigma": sigma})


def detect(ctx: Context) -> Finding | None:
    return _still_improving(ctx.h, ctx.th, monitored(ctx.h))


SPEC = Spec(kinds=("still_improving",), columns=("val_loss", "train_loss"), suppressed_by=("divergence", "overfitting", "plateau", "converged", "unstable"),
            thresholds=('min_delta', 'min_rel_delta', 'plateau_z', 'trend_z', 'window'),
            detect=detect)
