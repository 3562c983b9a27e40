"""Labels for the real-curve corpus, from the FULL curves (hindsight), by the definitions in
docs/diagnosis.md ("Labels"). They look at the whole run with centred smoothing; the
detectors see only the rows up to each epoch. A run can carry several labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from curvewatch.diagnosis.stats import level_sd, noise

#: Constants of the label definitions (documented in docs/diagnosis.md).
OVERFIT_RISE = 0.05      # final val level >= 5% above the smoothed minimum ...
NOISE_UNITS = 4.0        # ... and >= 4 level-noise units above it
MIN_TAIL = 5             # the minimum is at least 5 epochs before the end
PLATEAU_TAIL = 20        # plateau: the last >= 20 epochs improved the smoothed level by < 1% ...
PLATEAU_GAIN = 0.01
IMPROVING_GAIN = 0.01    # still improving: the last 10 epochs improved the smoothed level by > 1%
SWING = 0.10             # unstable: >= 3 one-epoch rises of the training loss by > 10% ...
SWING_RANGE = 0.05       # ... and > 5% of the range it had learned
UNDERFIT_LEVEL = 0.5     # underfitting: final train loss >= 50% of the first epoch's, gap <= 10%
UNDERFIT_GAP = 0.10
EXPLODE = 10.0           # exploding gradients: a grad norm > 10x the median of the 10 epochs before it ...
EXPLODE_PRIOR = 10       # (as many as there are) ...
EXPLODE_GROWTH = 100.0   # ... or its level (median of 5) grown > 100x (two orders of magnitude) above its lowest level
AT_CHANCE = 0.9          # no-skill divergence: train and val loss (median of the last 5) >= 0.9x the chance level ...
CHANCE_EXPLODED = 3.0    # ... after the training loss exploded above 3x chance (inside epoch 1, say) ...
CHANCE_LEARNED = 0.5     # ... or after the validation loss had been below half of it (a collapse)

#: Classes of the corpus's datasets: the chance-level loss is ln K (cross-entropy of the uniform
#: prediction); regression targets are standardised on the training rows, so predicting their
#: mean costs an MSE of about 1.
CLASSES = {"digits": 10, "digits-images": 10, "breast_cancer": 2, "wine": 3, "moons": 2, "spirals": 2,
           "blobs": 4, "eval.datasets:moons_large": 2}
REGRESSION = ("eval.datasets:diabetes", "eval.datasets:friedman", "eval.datasets:friedman_small")


def chance_level(config: dict) -> float | None:
    """The loss of a model without skill on this run's data (None: unknown dataset)."""
    ds = str(config.get("dataset", ""))
    if ds in REGRESSION:
        return 1.0
    k = CLASSES.get(ds)
    return float(np.log(k)) if k else None


def _centred(x: np.ndarray, w: int = 5) -> np.ndarray:
    return pd.Series(x).rolling(w, center=True, min_periods=1).median().to_numpy()


def label(h: pd.DataFrame, chance: float | None = None) -> dict:
    """{kind: onset epoch} for every kind the full curve shows (onset = where it starts).
    With the chance-level loss, a run that ends without skill after an explosion or a collapse
    is a divergence too (from the start of its final stretch at chance)."""
    out: dict[str, int] = {}
    ep = h["epoch"].to_numpy(int)
    tr = h["train_loss"].to_numpy(float) if "train_loss" in h else np.full(len(h), np.nan)
    v = h["val_loss"].to_numpy(float) if "val_loss" in h else np.full(len(h), np.nan)
    n = len(h)
    # divergence: a non-finite loss, or a training loss ending > 10x above its minimum
    bad = ~np.isfinite(tr) | ~np.isfinite(v)
    if bad.any():
        out["divergence"] = int(ep[np.argmax(bad)])
    else:
        runmin = np.minimum.accumulate(tr)
        ex = (tr > 10 * runmin) & (tr > tr[0])
        if n >= 3 and ex[-3:].all():
            i = n - 1
            while i > 0 and ex[i - 1]:
                i -= 1
            out["divergence"] = int(ep[i])
        elif chance:
            onset = _no_skill_onset(tr, v, chance)
            if onset is not None:
                out["divergence"] = int(ep[onset])
    fin = np.isfinite(v)
    if fin.sum() >= 10 and "divergence" not in out:
        vs = _centred(v)
        m = int(np.nanargmin(vs))
        sig = noise(v[fin], 0.3)
        lsd = level_sd(sig, 0.3, 5)
        best = vs[m]
        end = float(np.median(v[-5:]))
        t_m = float(np.median(tr[max(0, m - 2): m + 3]))
        t_end = float(np.median(tr[-5:]))
        if (n - 1 - m >= MIN_TAIL and end - best >= max(OVERFIT_RISE * abs(best), NOISE_UNITS * lsd)
                and t_end < t_m):
            out["overfitting"] = int(ep[int(np.nanargmin(np.where(fin, v, np.nan)[: m + 3]))])
            if "val_acc" in h:
                a = h["val_acc"].to_numpy(float)
                if np.median(a[-5:]) > np.median(a[max(0, m - 2): m + 3]) + 1e-9:
                    out["overconfidence"] = out["overfitting"]
        else:
            # plateau: from some epoch p on (>= PLATEAU_TAIL epochs before the end) no improvement > 1%,
            # at a best level that was a trained state (issue 13, class 5: no plateau judged from a
            # minimum at chance level; a run flat there is a saddle or never learned)
            cm = np.minimum.accumulate(vs)
            suff = np.minimum.accumulate(vs[::-1])[::-1]
            for p in range(n - PLATEAU_TAIL):
                if _at_chance(cm[p], chance):
                    continue
                if suff[p + 1] >= cm[p] - max(PLATEAU_GAIN * abs(cm[p]), 2 * lsd):
                    out["plateau"] = int(ep[p])
                    break
            if "plateau" not in out and n > 15:
                if vs[-1] < np.min(vs[: n - 10]) - max(IMPROVING_GAIN * abs(vs[-1]), 2 * lsd):
                    out["still_improving"] = int(ep[n - 10])
    tf = np.isfinite(tr)
    if tf.sum() >= 5 and "divergence" not in out:
        first = tr[tf][0]
        runmin = np.fmin.accumulate(np.where(tf, tr, np.nan))
        rise = np.diff(tr)
        learned = first - runmin[:-1]
        sw = (rise > SWING * np.abs(tr[:-1])) & (rise > SWING_RANGE * learned) & (learned > 0)
        if sw.sum() >= 3 or (sw & (rise > 0.5 * learned)).any():
            out["unstable"] = int(ep[1:][sw][0])
        t_end = float(np.median(tr[tf][-5:]))
        if first > 0 and t_end >= UNDERFIT_LEVEL * first and n >= 20:
            v_end = float(np.median(v[fin][-5:])) if fin.any() else t_end
            if abs(v_end - t_end) <= UNDERFIT_GAP * abs(t_end):
                out["underfitting"] = int(ep[0])
    if "grad_norm" in h:
        onset = _exploding_onset(h["grad_norm"].to_numpy(float))
        if onset is not None:
            out["exploding_gradients"] = int(ep[onset])
    return out


def _at_chance(level: float, chance: float | None) -> bool:
    """Is a (smoothed) loss level at the chance level: AT_CHANCE to below CHANCE_EXPLODED times
    the chance-level loss, the loss of a model that learned nothing? False when it is unknown."""
    return chance is not None and AT_CHANCE * chance <= level < CHANCE_EXPLODED * chance


def _no_skill_onset(tr: np.ndarray, v: np.ndarray, chance: float) -> int | None:
    """First row of the final stretch at chance level, if the run ends there (train and val) after
    its training loss exploded or its validation loss had learned something."""
    if tr.size < 5 or np.median(tr[-5:]) < AT_CHANCE * chance or np.median(v[-5:]) < AT_CHANCE * chance:
        return None
    if not (tr.max() >= CHANCE_EXPLODED * chance or v.min() <= CHANCE_LEARNED * chance):
        return None
    at = _centred(v) >= AT_CHANCE * chance
    i = v.size - 1
    while i > 0 and at[i - 1]:
        i -= 1
    return i


def _exploding_onset(g: np.ndarray) -> int | None:
    """First row where the gradient norm explodes: non-finite after finite values, a spike far
    above its running median, or a level grown by orders of magnitude. A norm that merely decays
    (large in the first epochs, small later) is not exploding."""
    if np.isfinite(g).sum() < 2:
        return None
    gf = np.where(np.isfinite(g), g, np.nan)
    s = pd.Series(gf)
    prior = s.rolling(EXPLODE_PRIOR, min_periods=1).median().shift(1).to_numpy()
    level = s.rolling(5, min_periods=3).median().to_numpy()
    low = np.fmin.accumulate(np.where(np.isfinite(level), level, np.nan))
    low_before = np.r_[np.nan, low[:-1]]
    first_finite = int(np.argmax(np.isfinite(g)))
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = ((~np.isfinite(g) & (np.arange(g.size) > first_finite))
               | (g > EXPLODE * prior)
               | ((level > EXPLODE_GROWTH * low_before) & (low_before > 0)))
    idx = np.nonzero(hit)[0]
    return int(idx[0]) if idx.size else None
