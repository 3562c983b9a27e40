"""`divergence`: a non-finite loss, a loss exploded far above its running minimum, or (with the
chance-level loss) a run that exploded inside epoch 1 or collapsed back to its untrained level."""

from __future__ import annotations

import numpy as np

from ..findings import Finding
from ..history import NAMES, History, num
from ..signals import at_chance, chance_txt
from ..stats import finite, median
from ..thresholds import Thresholds
from .spec import Context, Spec


def _divergence(h0: History, th: Thresholds) -> Finding | None:
    first_bad: int | None = None
    metric = ""
    h = h0
    for c in ("train_loss", "val_loss"):
        if c not in h0.cols or (c in h0.present and not h0.present[c].any()):
            continue  # never logged
        hc = h0.only(c)  # a NaN where the metric was not logged is no data, not a NaN loss
        bad = ~np.isfinite(hc.cols[c])
        if bad.any():
            i = int(np.argmax(bad))
            if first_bad is None or hc.epochs[i] < h.epochs[first_bad]:
                first_bad, metric, h = i, c, hc
    if first_bad is not None:
        x = h.cols[metric]
        bad = ~np.isfinite(x)
        ongoing = bool(bad[-1])
        end = None if ongoing else int(h.epochs[np.nonzero(bad)[0][-1]])
        prev = finite(x[:first_bad])
        best_txt = (f" (best {num(prev.min())} at epoch {int(h.epochs[np.nanargmin(np.where(np.isfinite(x[:first_bad]), x[:first_bad], np.nan))])})"
                    if prev.size else "")
        what = "NaN" if np.isnan(x[first_bad]) else "infinite"
        msg = (f"{NAMES[metric]} became {what} at epoch {int(h.epochs[first_bad])}{best_txt}: "
               + ("the run has diverged." if ongoing else "the run diverged and has produced finite values since."))
        return Finding("divergence", "critical", int(h.epochs[first_bad]), end, metric, msg,
                       _diverge_advice(h),
                       {"first_non_finite_epoch": int(h.epochs[first_bad]),
                        "best_before": float(prev.min()) if prev.size else float("nan")})
    # finite explosion of the training loss (validation loss if there is no training loss)
    if not (h.has("train_loss") or h.has("val_loss")):
        return None
    metric = "train_loss" if h.has("train_loss") else "val_loss"
    h = h.only(metric)
    exploded, runmin = _exploded(h.cols[metric], th)
    k = th.diverge_epochs
    if h.n >= k + 1 and exploded[-k:].all():
        i = h.n - 1
        while i > 0 and exploded[i - 1]:
            i -= 1
        x = h.cols[metric]
        return Finding("divergence", "critical", int(h.epochs[i]), None, metric,
                       f"{NAMES[metric]} has stayed above {num(th.explode_factor)}x its minimum "
                       f"{num(runmin[i])} for {h.n - i} epochs since epoch {int(h.epochs[i])} "
                       f"(now {num(x[-1])}): the run has diverged.",
                       _diverge_advice(h),
                       {"minimum": float(runmin[i]), "now": float(x[-1]), "factor": th.explode_factor,
                        "exploded_epochs": int(h.n - i)})
    return _at_chance_from_start(h0, th) or _collapsed(h0, th)


def _at_chance_from_start(h0: History, th: Thresholds) -> Finding | None:
    """Issue 13, class 4a: the loss exploded (a value of chance_explode x the chance level or
    more: inside epoch 1, or in a spike), has never been below the chance level, and its last
    diverge_epochs values sit at it. A relative rule cannot see it: the run has no good minimum.
    (A loss above chance_explode x chance, coming down from an explosion, may be learning:
    accuracy can be good while the loss is high; and a loss at chance whose accuracy shows skill
    is a badly calibrated model, not a diverged one.)"""
    if h0.chance is None:
        return None  # the history alone cannot tell this from a slow start
    metric = "train_loss" if h0.has("train_loss") else ("val_loss" if h0.has("val_loss") else None)
    if metric is None:
        return None
    h = h0.only(metric)
    x = h.cols[metric]
    c = h0.chance
    k = th.diverge_epochs
    if h.n < k + 1 or not (np.isfinite(x) & (x >= th.chance_level * c)).all():
        return None  # (a non-finite value is the rule above's; one below chance: it learned)
    boom = np.nonzero(x[:-k] >= th.chance_explode * c)[0]
    tail = x[-k:]
    # (A loss far above chance is not judged here: a regression run at 1e8 x the target variance
    # that stalled for `patience` epochs fell 10x more later in the corpus; stopping it restored
    # a checkpoint 11x worse.)
    if boom.size == 0 or not at_chance(tail, h0, th).all():
        return None
    if _predicts(h0, th):
        return None  # at chance, yet it classifies: badly calibrated, not diverged
    b = int(boom[0])
    where = f"in epoch {int(h.epochs[b])}" if b else "in its first epoch"
    return Finding("divergence", "critical", int(h.epochs[b]), None, metric,
                   f"{NAMES[metric]} was {num(x[b])} at epoch {int(h.epochs[b])}, "
                   f"{x[b] / c:.3g}x {chance_txt(h0)}, has never been below "
                   f"{th.chance_level:.0%} of it and is now {num(x[-1])} ({x[-1] / c:.3g}x): the "
                   f"run diverged {where} and has learned nothing.",
                   _diverge_advice(h),
                   {"first_value": float(x[0]), "exploded_epoch": int(h.epochs[b]),
                    "exploded_value": float(x[b]), "chance_loss": c, "now": float(x[-1]),
                    "chance_level": th.chance_level, "epochs_at_chance": int(h.n - 1 - b)})


def _accuracy(h: History) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(epochs, values, skill mark) of the logged accuracy (validation, else training); the mark
    is halfway from the chance accuracy 1/K to 1, K = exp(chance loss) classes under
    cross-entropy. None without an accuracy (regression) or a chance level."""
    name = "val_acc" if h.has("val_acc") else ("train_acc" if h.has("train_acc") else None)
    if name is None or h.chance is None:
        return None
    ha = h.only(name)
    ok = np.isfinite(ha.cols[name])
    return ha.epochs[ok], ha.cols[name][ok], (1.0 + 1.0 / float(np.exp(min(h.chance, 50.0)))) / 2.0


def _predicts(h: History, th: Thresholds) -> bool:
    """Does the accuracy show skill (the median of its last diverge_epochs values at the mark)?"""
    acc = _accuracy(h)
    return acc is not None and acc[1].size > 0 and median(acc[1][-th.diverge_epochs:]) >= acc[2]


def _lost_skill(h: History, th: Thresholds, since: int) -> bool:
    """Had the accuracy skill before epoch `since` (a window-mean a quarter of the way from the
    chance accuracy to 1) and has it lost it since (below the mark)? Class 4b without the 2x:
    a collapse from a loss only 1.4-1.6x below chance."""
    acc = _accuracy(h)
    if acc is None:
        return False
    ep, a, mark = acc
    before = a[ep < since]
    if before.size < th.window or (a[ep >= since]).size < th.diverge_epochs:
        return False
    level = np.convolve(before, np.ones(th.window) / th.window, mode="valid").max()
    chance_acc = 2.0 * mark - 1.0  # 1/K
    had = chance_acc + (1.0 - chance_acc) / 4  # a quarter of the way from chance to perfect
    return bool(level >= had) and not _predicts(h, th)


def _collapsed(h0: History, th: Thresholds) -> Finding | None:
    """Issue 13, class 4b: the training loss came back from its minimum to chance_explode x it
    or more (or, with an accuracy, to where the accuracy lost the skill it had) and has stayed at
    the untrained level for the last diverge_epochs epochs: the model collapsed. The untrained level is the chance-level loss; without it, the training loss's
    first value (where this run started: overfitting and noise never return there)."""
    if not h0.has("train_loss", th.diverge_epochs + 2):
        return None  # a validation loss above chance can be overfitting, not a collapse
    h = h0.only("train_loss")
    x = h.cols["train_loss"]
    fin = finite(x)
    untrained = h0.chance if h0.chance is not None else float(fin[0])
    level = th.chance_level * untrained
    high = np.isfinite(x) & (x >= level)
    k = th.diverge_epochs
    if untrained <= 0 or not high[-k:].all():
        return None
    i = h.n - 1
    while i > 0 and high[i - 1]:
        i -= 1
    before = finite(x[:i])
    if before.size == 0:
        return None
    low = float(before.min())
    doubled = low > 0 and float(x[i:].min()) >= th.chance_explode * low
    if not (doubled or _lost_skill(h0, th, int(h.epochs[i]))):
        return None
    b_ep = int(h.epochs[int(np.nanargmin(np.where(np.isfinite(x[:i]), x[:i], np.nan)))])
    scale = chance_txt(h0) or f"its first value {num(untrained)}"
    return Finding("divergence", "critical", int(h.epochs[i]), None, "train_loss",
                   f"Training loss went back from its minimum {num(low)} (epoch {b_ep}) to "
                   f"{num(x[i])} at epoch {int(h.epochs[i])} and has stayed at or above "
                   f"{th.chance_level:.0%} of {scale} for {h.n - i} epochs (now {num(x[-1])}): "
                   f"the model collapsed back to its untrained state; the run has diverged.",
                   _diverge_advice(h),
                   {"minimum": low, "minimum_epoch": b_ep, "now": float(x[-1]),
                    "untrained_level": untrained,
                    "chance_loss": h0.chance if h0.chance is not None else float("nan"),
                    "collapsed_epochs": int(h.n - i)})


def _diverge_advice(h: History) -> str:
    tail = (f"; the best checkpoint from before the divergence ({h.best_checkpoint}) is intact."
            if h.best_checkpoint else
            "; restart from weights saved before the divergence if your loop kept any.")
    return ("Lower the learning rate (e.g. by 10x), add gradient clipping (max norm 1.0) "
            "or a warm-up" + tail)


def _exploded(x: np.ndarray, th: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Per epoch: loss above explode_factor x its running minimum before it and above its first value."""
    fin = np.isfinite(x)
    xf = x if fin.all() else np.where(fin, x, np.inf)
    prev_min = np.empty(x.size)  # the running minimum before each row (none before row 0)
    prev_min[0] = np.inf
    np.minimum.accumulate(xf[:-1], out=prev_min[1:])
    first = x[np.argmax(fin)] if fin.any() else np.inf
    # (in place, three arrays of n at most: 24 MB for a million epochs)
    with np.errstate(invalid="ignore"):
        tmp = np.maximum(prev_min, 0)
        tmp *= th.explode_factor
        ex = fin
        ex &= x > tmp
        del tmp
        ex &= x > first
        ex &= prev_min > 0
    return ex, prev_min


def detect(ctx: Context) -> Finding | None:
    return _divergence(ctx.h, ctx.th)


SPEC = Spec(kinds=("divergence",), columns=("train_loss", "val_loss"), stop_rank=3, min_rows=1,
            thresholds=('chance_explode', 'chance_level', 'diverge_epochs', 'explode_factor', 'window'),
            detect=detect)
