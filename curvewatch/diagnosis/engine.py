"""`diagnose` and `should_stop`: a training history in, findings out.

Every detector reads only the rows it is given (online-consistent), uses only trailing
windows and running minima (so findings at epoch t never depend on later rows), and
never raises on NaN or infinite values. See docs/diagnosis.md for the definitions.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .findings import KINDS, Finding
from .stats import (
    finite,
    inflation,
    level_sd,
    mann_kendall_z,
    median_of_last,
    noise,
    rolling_median,
    theil_sen_slope,
)
from .thresholds import Thresholds

__all__ = ["diagnose", "should_stop", "stopping_finding", "STOP_KINDS", "COLUMNS", "ABSENT"]

#: History columns the engine reads; any other column is ignored.
COLUMNS: tuple[str, ...] = ("train_loss", "val_loss", "train_acc", "val_acc", "grad_norm",
                            "grad_norm_max", "lr")
#: Optional history column naming, per row, the metrics that row has no data for
#: (comma-separated, e.g. "val_loss,val_acc"; empty or NaN: none). A metric logged every 2nd
#: epoch is *absent* in the other rows, which is not a non-finite value: a NaN cell named here
#: is no data, a NaN cell not named here is a logged NaN (a divergence). tracking's reader
#: writes it (tracking.reader.ABSENT); without it every NaN is a logged NaN.
ABSENT = "absent"
#: Kinds that `should_stop` accepts.
STOP_KINDS: tuple[str, ...] = ("overfitting", "plateau", "divergence")
#: Kinds a stop kind also covers: a run stopped on plateaus stops when it has converged (a
#: plateau at a low loss, reported as info).
STOP_ALSO: dict[str, tuple[str, ...]] = {"plateau": ("converged",)}

_NAMES = {"train_loss": "Training loss", "val_loss": "Validation loss", "grad_norm": "Gradient norm",
          "grad_norm_max": "Largest gradient norm", "train_acc": "Training accuracy",
          "val_acc": "Validation accuracy"}


def _g(x: float) -> str:
    """A number for a sentence: 3 significant digits."""
    if not np.isfinite(x):
        return {True: "NaN"}.get(bool(np.isnan(x)), "infinity" if x > 0 else "-infinity")
    return f"{x:.3g}"


@dataclass
class _H:
    """The history as float arrays, sorted by epoch (rows after the given ones never exist here)."""

    epochs: np.ndarray
    cols: dict[str, np.ndarray]
    n: int
    #: per column, the rows that have data (all rows unless the ABSENT column says otherwise)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    #: the file that holds the run's best weights (e.g. "best.pt"), or None: none is known
    best_checkpoint: str | None = None
    #: the chance-level loss (the loss of a model that learned nothing), or None: not known
    chance: float | None = None
    _smooth: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    _only: dict[str, "_H"] = field(default_factory=dict)

    def only(self, name: str | None) -> "_H":
        """The history restricted to the rows where column `name` has data (itself when it
        has data everywhere or is missing): a detector of `name` works on these rows, so a
        metric logged every k-th epoch is a series of its checks with their epochs."""
        mask = self.present.get(name) if name is not None else None
        if mask is None or bool(mask.all()) or not mask.any():
            return self  # (a column never logged is all NaN: its detectors find nothing)
        assert name is not None
        if name not in self._only:
            rows = np.nonzero(mask)[0]
            self._only[name] = _H(epochs=self.epochs[rows],
                                  cols={c: x[rows] for c, x in self.cols.items()},
                                  n=int(rows.size),
                                  present={c: m[rows] for c, m in self.present.items()},
                                  best_checkpoint=self.best_checkpoint, chance=self.chance)
        return self._only[name]

    def smooth(self, name: str, window: int) -> np.ndarray:
        """Causal rolling median of a column (non-finite values skipped), computed once."""
        key = (name, window)
        if key not in self._smooth:
            x = self.cols[name]
            self._smooth[key] = rolling_median(np.where(np.isfinite(x), x, np.nan), window)
        return self._smooth[key]

    def has(self, name: str, min_finite: int = 2) -> bool:
        x = self.cols.get(name)
        return x is not None and int(np.isfinite(x).sum()) >= min_finite


def _prepare(history: Any) -> _H | None:
    """The history as float arrays, or None when it has no epoch. Untyped callers may pass
    None or anything pd.DataFrame() accepts (records, a dict of columns)."""
    if history is None:
        return None
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame(history)
    n = len(frame)
    if n < 1:
        return None
    if "epoch" in frame.columns:
        ep = pd.to_numeric(frame["epoch"], errors="coerce").to_numpy(dtype=float)
    else:
        ep = np.arange(1, n + 1, dtype=float)
    keep = np.isfinite(ep)
    order = np.argsort(np.where(keep, ep, np.inf), kind="stable")
    order = order[keep[order]]
    ep = ep[order]
    # one row per epoch: the last row written for an epoch wins
    if ep.size > 1:
        last = np.append(ep[1:] != ep[:-1], True)
        order, ep = order[last], ep[last]
    if ep.size < 1:
        return None
    cols = {}
    for c in COLUMNS:
        if c in frame.columns:
            col = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
            cols[c] = col[order]
    present = {}
    if ABSENT in frame.columns and cols:
        names = frame[ABSENT].to_numpy(dtype=object)[order]
        absent = [set(a.split(",")) if isinstance(a, str) and a else set() for a in names]
        for c, x in cols.items():
            # a cell with a value is present whatever the column says; a NaN named absent is not
            present[c] = ~np.isnan(x) | np.array([c not in a for a in absent], dtype=bool)
    return _H(epochs=ep.astype(np.int64), cols=cols, n=int(ep.size), present=present)


# ---------------------------------------------------------------- divergence

def _divergence(h0: _H, th: Thresholds) -> Finding | None:
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
        best_txt = (f" (best {_g(prev.min())} at epoch {int(h.epochs[np.nanargmin(np.where(np.isfinite(x[:first_bad]), x[:first_bad], np.nan))])})"
                    if prev.size else "")
        what = "NaN" if np.isnan(x[first_bad]) else "infinite"
        msg = (f"{_NAMES[metric]} became {what} at epoch {int(h.epochs[first_bad])}{best_txt}: "
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
                       f"{_NAMES[metric]} has stayed above {_g(th.explode_factor)}x its minimum "
                       f"{_g(runmin[i])} for {h.n - i} epochs since epoch {int(h.epochs[i])} "
                       f"(now {_g(x[-1])}): the run has diverged.",
                       _diverge_advice(h),
                       {"minimum": float(runmin[i]), "now": float(x[-1]), "factor": th.explode_factor,
                        "exploded_epochs": int(h.n - i)})
    return _at_chance_from_start(h0, th) or _collapsed(h0, th)


def _chance_txt(h: _H) -> str:
    return (f"the chance level {_g(h.chance)} (the loss of a model that learned nothing)"
            if h.chance is not None else "")


def _at_chance(x: np.ndarray | float, h: _H, th: Thresholds) -> np.ndarray:
    """Per value: at the chance level, chance_level x to chance_explode x the chance-level loss
    (a model without skill; a loss far above it is an overconfident or exploded model, which
    may still predict well). All False when the chance level is not known."""
    x = np.asarray(x, dtype=float)
    if h.chance is None:
        return np.zeros(x.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return (x >= th.chance_level * h.chance) & (x < th.chance_explode * h.chance)


def _at_chance_from_start(h0: _H, th: Thresholds) -> Finding | None:
    """Issue 13, class 4a: the loss exploded inside epoch 1 (its first value is chance_explode
    x the chance level or more), has never been below the chance level since, and has sat at
    it for the last diverge_epochs epochs. A relative rule cannot see it: the run has no good
    minimum. (A loss still coming down from the explosion, above chance_explode x chance, may
    be learning: accuracy can be good while the loss is high.)"""
    if h0.chance is None:
        return None  # the history alone cannot tell this from a slow start
    metric = "train_loss" if h0.has("train_loss") else ("val_loss" if h0.has("val_loss") else None)
    if metric is None:
        return None
    h = h0.only(metric)
    x = h.cols[metric]
    level = th.chance_level * h0.chance
    if h.n < th.diverge_epochs + 1 or not np.isfinite(x[0]) or x[0] < th.chance_explode * h0.chance:
        return None
    if not (np.isfinite(x[1:]) & (x[1:] >= level)).all() \
            or not _at_chance(x[-th.diverge_epochs:], h0, th).all():
        return None
    return Finding("divergence", "critical", int(h.epochs[0]), None, metric,
                   f"{_NAMES[metric]} was {_g(x[0])} in epoch {int(h.epochs[0])}, "
                   f"{x[0] / h0.chance:.3g}x {_chance_txt(h0)}, and has stayed at or above that "
                   f"level for the {h.n - 1} epochs since (now {_g(x[-1])}): the run diverged in "
                   f"its first epoch and has learned nothing.",
                   _diverge_advice(h),
                   {"first_value": float(x[0]), "chance_loss": h0.chance, "now": float(x[-1]),
                    "chance_level": th.chance_level, "epochs_at_chance": int(h.n - 1)})


def _collapsed(h0: _H, th: Thresholds) -> Finding | None:
    """Issue 13, class 4b: the training loss came back from its minimum to chance_explode x it
    or more and has stayed at the untrained level for the last diverge_epochs epochs: the model
    collapsed. The untrained level is the chance-level loss; without it, the training loss's
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
    if not (low > 0 and float(x[i:].min()) >= th.chance_explode * low):
        return None
    b_ep = int(h.epochs[int(np.nanargmin(np.where(np.isfinite(x[:i]), x[:i], np.nan)))])
    scale = _chance_txt(h0) or f"its first value {_g(untrained)}"
    return Finding("divergence", "critical", int(h.epochs[i]), None, "train_loss",
                   f"Training loss went back from its minimum {_g(low)} (epoch {b_ep}) to "
                   f"{_g(x[i])} at epoch {int(h.epochs[i])} and has stayed at or above "
                   f"{th.chance_level:.0%} of {scale} for {h.n - i} epochs (now {_g(x[-1])}): "
                   f"the model collapsed back to its untrained state; the run has diverged.",
                   _diverge_advice(h),
                   {"minimum": low, "minimum_epoch": b_ep, "now": float(x[-1]),
                    "untrained_level": untrained,
                    "chance_loss": h0.chance if h0.chance is not None else float("nan"),
                    "collapsed_epochs": int(h.n - i)})


def _best_epoch(h: _H, metric: str) -> int | None:
    """The epoch of the lowest finite value of `metric` (the weights a best checkpoint holds)."""
    x = h.cols.get(metric)
    if x is None or not np.isfinite(x).any():
        return None
    return int(h.epochs[int(np.nanargmin(np.where(np.isfinite(x), x, np.nan)))])


def _keep_best(h: _H, epoch: int | None) -> str:
    """'keep ...': the advice's words for the best weights, naming only what exists."""
    at = f"epoch-{epoch} " if epoch is not None else "best "
    if h.best_checkpoint:
        return f"keep the {at}checkpoint ({h.best_checkpoint})"
    where = f"those of epoch {epoch}" if epoch is not None else "those of the best epoch"
    return (f"keep the best weights, {where}, if your loop saved them (no checkpoint is "
            f"recorded for this run)")


def _diverge_advice(h: _H) -> str:
    tail = (f"; the best checkpoint from before the divergence ({h.best_checkpoint}) is intact."
            if h.best_checkpoint else
            "; restart from weights saved before the divergence if your loop kept any.")
    return ("Lower the learning rate (e.g. by 10x), add gradient clipping (max norm 1.0) "
            "or a warm-up" + tail)


def _exploded(x: np.ndarray, th: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Per epoch: loss above explode_factor x its running minimum before it and above its first value."""
    xf = np.where(np.isfinite(x), x, np.inf)
    prev_min = np.minimum.accumulate(xf)
    prev_min = np.concatenate(([np.inf], prev_min[:-1]))
    fin = finite(x)
    first = fin[0] if fin.size else np.inf
    with np.errstate(invalid="ignore"):
        ex = np.isfinite(x) & (x > th.explode_factor * np.maximum(prev_min, 0)) & (x > first) & (prev_min > 0)
    return ex, prev_min


# ---------------------------------------------------------------- unstable

def _unstable(h: _H, th: Thresholds) -> Finding | None:
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
    msg = (f"{_NAMES[metric]} jumped up {cl.size} time{'s' if cl.size > 1 else ''} between epochs "
           f"{int(ep[cl[0]])} and {int(ep[last])}, by up to {largest:.0%} in one epoch: training is unstable.")
    return Finding("unstable", "warning", int(ep[cl[0]]), None if ongoing else int(ep[last]), metric, msg,
                   "Lower the learning rate (e.g. by 3x), increase the batch size, or add gradient "
                   "clipping (max norm 1.0).",
                   {"swings": int(cl.size), "largest_relative_rise": largest,
                    "swing_epochs": [int(e) for e in ep[cl][:20]]})


# ---------------------------------------------------------------- plateau & trend helpers

def _level_noise(x: np.ndarray, th: Thresholds) -> tuple[float, float, float]:
    """(sigma, phi, sd of a window-median level) from the trailing noise window."""
    f = finite(x)
    if f.size >= _NOISE_SKIP + 8:
        f = f[_NOISE_SKIP:]  # the first epochs' steep fall is a transient, not noise
    f = f[-th.noise_window:]
    phi = th.autocorr
    sigma = noise(f, phi)
    if not np.isfinite(sigma):
        sigma = 0.0
    return sigma, phi, level_sd(sigma, phi, th.window)


def _lr_steps(h: _H) -> np.ndarray:
    """Row indices where a learning-rate *step* lands (a change by a factor of 2 or more from
    one epoch to the next: step decays, ReduceLROnPlateau cuts, restarts). Smooth schedules
    (cosine, exponential) change the rate every epoch by a few percent; those are not steps."""
    lr = h.cols.get("lr")
    if lr is None:
        return np.zeros(0, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        a, b = np.abs(lr[:-1]), np.abs(lr[1:])
        ch = (np.maximum(a, b) >= _LR_STEP * np.minimum(a, b)) & (np.maximum(a, b) > 0)
    ch &= np.isfinite(lr[1:]) & np.isfinite(lr[:-1])
    return np.nonzero(ch)[0] + 1


def _last_lr_change(h: _H) -> int:
    """Row index of the last learning-rate step, or -1."""
    steps = _lr_steps(h)
    return int(steps[-1]) if steps.size else -1


def _plateau_state(h: _H, name: str, th: Thresholds) -> dict[str, Any] | None:
    """Where the smoothed level of a column last improved significantly, and the numbers used."""
    x = h.cols[name]
    fin = np.isfinite(x)
    if fin.sum() < 3 or not fin[-1]:
        return None
    S = h.smooth(name, th.window)
    Sf = np.where(np.isfinite(S), S, np.inf)
    C = np.minimum.accumulate(Sf)
    best = float(C[-1])
    sigma, phi, s_med = _level_noise(x, th)
    delta = max(th.min_delta, th.min_rel_delta * abs(best), th.plateau_z * s_med)
    suff = np.minimum.accumulate(Sf[::-1])[::-1]
    suff_next = np.append(suff[1:], np.inf)
    j0 = int(np.argmax(suff_next >= C - delta))
    # where *significant* improvement stopped (noise-scaled margin): the reported start
    delta_sig = max(delta, th.plateau_start_z * s_med)
    j_sig = int(np.argmax(suff_next >= C - delta_sig))
    return {"j0": j0, "j_sig": j_sig, "best": best, "delta": delta, "sigma": sigma, "phi": phi, "S": S}


#: Mann-Kendall z below which the values since a rise's peak count as falling back (one-sided
#: ~16%: weak evidence suffices, as it only delays a plateau while the projected gain matters).
_BACK_Z = 1.0


def _back_from_bump(x: np.ndarray, S: np.ndarray, low: int, n: int, th: Thresholds,
                    best: float) -> bool:
    """Is the loss falling back after a rise since its last low (row `low`): a falling trend
    (Mann-Kendall z < -1) since the highest smoothed level, projecting more than plateau_gain
    over the next patience epochs?"""
    recent = _since_peak(x, S, low, n)
    if recent.size < 4 or best == 0:
        return False
    gain = -theil_sen_slope(recent) * th.patience / abs(best)
    return mann_kendall_z(recent, inflation(th.autocorr)) < -_BACK_Z and gain > th.plateau_gain


def _trend(x: np.ndarray, th: Thresholds, width: int) -> tuple[float, int]:
    f = finite(x)[-width:]
    return float(mann_kendall_z(f, inflation(th.autocorr))), int(f.size)


#: A learning-rate change by this factor (or more) in one epoch is a step (1.999: halving counts).
_LR_STEP = 1.999
#: Epochs at the start left out of the noise estimate (when 8 or more others exist): the steep
#: initial fall of a loss inflates second differences there without being noise.
_NOISE_SKIP = 3



def _no_skill(h: _H, best_level: float, th: Thresholds) -> bool:
    """Was the best (smoothed) level of a loss at the chance level (_at_chance), so never a
    trained state? (One far above it is an overconfident model, often a trained one.)
    False when the chance-level loss is not known: a first value is no proxy (a fine-tuned
    model starts trained)."""
    return bool(_at_chance(best_level, h, th))


def _monitored(h: _H) -> str | None:
    if h.has("val_loss", 3):
        return "val_loss"
    if h.has("train_loss", 3):
        return "train_loss"
    return None


def _trend_width(th: Thresholds) -> int:
    return max(2 * th.patience, 10)


def _plateau(h: _H, th: Thresholds, metric: str | None, unstable: bool = False) -> Finding | None:
    if metric is None or h.epochs[-1] < th.start_from_epoch:
        return None
    h = h.only(metric)
    x = h.cols[metric]
    st = _plateau_state(h, metric, th)
    if st is None:
        return None
    if _no_skill(h, st["best"], th):
        return None  # flat at the untrained level: a saddle or a slow start (issue 13, class 5)
    j0 = st["j0"]
    c = _last_lr_change(h)
    if c >= 0 and h.n - 1 < c + th.cooldown:
        return None  # give a learning-rate step `cooldown` epochs to show its effect
    anchor = j0
    # a raw record (a new lowest value by more than min_delta) also resets the wait, as in Keras
    xf = np.where(np.isfinite(x), x, np.inf)
    prev_min = np.concatenate(([np.inf], np.minimum.accumulate(xf)[:-1]))
    rec = np.nonzero(xf < prev_min - th.min_delta)[0]
    if rec.size:
        anchor = max(anchor, int(rec[-1]))
    anchor = max(anchor, int(np.searchsorted(h.epochs, th.start_from_epoch)))
    wait = h.n - 1 - anchor
    quick = th.flat_patience <= wait < th.patience and not unstable
    if wait < th.patience and not quick:
        return None
    # trend tests over the last trend_window epochs (the plateau segment if it is longer)
    seg = x[max(0, min(j0, h.n - th.trend_window), h.n - th.noise_window):]
    z, w = _trend(seg, th, seg.size)
    fseg = finite(seg)
    slope = theil_sen_slope(fseg)
    scale = th.patience / abs(st["best"]) if st["best"] != 0 else 0.0
    gain = -slope * scale
    # Still falling significantly: not a plateau. After the full wait a significant fall must
    # also matter (project more than plateau_gain): a smooth, noise-free creep of 0.1% per
    # epoch is statistically certain and practically flat.
    if z < -th.trend_z and (quick or gain > th.plateau_gain):
        return None
    if _back_from_bump(x, st["S"], anchor, h.n, th, st["best"]):
        return None  # on the way back down from a bump: no plateau (issue 13, class 3)
    flat_change = float("nan")
    if quick:
        # the short wait needs a flat curve: the Theil-Sen slope of the last `patience` epochs
        # projects less than flat_gain of change over the next `patience` epochs
        qslope = theil_sen_slope(finite(x[max(0, h.n - th.patience):]))
        flat_change = -qslope * th.patience / abs(st["best"]) if st["best"] != 0 else 0.0
        if abs(flat_change) > th.flat_gain:
            return None  # still falling, or rising: flat means flat both ways (issue 13, class 1)
    # Evidence of flatness (issue 13, class 2): the upper confidence bound of the gain the
    # segment's trend projects over the next `patience` epochs must be below plateau_gain.
    # Its standard error (of a slope fitted to w equally spaced points, AR(1)-inflated) shrinks
    # as the flat segment grows, so a noisy curve waits longer: a noise-adaptive patience.
    se = st["sigma"] * np.sqrt(12.0 * inflation(th.autocorr) / max(fseg.size, 2) ** 3) * 1.1
    gain_hi = (-slope + th.plateau_ci_z * se) * scale
    if gain_hi > th.plateau_gain:
        return None  # a gain that matters is still possible: no evidence of a plateau yet
    ep = h.epochs
    name = _NAMES[metric]
    j0 = min(st["j_sig"], anchor)
    flat_txt = (f", with a flat trend ({-flat_change:+.1%} projected over the next {th.patience} epochs)"
                if wait < th.patience else "")
    ev = {"wait": int(wait), "patience": th.patience, "best_level": st["best"],
          "min_delta_used": st["delta"], "sigma": st["sigma"], "trend_z": z,
          "trend_window": w, "expected_gain": gain, "expected_gain_high": gain_hi,
          "flat_patience": th.flat_patience,
          "flat_change": flat_change, "last_lr_change_epoch": int(ep[c]) if c >= 0 else -1}
    first = float(finite(x)[0])
    level = median_of_last(x, th.window)
    if first > 0 and level <= th.converged_level * first:
        return _converged(h, th, metric, j0, first, level, st["S"], ev)
    # every number names what the chart shows (issue 13, class 8): the span starts at
    # start_epoch, the best-epoch marker sits at the lowest raw value
    b_ep = _best_epoch(h, metric)
    low_txt = ""
    if b_ep is not None:
        low = float(np.nanmin(np.where(np.isfinite(x), x, np.nan)))
        low_txt = (f"; its lowest value {_g(low)} was at epoch {b_ep}, "
                   f"{int(ep[-1]) - b_ep} epochs ago")
    msg = (f"{name} has not improved significantly since epoch {int(ep[j0])}{flat_txt} (smoothed "
           f"level {_g(level)}"
           + (f", {level / first:.0%} of its first value {_g(first)}" if first > 0 else "")
           + f"){low_txt}: training has plateaued.")
    advice = (f"Stop and {_keep_best(h, _best_epoch(h, metric))}, or lower the learning rate "
              "(e.g. by 10x) to squeeze out the rest")
    tr = h.cols.get("train_loss")
    if metric == "val_loss" and tr is not None and np.isfinite(tr[j0]) and np.isfinite(tr[-1]) and tr[-1] < tr[j0] * 0.9:
        advice += ("; training loss is still falling, so more epochs mostly fit the training set - "
                   "more data or regularisation would help more")
    advice += "."
    return Finding("plateau", "warning", int(ep[j0]), None, metric, msg, advice,
                   {**ev, "first_value": first, "level_now": level})


def _converged(h: _H, th: Thresholds, metric: str, j0: int, first: float, level: float,
               S: np.ndarray, ev: dict[str, Any]) -> Finding:
    """A plateau at a low loss (<= converged_level of its first value): the run converged.
    Where (the plateau start), how little the epochs since gained, what stopping there saves."""
    ep = h.epochs
    at_start = float(S[j0]) if np.isfinite(S[j0]) else level
    gained = (at_start - level) / abs(at_start) if at_start else 0.0
    saved = int(ep[-1] - ep[j0])
    msg = (f"{_NAMES[metric]} converged at {_g(level)} by epoch {int(ep[j0])} ({level / first:.0%} "
           f"of its first value {_g(first)}): the {saved} epochs since changed its level by "
           f"{-gained:+.1%} ({_g(at_start)} to {_g(level)}); stopping at epoch {int(ep[j0])} would "
           f"have saved {saved} epochs.")
    keep = _keep_best(h, _best_epoch(h, metric))
    advice = (f"Nothing to fix: training longer will not lower it. {keep[0].upper()}{keep[1:]}; "
              "to go lower, change the model or the data (capacity, more data, augmentation), or "
              "lower the learning rate (e.g. by 10x) for a last small gain.")
    return Finding("converged", "info", int(ep[j0]), None, metric, msg, advice,
                   {**ev, "first_value": first, "level_now": level, "level_at_start": at_start,
                    "gain_since_start": gained, "epochs_since_start": saved,
                    "converged_level": th.converged_level})


def _still_improving(h: _H, th: Thresholds, metric: str | None) -> Finding | None:
    if metric is None:
        return None
    h = h.only(metric)
    x = h.cols[metric]
    if not np.isfinite(x[-1]):
        return None
    f = finite(x)
    width = _trend_width(th)
    if f.size < max(6, th.window + 3):
        return None
    win = f[-width:]
    z, _ = _trend(x, th, width)
    if z >= -th.trend_z:
        return None
    k = max(1, min(th.window, win.size // 3))
    before, now = float(np.median(win[:k])), float(np.median(win[-k:]))
    sigma, phi, s_med = _level_noise(x, th)
    need = max(th.min_delta, th.min_rel_delta * abs(now), th.plateau_z * s_med)
    if before - now <= need:
        return None
    # the level must be at (or within noise of) its best: a curve that fell and turned up is not improving
    if now > float(np.nanmin(h.smooth(metric, th.window))) + need:
        return None
    fin_idx = np.nonzero(np.isfinite(x))[0]
    start = int(h.epochs[fin_idx[-win.size]])
    name = _NAMES[metric]
    return Finding("still_improving", "info", start, None, metric,
                   f"{name} is still falling at the last epoch ({_g(before)} to {_g(now)} over the last "
                   f"{win.size} epochs, trend z={z:.1f}): training longer should help.",
                   "Train for more epochs" + (" (resume from the last checkpoint)" if h.best_checkpoint
                                              else "") + ", or raise the learning rate if progress "
                   "is slow.",
                   {"level_before": before, "level_now": now, "trend_z": z, "window": int(win.size),
                    "sigma": sigma})


# ---------------------------------------------------------------- overfitting

def _rise(v: np.ndarray, e: int, th: Thresholds, S: np.ndarray,
          steps: np.ndarray) -> dict[str, Any] | None:
    """Is the validation level at row e-1 significantly above its minimum? Uses rows < e only."""
    ve = v[:e]
    fin = np.isfinite(ve)
    if fin.sum() < th.window + 1 or not fin[-1]:
        return None
    m = int(np.nanargmin(np.where(fin, ve, np.nan)))
    since = int(fin[m + 1:].sum())
    if since < th.overfit_min_epochs:
        return None
    best = float(np.nanmin(S[:e]))
    now = median_of_last(ve, th.window)
    sigma, phi, s_med = _level_noise(ve, th)
    # a minimum that a learning-rate step made (within `patience` epochs after it) is a sharp
    # low the loss settles back from by a few percent: such a rise needs more (class 3)
    before = steps[steps <= m]
    after_step = before.size > 0 and m - int(before[-1]) <= th.patience
    rise = th.overfit_step_rise if after_step else th.overfit_rise
    need = max(th.min_delta, rise * abs(best), th.overfit_z * s_med)
    gap = now - best
    if not gap > need:
        return None
    after = finite(ve[max(m + 1, e - th.noise_window):])
    z = float(mann_kendall_z(after, inflation(phi)))
    # a rise without a significant trend is confirmed by persistence: no new low for `patience`
    # epochs (what would make a plateau), no falling trend since the minimum, and none since the
    # rise's highest level either: a rise that is giving itself back is a bump (issue 13, class 3)
    persist = since >= th.patience and z >= 0 and not _falling_back(ve, S, m, e, phi)
    if z < th.trend_z and gap < 2 * need and not persist:
        return None
    return {"m": m, "best": best, "now": now, "gap": gap, "need": need, "sigma": sigma, "z": z,
            "since": since, "raw_min": float(ve[m]), "persist": bool(persist)}


def _since_peak(x: np.ndarray, S: np.ndarray, m: int, e: int) -> np.ndarray:
    """The finite values of rows < e from the highest smoothed level after row m (a minimum) on:
    the way back down from a rise, if it has begun."""
    rise = S[m + 1:e]
    if not np.isfinite(rise).any():
        return x[:0]
    return finite(x[m + 1 + int(np.nanargmax(rise)):e])


def _falling_back(ve: np.ndarray, S: np.ndarray, m: int, e: int, phi: float) -> bool:
    """Do the values since the rise's highest smoothed level after the minimum (row m) trend
    down (Mann-Kendall z < 0 over at least 3 of them)?"""
    recent = _since_peak(ve, S, m, e)
    return recent.size >= 3 and mann_kendall_z(recent, inflation(phi)) < 0


def _train_falling(tr: np.ndarray | None, m: int, e: int, th: Thresholds) -> tuple[bool, float, float]:
    """Has the training level (median of the last `window`) fallen below its level around row m
    by more than its noise? Returns (fell, level at m, level now)."""
    if tr is None:
        return False, float("nan"), float("nan")
    te = tr[:e]
    h = th.window // 2
    at_m = finite(te[max(0, m - h): m + h + 1])
    now_v = median_of_last(te, th.window)
    if at_m.size == 0 or not np.isfinite(now_v):
        return False, float("nan"), now_v
    at_m_v = float(np.median(at_m))
    _, _, s_med = _level_noise(te, th)
    tol = max(th.min_delta, th.overfit_z * s_med)
    return now_v < at_m_v - tol, at_m_v, now_v


def _overfitting(h: _H, th: Thresholds) -> tuple[Finding | None, dict[str, Any] | None]:
    """Returns (overfitting finding, the confirmed rise state used also for overconfidence)."""
    if not h.has("val_loss", 3) or h.epochs[-1] < th.start_from_epoch:
        return None, None
    h = h.only("val_loss")
    v = h.cols["val_loss"]
    S = h.smooth("val_loss", th.window)
    tr = h.cols.get("train_loss") if h.has("train_loss", 3) else None
    steps = _lr_steps(h)
    states = []
    for back in range(th.confirm):
        e = h.n - back
        if e < 2 or h.epochs[e - 1] < th.start_from_epoch:
            return None, None
        r = _rise(v, e, th, S, steps)
        if r is None:
            return None, None
        states.append(r)
    r = states[0]
    if _no_skill(h, r["best"], th):
        return None, None  # a rise from a minimum that was never trained (issue 13, class 5)
    ok, t_m, t_now = _train_falling(tr, r["m"], h.n, th)
    ep = h.epochs
    m_ep = int(ep[r["m"]])
    if not ok:
        return None, r
    rel = r["gap"] / abs(r["best"]) if r["best"] != 0 else float("inf")
    severity = "critical" if rel >= 0.5 else "warning"
    since_epochs = int(ep[-1] - m_ep)
    trend_txt = "kept falling" if t_now < t_m else "stayed flat"
    msg = (f"Validation loss has risen for {since_epochs} epochs since its minimum {_g(r['raw_min'])} at "
           f"epoch {m_ep} (now {_g(r['now'])}, +{rel:.0%}) while training loss {trend_txt}: "
           f"the model is overfitting.")
    advice = (f"Stop and {_keep_best(h, m_ep)}; to generalise better add weight "
              f"decay (e.g. 1e-4 to 1e-3) or dropout (0.2-0.5), use a smaller model, or get more "
              f"training data.")
    ev = {"min_epoch": m_ep, "min_val_loss": r["raw_min"], "best_level": r["best"], "level_now": r["now"],
          "rise": r["gap"], "rise_relative": rel, "rise_needed": r["need"], "sigma": r["sigma"],
          "trend_z": r["z"], "epochs_since_min": since_epochs, "train_loss_at_min": t_m,
          "train_loss_now": t_now}
    return Finding("overfitting", severity, m_ep, None, "val_loss", msg, advice, ev), r


def _overconfidence(h: _H, th: Thresholds, r: dict[str, Any] | None) -> Finding | None:
    if r is None or not h.has("val_acc", 3):
        return None
    h = h.only("val_loss")  # r's rows are the validation checks
    a = h.cols["val_acc"]
    m = r["m"]
    hw = th.window // 2
    at_m = finite(a[max(0, m - hw): m + hw + 1])
    now = median_of_last(a, th.window)
    if at_m.size == 0 or not np.isfinite(now):
        return None
    at_m_v = float(np.median(at_m))
    _, _, s_med = _level_noise(a, th)
    if not now - at_m_v > max(1e-9, s_med):
        return None
    m_ep = int(h.epochs[m])
    return Finding("overconfidence", "info", m_ep, None, "val_loss",
                   f"Validation loss has risen {_g(r['gap'])} above its minimum at epoch {m_ep} while "
                   f"validation accuracy still improved ({at_m_v:.3g} to {now:.3g}): the model is "
                   f"becoming overconfident on the examples it gets wrong.",
                   "If accuracy is what matters, keep training and select the checkpoint by accuracy; "
                   "otherwise add label smoothing (0.1), weight decay, or calibrate with temperature "
                   "scaling.",
                   {"min_epoch": m_ep, "val_acc_at_min": at_m_v, "val_acc_now": now, "rise": r["gap"]})


# ---------------------------------------------------------------- underfitting

def _underfitting(h: _H, th: Thresholds) -> Finding | None:
    if not h.has("train_loss", 3) or h.epochs[-1] < th.start_from_epoch:
        return None
    h = h.only("train_loss")
    tr = h.cols["train_loss"]
    st = _plateau_state(h, "train_loss", th)
    if st is None:
        return None
    wait = h.n - 1 - st["j0"]
    if wait < th.patience:
        return None
    f = finite(tr)
    first, now = float(f[0]), median_of_last(tr, th.window)
    z, w = _trend(tr, th, _trend_width(th))
    gain = -theil_sen_slope(f[-w:]) * th.patience / abs(now) if now else 0.0
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
        gap_txt = f" and validation loss is close to it ({_g(v_now)})"
        ev["val_now"] = v_now
    ep0 = int(h.epochs[st["j0"]])
    return Finding("underfitting", "warning", ep0, None, "train_loss",
                   f"Training loss has been flat at {_g(now)} since epoch {ep0}, still "
                   f"{now / first:.0%} of its first value {_g(first)}{gap_txt}: the model is underfitting.",
                   "Raise the learning rate (e.g. by 3-10x), use a larger model, train longer, or "
                   "reduce regularisation (weight decay, dropout); check the inputs are scaled.",
                   ev)


# ---------------------------------------------------------------- gradients

class _Layers:
    """Per-layer gradient norms for epochs <= the history's last epoch; rows converted lazily."""

    def __init__(self, frame: pd.DataFrame, last_epoch: int) -> None:
        ep = pd.to_numeric(frame["epoch"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(ep) & (ep <= last_epoch)
        rows = np.nonzero(ok)[0]
        order = rows[np.argsort(ep[rows], kind="stable")]
        e = ep[order]
        if e.size > 1:
            keep = np.append(e[1:] != e[:-1], True)
            order, e = order[keep], e[keep]
        self.frame = frame
        self.rows = order
        self.epochs = e.astype(np.int64)
        self.names = [c for c in frame.columns if c != "epoch"]

    def __len__(self) -> int:
        return int(self.rows.size)

    def values(self, lo: int, hi: int) -> np.ndarray:
        """Norms of rows lo..hi-1 (in epoch order) as a float array, non-numbers as NaN."""
        sub = self.frame.iloc[self.rows[lo:hi]][self.names]
        out = np.empty(sub.shape, dtype=float)
        for j, c in enumerate(self.names):
            col = sub[c]
            out[:, j] = (col.to_numpy(dtype=float, na_value=np.nan) if pd.api.types.is_numeric_dtype(col)
                         else pd.to_numeric(col, errors="coerce").to_numpy(dtype=float))
        return out


def _layer_frame(layers: pd.DataFrame | None, h: _H) -> _Layers | None:
    if layers is None or not isinstance(layers, pd.DataFrame) or layers.empty or "epoch" not in layers.columns:
        return None
    lf = _Layers(layers, int(h.epochs[-1]))
    return lf if len(lf) and lf.names else None


def _grad_series(h: _H) -> tuple[str, np.ndarray] | None:
    for c in ("grad_norm", "grad_norm_max"):
        if c in h.cols and (np.isfinite(h.cols[c]).sum() >= 2 or (~np.isnan(h.cols[c])).any()):
            return c, h.cols[c]
    return None


def _grad_rows(h: _H) -> _H:
    """The rows where the gradient norm the detectors read has data."""
    series = _grad_series(h)
    return h.only(series[0]) if series is not None else h


def _exploding(h: _H, th: Thresholds, lf: _Layers | None) -> Finding | None:
    h = _grad_rows(h)
    series = _grad_series(h)
    if series is None:
        return None
    metric, g = series
    f = th.grad_explode_factor
    gf = np.where(np.isfinite(g), g, np.nan)
    # the running median of the (up to) 10 epochs before; with fewer than 3 of them a spike
    # must be f^2 times that median (an epoch-2 jump by 10x can be ordinary; by 100x it is not)
    med = rolling_median(gf, 10, min_periods=1)
    base = np.concatenate(([np.nan], med[:-1]))
    count = np.concatenate(([0], np.cumsum(np.isfinite(gf))[:-1]))
    need = np.where(count >= 3, f, f * f) * base
    # growth by orders of magnitude: the level (median of 5) above f^2 times its lowest level before
    level = rolling_median(gf, 5, min_periods=3)
    low = np.fmin.accumulate(level)
    low_before = np.concatenate(([np.nan], low[:-1]))
    nonfinite = np.isinf(g)
    with np.errstate(invalid="ignore"):
        spike = g > need
        grown = (level > f * f * low_before) & (low_before > 0)
        ev_mask = nonfinite | spike | grown
    idx = np.nonzero(ev_mask)[0]
    if idx.size == 0:
        return None
    gaps = np.nonzero(np.diff(idx) > th.unstable_window)[0]
    i0 = idx[gaps[-1] + 1] if gaps.size else idx[0]
    by_growth = bool(grown[i0] and not spike[i0] and not nonfinite[i0])
    ref = low_before[i0] if by_growth else base[i0]
    with np.errstate(invalid="ignore"):
        high = ev_mask | ((g > f * ref) if np.isfinite(ref) else False)
    high[:i0] = False
    ongoing = bool(high[-1])
    last_high = int(np.nonzero(high)[0][-1]) if high.any() else int(i0)
    ep = h.epochs
    peak = float(np.nanmax(np.where(np.isnan(g[i0:]), -np.inf, g[i0:])))
    names: list[str] = []
    if lf is not None:
        k = int(np.searchsorted(lf.epochs, ep[i0]))
        if k < len(lf) and lf.epochs[k] == ep[i0] and k >= 3:
            vals = lf.values(max(0, k - 10), k + 1)
            row, ref_rows = vals[-1], vals[:-1]
            base_l = _col_nanmedian(ref_rows)
            ratio = row / base_l
            hit = np.isinf(row) | (ratio > th.grad_explode_factor)
            order = np.argsort(-np.where(np.isfinite(ratio), ratio, np.inf))
            names = [lf.names[j] for j in order if hit[j]]
    layer_txt = f" (layers {_names(names)})" if names else ""
    ref_txt = (f"{_g(peak / ref)}x its {'lowest level' if by_growth else 'recent median'} {_g(ref)}"
               if np.isfinite(ref) and ref > 0 and np.isfinite(peak) else "a non-finite value")
    verb = "has grown" if by_growth else "jumped"
    msg = (f"{_NAMES[metric]} {verb} to {_g(peak)} at epoch {int(ep[i0])}, {ref_txt}{layer_txt}: "
           f"gradients are exploding.")
    sev = "critical" if (not np.isfinite(peak)) or ongoing else "warning"
    return Finding("exploding_gradients", sev, int(ep[i0]), None if ongoing else int(ep[last_high]), metric, msg,
                   "Add gradient clipping (clip_grad_norm_ with max norm 1.0), lower the learning rate, "
                   "or add a warm-up; check for un-normalised inputs.",
                   {"peak": peak, "reference_median": float(ref) if np.isfinite(ref) else float("nan"),
                    "factor": th.grad_explode_factor, "layers": names[:20]})


def _vanishing(h: _H, th: Thresholds, lf: _Layers | None) -> Finding | None:
    h = _grad_rows(h)
    ep = h.epochs
    # per layer: layers whose recent norm is a tiny fraction of the largest layer's
    if lf is not None:
        vals = lf.values(max(0, len(lf) - th.window), len(lf))
        recent = _col_nanmedian(vals)
        okc = np.isfinite(recent)
        top = float(recent[okc].max()) if okc.any() else float("nan")
        if okc.sum() >= 2 and np.isfinite(top) and top > 0:
            small = okc & (recent < th.grad_vanish_factor * top)
            if small.any():
                idx = [j for j in np.argsort(recent) if small[j]]
                names = [lf.names[j] for j in idx]
                since = _since_small(lf, idx[0], th)
                return Finding("vanishing_gradients", "warning", int(since), None, "layers",
                               f"Gradients of {len(names)} layer{'s' if len(names) > 1 else ''} ({_names(names)}) are below "
                               f"{_g(th.grad_vanish_factor)}x the largest layer's ({_g(top)}) over the "
                               f"last {min(th.window, len(lf))} epochs: gradients are vanishing.",
                               "Use ReLU/GELU instead of sigmoid/tanh, add normalisation (BatchNorm/"
                               "LayerNorm) or residual connections, check the initialisation; a layer "
                               "at exactly 0 may be frozen or unused.",
                               {"layers": names[:20], "largest_layer_norm": top,
                                "smallest_ratio": float(recent[idx[0]] / top)})
    series = _grad_series(h)
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
                       f"{_NAMES[metric]} fell to {_g(now)}, below {_g(th.grad_vanish_factor)}x its peak "
                       f"{_g(peak)}, while training loss is still {_g(t_now)} ({t_now / t_first:.0%} of its "
                       f"first value): gradients are vanishing.",
                       "Use ReLU/GELU instead of sigmoid/tanh, add normalisation or residual connections, "
                       "check the initialisation and raise the learning rate.",
                       {"grad_now": now, "grad_peak": peak, "train_now": t_now, "train_first": t_first})
    return None


def _col_nanmedian(vals: np.ndarray) -> np.ndarray:
    """Median of the finite values of each column; NaN for a column without any (no warning)."""
    out = np.full(vals.shape[1], np.nan)
    fin = np.isfinite(vals)
    ok = fin.any(axis=0)
    if ok.any():
        out[ok] = np.nanmedian(np.where(fin[:, ok], vals[:, ok], np.nan), axis=0)
    return out


def _since_small(lf: _Layers, j: int, th: Thresholds) -> int:
    """First epoch of the final run of epochs in which layer j was below the vanishing ratio."""
    lo = max(0, len(lf) - th.noise_window)
    vals = lf.values(lo, len(lf))
    top = np.nanmax(np.where(np.isfinite(vals), vals, np.nan), axis=1)
    small = vals[:, j] < th.grad_vanish_factor * top
    i = len(small) - 1
    while i > 0 and small[i - 1]:
        i -= 1
    return int(lf.epochs[lo + i])


def _names(names: list[str], k: int = 4) -> str:
    if len(names) <= k:
        return ", ".join(names)
    return ", ".join(names[:k]) + f" and {len(names) - k} more"


# ---------------------------------------------------------------- public API

def diagnose(history: pd.DataFrame, thresholds: Thresholds | None = None,
             layers: pd.DataFrame | None = None, *,
             best_checkpoint: str | None = None,
             chance_loss: float | None = None) -> list[Finding]:
    """Diagnose a training history.

    Args:
        history (pandas.DataFrame): one row per epoch, column ``epoch`` (1-based) and any of
            train_loss, val_loss, train_acc, val_acc, grad_norm, grad_norm_max, lr. Other
            columns are ignored; a missing column switches off the detectors that need it.
            Values may be NaN or infinite.
        thresholds (Thresholds): tunables; None means the defaults.
        layers (pandas.DataFrame): optional per-layer gradient norms, column ``epoch`` and one
            column per parameter tensor. Rows after the history's last epoch are ignored.
        best_checkpoint (str): the file that holds the run's best weights (the trainer's
            "best.pt"), named in the advice; None (own loops, imports): the advice names the
            best epoch and assumes no checkpoint.
        chance_loss (float): the loss of a model that learned nothing (ln K for K classes under
            cross-entropy, the target's variance under MSE; run.json's data.chance_loss), the
            scale for divergences the history cannot show and for minima that were never a
            trained state. None: not known, those rules are off.

    Returns:
        At most one Finding per kind, in the order of `KINDS`. An empty history gives [], a
        one-row history at most a divergence (its loss is already NaN or infinite). Never
        raises on NaN/inf values.
    """
    th = thresholds if thresholds is not None else Thresholds()
    if not isinstance(th, Thresholds):
        raise TypeError(f"thresholds must be a Thresholds or None, got {type(th).__name__}")
    chance = _checked_chance(chance_loss)
    with np.errstate(all="ignore"):  # NaN/inf/overflow are data here, not errors
        return _diagnose(history, th, layers, best_checkpoint, chance)


def _checked_chance(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"chance_loss must be a finite number > 0 (ln K for K classes, the "
                         f"target variance for MSE) or None, got {value!r}")
    return float(value)


def _diagnose(history: pd.DataFrame, th: Thresholds, layers: pd.DataFrame | None,
              best_checkpoint: str | None = None, chance: float | None = None) -> list[Finding]:
    h = _prepare(history)
    if h is None:
        return []
    h.best_checkpoint = best_checkpoint or None
    h.chance = chance
    if h.n == 1:  # one epoch shows no trend, but a first epoch that is already NaN diverged
        return [f] if (f := _divergence(h, th)) is not None else []
    out: dict[str, Finding | None] = {}
    lf = _layer_frame(layers, h)
    out["divergence"] = _divergence(h, th)
    out["exploding_gradients"] = _exploding(h, th, lf)
    out["vanishing_gradients"] = _vanishing(h, th, lf)
    out["unstable"] = _unstable(h, th)
    diverged = out["divergence"] is not None and out["divergence"].ongoing
    if not diverged:
        of, rise = _overfitting(h, th)
        out["overfitting"] = of
        out["overconfidence"] = _overconfidence(h, th, rise if of is not None else None)
        out["underfitting"] = _underfitting(h, th)
        metric = _monitored(h)
        unstable_now = out["unstable"] is not None and out["unstable"].ongoing
        if of is None:
            pl = _plateau(h, th, metric, unstable_now)  # a plateau, or a run that converged
            if pl is not None:
                out[pl.kind] = pl
            elif not unstable_now:
                out["still_improving"] = _still_improving(h, th, metric)
    return [f for k in KINDS if (f := out.get(k)) is not None]


def should_stop(history: pd.DataFrame, kinds: Iterable[str] = ("overfitting", "plateau"),
                thresholds: Thresholds | None = None, *,
                best_checkpoint: str | None = None,
                chance_loss: float | None = None) -> Finding | None:
    """The finding that should stop training now, or None.

    Called by the trainer after each epoch with the history so far. A finding is
    *actionable* when its kind is one of `kinds` and it is ongoing at the last epoch
    (end_epoch is None): the overfitting rise has been confirmed on `confirm` consecutive
    epochs, or the plateau's wait has reached `patience`, or the loss is non-finite /
    exploded for `diverge_epochs` epochs. When several are actionable the first in
    `KINDS` order wins (divergence before overfitting before plateau).

    Args:
        kinds: any of "overfitting", "plateau", "divergence"; "plateau" also stops on a
            "converged" finding (a plateau at a low loss, see STOP_ALSO).
    """
    return stopping_finding(diagnose(history, thresholds, best_checkpoint=best_checkpoint,
                                     chance_loss=chance_loss), kinds)


def stopping_finding(findings: Iterable[Finding],
                     kinds: Iterable[str] = ("overfitting", "plateau")) -> Finding | None:
    """`should_stop`'s choice among findings `diagnose` already made (in its order): the first
    ongoing one of `kinds`, or None. For a caller that also shows those findings."""
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in STOP_KINDS]
    if bad:
        raise ValueError(f"kinds must be among {', '.join(STOP_KINDS)}, got {', '.join(map(repr, bad))}")
    covered = set(kinds).union(*(STOP_ALSO.get(k, ()) for k in kinds))
    return next((f for f in findings if f.kind in covered and f.ongoing), None)
