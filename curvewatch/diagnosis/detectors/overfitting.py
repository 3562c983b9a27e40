"""`overfitting`: the validation loss rose significantly above its minimum while the training loss
kept falling."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..findings import Finding
from ..history import History, keep_best, num
from ..signals import level_noise, lr_steps, no_skill, since_peak
from ..stats import finite, inflation, mann_kendall_z, median, median_of_last
from ..thresholds import Thresholds
from .spec import Context, Spec


def _rise(v: np.ndarray, e: int, th: Thresholds, S: np.ndarray,
          steps: np.ndarray) -> dict[str, Any] | None:
    """Is the validation level at row e-1 significantly above its minimum? Uses rows < e only."""
    ve = v[:e]
    fin = np.isfinite(ve)
    if fin.sum() < th.window + 1 or not fin[-1]:
        return None
    # the lowest finite value (np.nanargmin would copy ve once more)
    m = int(np.argmin(ve)) if fin.all() else int(np.argmin(np.where(fin, ve, np.inf)))
    since = int(fin[m + 1:].sum())
    if since < th.overfit_min_epochs:
        return None
    best = float(np.nanmin(S[:e]))
    now = median_of_last(ve, th.window)
    sigma, phi, s_med = level_noise(ve, th)
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
    # Two stages (issue 13, class 3): a rise above the needed amount is possible overfitting. It
    # is confirmed only at the size the hindsight label calls overfitting (`material`: the 5% and
    # 4 noise units of eval/labels.py; a 3-5% rise with a significant trend is how a bump begins
    # as often as overfitting, so it stays possible until it grows), and only with evidence that
    # it lasts: a significant rising trend since the minimum (overfit_trend_z), persistence (no
    # new low for overfit_patience epochs, no falling trend since the minimum, the median of those
    # epochs above the needed rise: a cluster of 3 high values on a flat level lifts a 5-epoch
    # median, not a 10-epoch one) or its size (overfit_clear_factor times the needed amount).
    material = max(need, th.overfit_confirm_rise * abs(best), th.overfit_confirm_z * s_med)
    big = gap >= th.overfit_clear_factor * need
    # never while a rise under overfit_clear_factor x the needed amount gives itself back since
    # its highest level: that is a bump, often followed by a deeper minimum
    back = not big and _falling_back(ve, S, m, e, phi)
    # nor, however big, while the values since the minimum trend down significantly: a level that
    # a spike lifted and that has been recovering since is no overfitting (the rise only looks big
    # once the spike leaves the noise window and the needed rise shrinks)
    receding = z <= -th.overfit_trend_z
    persist = (since >= th.overfit_patience and z >= 0
               and median_of_last(ve, th.overfit_patience) - best >= need)
    lasting = big or z >= th.overfit_trend_z or persist
    confirmed = (big or gap >= material) and not back and not receding and lasting
    return {"m": m, "best": best, "now": now, "gap": gap, "need": need, "sigma": sigma, "z": z,
            "since": since, "raw_min": float(ve[m]), "persist": bool(persist), "confirmed": bool(confirmed)}


def _falling_back(ve: np.ndarray, S: np.ndarray, m: int, e: int, phi: float) -> bool:
    """Do the values since the rise's highest smoothed level after the minimum (row m) trend
    down (Mann-Kendall z < 0 over at least 3 of them)?"""
    recent = since_peak(ve, S, m, e)
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
    at_m_v = median(at_m)
    _, _, s_med = level_noise(te, th)
    tol = max(th.min_delta, th.overfit_z * s_med)
    return now_v < at_m_v - tol, at_m_v, now_v


def _overfitting(h: History, th: Thresholds) -> Finding | None:
    """A confirmed rise of the validation loss while the training loss kept falling, or None."""
    if not h.has("val_loss", 3) or h.epochs[-1] < th.start_from_epoch:
        return None
    h = h.only("val_loss")
    v = h.cols["val_loss"]
    S = h.smooth("val_loss", th.window)
    tr = h.cols.get("train_loss") if h.has("train_loss", 3) else None
    steps = lr_steps(h)
    states = []
    for back in range(th.confirm):
        e = h.n - back
        if e < 2 or h.epochs[e - 1] < th.start_from_epoch:
            return None
        r = _rise(v, e, th, S, steps)
        if r is None:
            return None
        states.append(r)
    r = states[0]
    confirmed = all(s["confirmed"] for s in states)
    if no_skill(h, r["best"], th):
        return None  # a rise from a minimum that was never trained (issue 13, class 5)
    ok, t_m, t_now = _train_falling(tr, r["m"], h.n, th)
    ep = h.epochs
    m_ep = int(ep[r["m"]])
    if not ok:
        return None
    if not confirmed:
        return _possible(h, r, m_ep)
    rel = r["gap"] / abs(r["best"]) if r["best"] != 0 else float("inf")
    severity = "critical" if rel >= 0.5 else "warning"
    since_epochs = int(ep[-1] - m_ep)
    trend_txt = "kept falling" if t_now < t_m else "stayed flat"
    msg = (f"Validation loss has risen for {since_epochs} epochs since its minimum {num(r['raw_min'])} at "
           f"epoch {m_ep} (now {num(r['now'])}, +{rel:.0%}) while training loss {trend_txt}: "
           f"the model is overfitting.")
    advice = (f"Stop and {keep_best(h, m_ep)}; to generalise better add weight "
              f"decay (e.g. 1e-4 to 1e-3) or dropout (0.2-0.5), use a smaller model, or get more "
              f"training data.")
    ev = {"min_epoch": m_ep, "min_val_loss": r["raw_min"], "best_level": r["best"], "level_now": r["now"],
          "rise": r["gap"], "rise_relative": rel, "rise_needed": r["need"], "sigma": r["sigma"],
          "trend_z": r["z"], "epochs_since_min": since_epochs, "train_loss_at_min": t_m,
          "train_loss_now": t_now}
    return Finding("overfitting", severity, m_ep, None, "val_loss", msg, advice, ev)


def _possible(h: History, r: dict[str, Any], m_ep: int) -> Finding:
    """The rise is there but not yet the evidence that it lasts (issue 13, class 3): info."""
    rel = r["gap"] / abs(r["best"]) if r["best"] != 0 else float("inf")
    since_epochs = int(h.epochs[-1] - m_ep)
    msg = (f"Validation loss is {rel:.0%} above its minimum {num(r['raw_min'])} at epoch {m_ep} "
           f"({since_epochs} epochs ago, now {num(r['now'])}) while training loss kept falling: "
           f"possibly the start of overfitting, or a bump that will pass.")
    advice = (f"Nothing to do yet: the run is not stopped for this. If the rise lasts it becomes "
              f"overfitting; {keep_best(h, m_ep)} in any case.")
    ev = {"min_epoch": m_ep, "min_val_loss": r["raw_min"], "best_level": r["best"], "level_now": r["now"],
          "rise": r["gap"], "rise_relative": rel, "rise_needed": r["need"], "sigma": r["sigma"],
          "trend_z": r["z"], "epochs_since_min": since_epochs}
    return Finding("possible_overfitting", "info", m_ep, None, "val_loss", msg, advice, ev)


def detect(ctx: Context) -> Finding | None:
    return _overfitting(ctx.h, ctx.th)


SPEC = Spec(kinds=("overfitting", "possible_overfitting"), columns=("val_loss", "train_loss", "lr"), suppressed_by=("divergence",), stop_rank=1, span=True,
            thresholds=('confirm', 'min_delta', 'noise_window', 'overfit_clear_factor', 'overfit_confirm_rise',
                        'overfit_confirm_z', 'overfit_min_epochs', 'overfit_patience', 'overfit_rise', 'overfit_step_rise', 'overfit_trend_z', 'overfit_z',
                        'patience', 'start_from_epoch', 'window'),
            detect=detect)
