"""What several detectors measure alike: the noise level of a series, learning-rate steps,
trend tests, the plateau state of a loss, the chance level. Pure functions of a `History`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .history import History, num
from .stats import inflation, last_finite, level_sd, mann_kendall_z, noise
from .thresholds import Thresholds

#: A learning-rate change by this factor (or more) in one epoch is a step (1.999: halving counts).
LR_STEP = 1.999

#: Rows a blockwise pass reads at a time: its float temporaries are 0.5 MB each, where whole
#: columns' are 8 MB for a million epochs.
BLOCK = 1 << 16


#: Epochs at the start left out of the noise estimate (when 8 or more others exist): the steep
#: initial fall of a loss inflates second differences there without being noise.
NOISE_SKIP = 3


def level_noise(x: np.ndarray, th: Thresholds) -> tuple[float, float, float]:
    """(sigma, phi, sd of a window-median level) from the trailing noise window."""
    # (the values it may skip and the window: the tail holds every finite value, or the
    # window lies after the first NOISE_SKIP of them)
    f = last_finite(x, th.noise_window + NOISE_SKIP)
    if f.size >= NOISE_SKIP + 8:
        f = f[NOISE_SKIP:]  # the first epochs' steep fall is a transient, not noise
    f = f[-th.noise_window:]
    phi = th.autocorr
    sigma = noise(f, phi)
    if not np.isfinite(sigma):
        sigma = 0.0
    return sigma, phi, level_sd(sigma, phi, th.window)


def lr_steps(h: History) -> np.ndarray:
    """Row indices where a learning-rate *step* lands (a change by a factor of 2 or more from
    one epoch to the next: step decays, ReduceLROnPlateau cuts, restarts). Smooth schedules
    (cosine, exponential) change the rate every epoch by a few percent; those are not steps."""
    lr = h.cols.get("lr")
    if lr is None:
        return np.zeros(0, dtype=np.int64)
    steps = [np.zeros(0, dtype=np.int64)]
    for s in range(0, lr.size - 1, BLOCK):  # (a block at a time: its temporaries stay small)
        e = min(s + BLOCK, lr.size - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            a, b = np.abs(lr[s:e]), np.abs(lr[s + 1:e + 1])
            hi = np.maximum(a, b)
            ch = (hi >= LR_STEP * np.minimum(a, b)) & (hi > 0)
        ch &= np.isfinite(a) & np.isfinite(b)
        steps.append(np.nonzero(ch)[0] + (s + 1))
    return np.concatenate(steps)


def last_lr_change(h: History) -> int:
    """Row index of the last learning-rate step, or -1."""
    steps = lr_steps(h)
    return int(steps[-1]) if steps.size else -1


def trend(x: np.ndarray, th: Thresholds, width: int) -> tuple[float, int]:
    f = last_finite(x, width)
    return float(mann_kendall_z(f, inflation(th.autocorr))), int(f.size)


def trend_width(th: Thresholds) -> int:
    return max(2 * th.patience, 10)


def plateau_state(h: History, name: str, th: Thresholds) -> dict[str, Any] | None:
    """Where the smoothed level of a column last improved significantly, and the numbers used."""
    x = h.cols[name]
    fin = np.isfinite(x)
    if fin.sum() < 3 or not fin[-1]:
        return None
    S = h.smooth(name, th.window)
    fs = np.isfinite(S)
    Sf = S if fs.all() else np.where(fs, S, np.inf)
    del fs
    C = np.minimum.accumulate(Sf)  # the best smoothed level up to each row
    best = float(C[-1])
    sigma, phi, s_med = level_noise(x, th)
    delta = max(th.min_delta, th.min_rel_delta * abs(best), th.plateau_z * s_med)
    # the lowest smoothed level after each row (but the last: _first_settled)
    after = np.minimum.accumulate(Sf[:0:-1])[::-1]
    del Sf
    j0 = _first_settled(after, C, delta)
    # where *significant* improvement stopped (noise-scaled margin): the reported start
    delta_sig = max(delta, th.plateau_start_z * s_med)
    j_sig = _first_settled(after, C, delta_sig)
    return {"j0": j0, "j_sig": j_sig, "best": best, "delta": delta, "sigma": sigma, "phi": phi, "S": S}


def _first_settled(after: np.ndarray, C: np.ndarray, delta: float) -> int:
    """The first row j whose later levels never go below its best C[j] by more than delta
    (after[j]: the lowest level after row j). Nothing comes after the last row: it settles
    unless C[-1] - delta is NaN, and then row 0 (np.argmax of no True)."""
    for s in range(0, after.size, BLOCK):  # (a block at a time, and the first found ends it)
        e = min(s + BLOCK, after.size)
        ok = after[s:e] >= C[s:e] - delta
        if ok.any():
            return s + int(np.argmax(ok))
    return C.size - 1 if np.inf >= C[-1] - delta else 0


#: The most values `since_peak` returns (the last ones): the trend tests run on them, and
#: Theil-Sen's slope costs O(n^2) (a plateau of 200,000 epochs after a bump would take minutes;
#: stats.theil_sen_slope refuses it). Over 3x the longest run of the corpus (300 epochs).
SINCE_PEAK_MAX = 1_000


def since_peak(x: np.ndarray, S: np.ndarray, m: int, e: int) -> np.ndarray:
    """The finite values of rows < e from the highest smoothed level after row m (a minimum) on,
    at most the last SINCE_PEAK_MAX of them: the way back down from a rise, if it has begun."""
    rise = S[m + 1:e]
    fin = np.isfinite(rise)
    if not fin.any():
        return x[:0]
    # (np.nanargmax copies the whole stretch; a level without NaN needs no copy)
    top = int(np.argmax(rise)) if fin.all() else int(np.nanargmax(rise))
    return last_finite(x[m + 1 + top:e], SINCE_PEAK_MAX)


def chance_txt(h: History) -> str:
    return (f"the chance level {num(h.chance)} (the loss of a model that learned nothing)"
            if h.chance is not None else "")


def at_chance(x: np.ndarray | float, h: History, th: Thresholds) -> np.ndarray:
    """Per value: at the chance level, chance_level x to chance_explode x the chance-level loss
    (a model without skill; a loss far above it is an overconfident or exploded model, which
    may still predict well). All False when the chance level is not known."""
    x = np.asarray(x, dtype=float)
    if h.chance is None:
        return np.zeros(x.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return (x >= th.chance_level * h.chance) & (x < th.chance_explode * h.chance)


def no_skill(h: History, best_level: float, th: Thresholds) -> bool:
    """Was the best (smoothed) level of a loss at the chance level (at_chance), so never a
    trained state? (One far above it is an overconfident model, often a trained one.)
    False when the chance-level loss is not known: a first value is no proxy (a fine-tuned
    model starts trained)."""
    return bool(at_chance(best_level, h, th))


def monitored(h: History) -> str | None:
    if h.has("val_loss", 3):
        return "val_loss"
    if h.has("train_loss", 3):
        return "train_loss"
    return None
