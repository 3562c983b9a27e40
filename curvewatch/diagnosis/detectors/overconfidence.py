"""`overconfidence`: overfitting in the loss while the validation accuracy still improves."""

from __future__ import annotations

import numpy as np

from ..findings import Finding
from ..history import History, num
from ..signals import level_noise
from ..stats import finite, median, median_of_last
from ..thresholds import Thresholds
from .spec import Context, Spec


def _overconfidence(h: History, th: Thresholds, of: Finding) -> Finding | None:
    """Overfitting `of` holds; has the validation accuracy improved since its minimum?"""
    if not h.has("val_acc", 3):
        return None
    h = h.only("val_loss")  # the overfitting minimum is a row of the validation checks
    a = h.cols["val_acc"]
    m = int(np.searchsorted(h.epochs, of.evidence["min_epoch"]))
    gap = float(of.evidence["rise"])
    hw = th.window // 2
    at_m = finite(a[max(0, m - hw): m + hw + 1])
    now = median_of_last(a, th.window)
    if at_m.size == 0 or not np.isfinite(now):
        return None
    at_m_v = median(at_m)
    _, _, s_med = level_noise(a, th)
    if not now - at_m_v > max(1e-9, s_med):
        return None
    m_ep = int(h.epochs[m])
    return Finding("overconfidence", "info", m_ep, None, "val_loss",
                   f"Validation loss has risen {num(gap)} above its minimum at epoch {m_ep} while "
                   f"validation accuracy still improved ({at_m_v:.3g} to {now:.3g}): the model is "
                   f"becoming overconfident on the examples it gets wrong.",
                   "If accuracy is what matters, keep training and select the checkpoint by accuracy; "
                   "otherwise add label smoothing (0.1), weight decay, or calibrate with temperature "
                   "scaling.",
                   {"min_epoch": m_ep, "val_acc_at_min": at_m_v, "val_acc_now": now, "rise": gap})


def detect(ctx: Context) -> Finding | None:
    return _overconfidence(ctx.h, ctx.th, ctx.found["overfitting"])


SPEC = Spec(kinds=("overconfidence",), columns=("val_loss", "val_acc"), reads=("overfitting",), requires=("overfitting",), suppressed_by=("divergence",),
            thresholds=('window',),
            detect=detect)
