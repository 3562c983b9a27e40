"""`plateau` (a problem: warning) or `converged` (a plateau at a low loss: info): the monitored loss
has set no significant new low for `patience` epochs (or `flat_patience` when it is flat both ways;
`gap_patience` while the training loss still falls, the usual start of overfitting), and is not rising."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..findings import Finding
from ..history import NAMES, History, best_epoch, keep_best, num
from ..signals import last_lr_change, monitored, no_skill, plateau_state, since_peak, trend
from ..stats import (
    finite,
    inflation,
    last_finite,
    mann_kendall_z,
    median,
    median_of_last,
    theil_sen_slope,
)
from ..thresholds import Thresholds
from .spec import Context, Spec

#: Mann-Kendall z below which the values since a rise's peak count as falling back (one-sided
#: ~16%: weak evidence suffices, as it only delays a plateau while the projected gain matters).
_BACK_Z = 1.0


def _back_from_bump(x: np.ndarray, S: np.ndarray, low: int, n: int, th: Thresholds,
                    best: float) -> bool:
    """Is the loss falling back after a rise since its last low (row `low`): a falling trend
    (Mann-Kendall z < -1) since the highest smoothed level, projecting more than plateau_gain
    over the next patience epochs?"""
    recent = since_peak(x, S, low, n)
    if recent.size < 4 or best == 0:
        return False
    gain = -theil_sen_slope(recent) * th.patience / abs(best)
    return mann_kendall_z(recent, inflation(th.autocorr)) < -_BACK_Z and gain > th.plateau_gain


def _gap_growing(h: History, th: Thresholds, metric: str, best: float) -> bool:
    """Issue 13: a flat validation loss while the training loss still falls is the usual start
    of overfitting (the generalisation gap grows), not yet a plateau. True when the training
    loss's last trend_window values fall significantly (Mann-Kendall z < -trend_z) and their
    Theil-Sen slope projects a fall of more than plateau_gain of the validation level `best`
    over the next patience epochs."""
    tr = h.cols.get("train_loss")
    if metric != "val_loss" or tr is None or best == 0:
        return False
    seg = last_finite(tr, th.trend_window)
    if seg.size < th.patience or mann_kendall_z(seg, inflation(th.autocorr)) >= -th.trend_z:
        return False
    return -theil_sen_slope(seg) * th.patience / abs(best) > th.plateau_gain


def _last_record(x: np.ndarray, min_delta: float) -> int:
    """Row of the last value below every value before it by more than min_delta (row 0 if
    finite: nothing came before), or -1. Non-finite values never count."""
    fin = np.isfinite(x)
    xf = x if fin.all() else np.where(fin, x, np.inf)
    del fin
    prev_min = np.minimum.accumulate(xf[:-1])
    prev_min -= min_delta  # (in place: two arrays of n at most)
    rec = np.nonzero(xf[1:] < prev_min)[0]
    if rec.size:
        return int(rec[-1]) + 1
    return 0 if xf[0] < np.inf - min_delta else -1


def _creep_start(x: np.ndarray, h: History, th: Thresholds, st: dict[str, Any], first: int) -> int:
    """Issue 13, class 2, a wait that never comes: a noise-free curve sets a new low every few
    epochs by amounts too small to matter. Row where the last 2*patience epochs (all after row
    `first`: start_from_epoch, the last learning-rate step) begin when they fall steadily (a
    significant Mann-Kendall trend) at a level of at most creep_level of the first value, and
    the upper confidence bound of the gain their Theil-Sen trend projects over the next
    patience epochs is at most flat_gain; else -1."""
    lo = h.n - 2 * th.patience
    if lo <= first or st["best"] == 0:
        return -1
    seg = finite(x[lo:])
    if seg.size < 2 * th.patience or not median(seg[-th.window:]) <= th.creep_level * finite(x)[0]:
        return -1  # (a creep at a high loss can be a slow start that speeds up: the wait judges it)
    if mann_kendall_z(seg, inflation(th.autocorr)) >= -th.trend_z:
        return -1  # not a steady fall: noise or a rise, which the wait judges
    se = st["sigma"] * np.sqrt(12.0 * inflation(th.autocorr) / seg.size ** 3) * 1.1
    gain_hi = (-theil_sen_slope(seg) + th.plateau_ci_z * se) * th.patience / abs(st["best"])
    return lo if gain_hi <= th.flat_gain else -1


def _plateau(h: History, th: Thresholds, metric: str | None, unstable: bool = False) -> Finding | None:
    if metric is None or h.epochs[-1] < th.start_from_epoch:
        return None
    h = h.only(metric)
    x = h.cols[metric]
    st = plateau_state(h, metric, th)
    if st is None:
        return None
    if no_skill(h, st["best"], th):
        return None  # flat at the untrained level: a saddle or a slow start (issue 13, class 5)
    j0 = st["j0"]
    c = last_lr_change(h)
    if c >= 0 and h.n - 1 < c + th.cooldown:
        return None  # give a learning-rate step `cooldown` epochs to show its effect
    anchor = j0
    # a raw record also resets the wait, as in Keras, when it beats the lowest value before it by
    # the margin a smoothed improvement needs (min_delta, min_rel_delta of the best): an absolute
    # min_delta alone means nothing at a loss of 0.001 or 10, and tiny noisy lows kept restarting it
    rec = _last_record(x, st["delta"])
    if rec >= 0:
        anchor = max(anchor, rec)
    anchor = max(anchor, int(np.searchsorted(h.epochs, th.start_from_epoch)))
    wait = h.n - 1 - anchor
    patience, hold = th.patience, False
    if th.gap_patience > patience and wait >= th.flat_patience and _gap_growing(h, th, metric, st["best"]):
        # the gap grows: wait longer, for a rise to show or not; no short flat wait
        patience, hold = th.gap_patience, True
    if hold and median_of_last(x, th.window) - st["best"] > th.overfit_rise * abs(st["best"]):
        return None  # the gap grows and the level has left its best: overfitting's question
    quick = th.flat_patience <= wait < patience and not unstable and not hold
    creep_from = -1
    if wait < patience and not unstable:
        since = max(int(np.searchsorted(h.epochs, th.start_from_epoch)), c, 0)
        creep_from = _creep_start(x, h, th, st, since)
        quick = quick and creep_from < 0  # a creep is a significant fall: judged as after the wait
    if wait < patience and not quick and creep_from < 0:
        return None
    # trend tests over the last trend_window epochs (the plateau segment if it is longer)
    seg = x[max(0, min(j0, h.n - th.trend_window), h.n - th.noise_window):]
    z, w = trend(seg, th, seg.size)
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
    if z > th.trend_z and -gain > th.plateau_gain:
        return None  # rising significantly, by an amount that matters: flat means flat both ways
    ep = h.epochs
    name = NAMES[metric]
    j0 = min(st["j_sig"], anchor)
    flat_txt = (f", with a flat trend ({-flat_change:+.1%} projected over the next {th.patience} epochs)"
                if quick else "")
    if creep_from >= 0:  # new lows every few epochs, each too small to matter
        j0 = creep_from
        flat_txt = (f", only creeping down ({gain:.2%} projected over the next {th.patience} epochs, "
                    f"at most {gain_hi:.2%})")
    ev = {"wait": int(wait), "patience": patience, "best_level": st["best"],
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
    b_ep = best_epoch(h, metric)
    low_txt = ""
    if b_ep is not None:
        low = float(np.nanmin(np.where(np.isfinite(x), x, np.nan)))
        low_txt = (f"; its lowest value {num(low)} was at epoch {b_ep}, "
                   f"{int(ep[-1]) - b_ep} epochs ago")
    what = "has gained little" if creep_from >= 0 else "has not improved significantly"
    msg = (f"{name} {what} since epoch {int(ep[j0])}{flat_txt} (smoothed "
           f"level {num(level)}"
           + (f", {level / first:.0%} of its first value {num(first)}" if first > 0 else "")
           + f"){low_txt}: training has plateaued.")
    advice = (f"Stop and {keep_best(h, best_epoch(h, metric))}, or lower the learning rate "
              "(e.g. by 10x) to squeeze out the rest")
    tr = h.cols.get("train_loss")
    if metric == "val_loss" and tr is not None and np.isfinite(tr[j0]) and np.isfinite(tr[-1]) and tr[-1] < tr[j0] * 0.9:
        advice += ("; training loss is still falling, so more epochs mostly fit the training set - "
                   "more data or regularisation would help more")
    advice += "."
    return Finding("plateau", "warning", int(ep[j0]), None, metric, msg, advice,
                   {**ev, "first_value": first, "level_now": level})


def _converged(h: History, th: Thresholds, metric: str, j0: int, first: float, level: float,
               S: np.ndarray, ev: dict[str, Any]) -> Finding:
    """A plateau at a low loss (<= converged_level of its first value): the run converged.
    Where (the plateau start), how little the epochs since gained, what stopping there saves."""
    ep = h.epochs
    at_start = float(S[j0]) if np.isfinite(S[j0]) else level
    gained = (at_start - level) / abs(at_start) if at_start else 0.0
    saved = int(ep[-1] - ep[j0])
    msg = (f"{NAMES[metric]} converged at {num(level)} by epoch {int(ep[j0])} ({level / first:.0%} "
           f"of its first value {num(first)}): the {saved} epochs since changed its level by "
           f"{-gained:+.1%} ({num(at_start)} to {num(level)}); stopping at epoch {int(ep[j0])} would "
           f"have saved {saved} epochs.")
    keep = keep_best(h, best_epoch(h, metric))
    advice = (f"Nothing to fix: training longer will not lower it. {keep[0].upper()}{keep[1:]}; "
              "to go lower, change the model or the data (capacity, more data, augmentation), or "
              "lower the learning rate (e.g. by 10x) for a last small gain.")
    return Finding("converged", "info", int(ep[j0]), None, metric, msg, advice,
                   {**ev, "first_value": first, "level_now": level, "level_at_start": at_start,
                    "gain_since_start": gained, "epochs_since_start": saved,
                    "converged_level": th.converged_level})


def detect(ctx: Context) -> Finding | None:
    return _plateau(ctx.h, ctx.th, monitored(ctx.h), ctx.ongoing("unstable"))


SPEC = Spec(kinds=("plateau", "converged"), columns=("val_loss", "train_loss", "lr"), reads=("unstable",), suppressed_by=("divergence", "overfitting", "possible_overfitting"), stop_rank=2, stops_too=("converged",), span=True,
            thresholds=('autocorr', 'converged_level', 'cooldown', 'creep_level', 'flat_gain', 'flat_patience', 'gap_patience', 'noise_window', 'overfit_rise', 'patience', 'plateau_ci_z', 'plateau_gain', 'start_from_epoch', 'trend_window', 'trend_z', 'window'),
            detect=detect)
