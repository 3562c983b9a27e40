"""`underfitting`: the training loss flat at a high fraction of its first value, validation close."""

from __future__ import annotations

import numpy as np

from ..findings import Finding
from ..history import History, num
from ..signals import plateau_state, trend, trend_width
from ..stats import last_finite, median_of_last, theil_sen_slope
from ..thresholds import Thresholds
from .spec import Context, Spec


def _underfitting(h: History, th: Thresholds) -> Finding | None:
    if not h.has("train_loss", 3) or h.epochs[-1] < th.start_from_epoch:
        return None
    h = h.only("train_loss")
    tr = h.cols["train_loss"]
    st = plateau_state(h, "train_loss", th)
    if st is None:
        return None
    wait = h.n - 1 - st["j0"]
    if wait < th.patience:
        return None
    first, now = float(tr[np.argmax(np.isfinite(tr))]), median_of_last(tr, th.window)
    z, w = trend(tr, th, trend_width(th))
    gain = -theil_sen_slope(last_finite(tr, w)) * th.patience / abs(now) if now else 0.0
    if z < -th.trend_z and gain > th.plateau_gain:
        return None  # still learning at a rate that matters
    if not (first > 0 and now >= th.underfit_level * first):
        return None
    gap_txt = ""
    ev = {"train_first": first, "train_now": now, "plateau_since_epoch": int(h.epochs[st["j0"]]), "wait": int(wait)}
    if h.has("val_loss", 3):
        v_now = median_of_last(h.cols["val_loss"], th.window)
        if not abs(v_now - now) <= th.underfit_gap * abs(now):
            return None
        gap_txt = f" and validation loss is close to it ({num(v_now)})"
        ev["val_now"] = v_now
    ep0 = int(h.epochs[st["j0"]])
    return Finding("underfitting", "warning", ep0, None, "train_loss",
                   f"Training loss has been flat at {num(now)} since epoch {ep0}, still "
                   f"{now / first:.0%} of its first value {num(first)}{gap_txt}: the model is underfitting.",
                   "Raise the learning rate (e.g. by 3-10x), use a larger model, train longer, or "
                   "reduce regularisation (weight decay, dropout); check the inputs are scaled.",
                   ev)


def detect(ctx: Context) -> Finding | None:
    return _underfitting(ctx.h, ctx.th)


SPEC = Spec(kinds=("underfitting",), columns=("train_loss", "val_loss"), suppressed_by=("divergence",), span=True,
            thresholds=('patience', 'plateau_gain', 'start_from_epoch', 'trend_z', 'underfit_gap', 'underfit_level', 'window'),
            detect=detect)
