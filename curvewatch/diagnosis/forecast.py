"""Forecast of a loss curve: where it is heading by a later epoch, and how much it may still gain.

    from curvewatch.diagnosis import forecast
    fc = forecast(history, until_epoch=120)     # Forecast | None

Parametric learning-curve families (Domhan et al. 2015: power law, exponential, log-power,
inverse log) are fitted to the rows given (online-consistent: nothing but rows <= the last
epoch), robustly (soft-L1 loss in units of the curve's own noise, bounded parameters). The
interval spans every family and shape whose fit is about as good as the best one, each widened
by the standard error of its level: it is wide when the rows cannot tell the laws apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .findings import Finding
from .history import float_column, in_epoch_order
from .stats import MAD_TO_SIGMA, inflation, level_sd, median, noise

__all__ = ["Forecast", "forecast", "with_forecast", "FAMILIES", "GAIN_KINDS"]

#: The families, each y = c + a * phi(x) with a >= 0, x = epochs since the segment start (>= 1).
FAMILIES = ("power law", "exponential", "log-power", "inverse log")
MIN_POINTS = 8          # fewer finite values since the last learning-rate change: too short
MAX_BINS = 40           # longer segments are fitted through medians of consecutive bins
MAX_WIDTH = 0.5         # an interval wider than half the best loss is too noisy to say
PROFILE_DELTA = 4.0     # shapes whose robust loss is within this of the best are in the interval
Z = 2.0                 # the level's standard error is widened to about 95%
LR_JUMP = 2.0           # a learning-rate change by this factor starts a new curve ...
LR_FLOOR = 0.01         # ... unless it happens below 1% of the largest rate so far (cosine's tail)
RISING = 3.0            # the last quarter above the fit by this many level-sd: not decreasing
PHI = 0.3               # lag-1 autocorrelation assumed of per-epoch noise (docs/diagnosis.md)
PATH_POINTS = 40        # points of the projected path, from the last epoch to until_epoch


@dataclass(frozen=True)
class Forecast:
    """The projected level of `metric` at `until_epoch` (low-high: the interval), fitted on the
    rows up to `epoch`; `gain` = (best - projected) / best, at least 0; `path_*` sample the
    projection from `epoch` to `until_epoch` (for drawing)."""

    metric: str
    epoch: int
    until_epoch: int
    projected: float
    low: float
    high: float
    best: float
    best_epoch: int
    gain: float
    gain_high: float
    family: str
    segment_start: int
    path_epochs: tuple[int, ...]
    path_projected: tuple[float, ...]
    path_low: tuple[float, ...]
    path_high: tuple[float, ...]

    def message(self) -> str:
        """'≈ 2.1% more expected by epoch 120' (or 'no further gain expected by ...')."""
        if self.gain < 0.0005:
            return f"no further gain expected by epoch {self.until_epoch}"
        return f"≈ {100 * self.gain:.1f}% more expected by epoch {self.until_epoch}"


def _series(history: Any, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(epochs, values, lr) of the rows where `metric` has data, in epoch order, the last row of
    a repeated epoch winning; a NaN named in the `absent` column is no data, not a value."""
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame(history)
    if metric not in frame.columns or len(frame) == 0:
        return None
    n = len(frame)
    ep = (pd.to_numeric(frame["epoch"], errors="coerce").to_numpy(dtype=float)
          if "epoch" in frame.columns else np.arange(1.0, n + 1))
    y = float_column(frame[metric])
    lr = float_column(frame["lr"]) if "lr" in frame.columns else None
    if "absent" not in frame.columns and in_epoch_order(ep):
        return ep, y, lr  # in order, one row per epoch: the frame's own columns, no copies
    keep = np.isfinite(ep)
    if "absent" in frame.columns:
        names = frame["absent"].to_numpy(dtype=object)
        gone = np.array([isinstance(a, str) and metric in a.split(",") for a in names], dtype=bool)
        keep &= ~(np.isnan(y) & gone)
    order = np.argsort(np.where(keep, ep, np.inf), kind="stable")[: int(keep.sum())]
    ep, y = ep[order], y[order]
    last = np.append(ep[1:] != ep[:-1], True) if ep.size else np.zeros(0, dtype=bool)
    ep, y, order = ep[last], y[last], order[last]
    return ep, y, (lr[order] if lr is not None else None)


def _segment_start(lr: np.ndarray | None) -> int:
    """Row where the current curve began: after the last learning-rate jump (a step, a
    ReduceLROnPlateau cut, a warm-up's first doubling); before it the law was another."""
    if lr is None or lr.size < 2:
        return 0
    ok = np.isfinite(lr) & (lr > 0)
    if ok.sum() < 2:
        return 0
    if ok.all():
        return _last_jump(lr)
    x = np.where(ok, lr, np.nan)
    seen = np.maximum.accumulate(np.where(ok, np.arange(x.size), -1))  # last valid row so far
    prev = np.r_[np.nan, np.where(seen >= 0, x[np.maximum(seen, 0)], np.nan)[:-1]]
    top = np.fmax.accumulate(np.where(ok, x, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(np.log(x / prev))
        jump = (ratio >= math.log(LR_JUMP)) & (np.fmin(x, prev) >= LR_FLOOR * top)
    idx = np.nonzero(jump)[0]
    return int(idx[-1]) if idx.size else 0


def _last_jump(lr: np.ndarray) -> int:
    """_segment_start of a rate valid (finite, > 0) in every row, each row's jump judged from the
    row before, in place: three arrays of n at most (24 MB for a million epochs, not 60)."""
    r = lr[1:] / lr[:-1]
    np.log(r, out=r)
    np.abs(r, out=r)
    jump = r >= math.log(LR_JUMP)
    top = np.fmax.accumulate(lr)[1:]  # the largest rate so far, from row 1 on
    top *= LR_FLOOR
    np.fmin(lr[1:], lr[:-1], out=r)
    jump &= r >= top
    idx = np.nonzero(jump)[0]
    return int(idx[-1]) + 1 if idx.size else 0


def _bins(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """At most MAX_BINS points: medians of consecutive equal bins (outlier-proof and fast)."""
    k = int(math.ceil(x.size / MAX_BINS))
    if k <= 1:
        return x, y, 1
    m = (x.size // k) * k
    start = x.size - m  # whole bins ending at the last row; the oldest rows left over
    xb = x[start:].reshape(-1, k).mean(axis=1)
    yb = np.median(y[start:].reshape(-1, k), axis=1)
    return xb, yb, k


def _phi(family: str, x: np.ndarray, th: tuple[float, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """phi(x) of a family's shape theta and its derivatives d phi / d theta_j."""
    if family == FAMILIES[0]:
        p = x ** -th[0]
        return p, [-p * np.log(x)]
    if family == FAMILIES[1]:
        p = np.exp(-(x - 1.0) / th[0])
        return p, [p * (x - 1.0) / (th[0] * th[0])]
    if family == FAMILIES[2]:
        s, al = th
        u = (x / s) ** al
        p = 1.0 / (1.0 + u)
        return p, [p * p * u * al / s, -p * p * u * np.log(x / s)]
    return 1.0 / np.log(x + 1.0), []


#: Grid sizes of the power law's exponent and the exponential's time constant.
_N_ALPHA, _N_TAU = 32, 24


def _steps(span: float) -> dict[str, float]:
    """The one-shape-parameter families' grid step in log(shape) (the grids of _grid)."""
    return {FAMILIES[0]: math.log(4.0 / 0.05) / (_N_ALPHA - 1),
            FAMILIES[1]: math.log(8.0 * span) / (_N_TAU - 1)}


def _grid(x: np.ndarray, span: float) -> tuple[list[tuple[str, tuple[float, ...]]], np.ndarray]:
    """The shapes tried first (a log-spaced grid of each family's shape parameters) and their
    phi(x), one row each, computed as whole blocks."""
    al = np.geomspace(0.05, 4.0, _N_ALPHA)
    tau = np.geomspace(0.5, 4.0 * span, _N_TAU)
    sg, ag = np.meshgrid(np.geomspace(1.0, 2.0 * span, 6), (0.5, 1.0, 2.0, 4.0), indexing="ij")
    s, a2 = sg.ravel(), ag.ravel()
    shapes: list[tuple[str, tuple[float, ...]]] = [(FAMILIES[0], (float(v),)) for v in al]
    shapes += [(FAMILIES[1], (float(v),)) for v in tau]
    shapes += [(FAMILIES[2], (float(u), float(v))) for u, v in zip(s, a2, strict=True)]
    shapes.append((FAMILIES[3], ()))
    phi = np.vstack([x[None, :] ** -al[:, None], np.exp(-(x[None, :] - 1.0) / tau[:, None]),
                     1.0 / (1.0 + (x[None, :] / s[:, None]) ** a2[:, None]),
                     1.0 / np.log(x + 1.0)[None, :]])
    return shapes, phi


def _fit(phi: np.ndarray, y: np.ndarray, sd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per shape (row of phi): c, a >= 0 and the soft-L1 loss of y ~ c + a phi in units of
    sd, by reweighted least squares (the soft-L1 weights 1/sqrt(1 + r^2))."""
    w = np.ones_like(phi)
    for _ in range(3):
        sw = w.sum(axis=1)
        pm = (w * phi).sum(axis=1) / sw
        ym = (w * y).sum(axis=1) / sw
        dp = phi - pm[:, None]
        var = (w * dp * dp).sum(axis=1)
        cov = (w * dp * (y - ym[:, None])).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.where(var > 0, np.maximum(cov / var, 0.0), 0.0)
        c = ym - a * pm
        r = (y - c[:, None] - a[:, None] * phi) / sd
        w = 1.0 / np.sqrt(1.0 + r * r)
    loss = 2.0 * (np.sqrt(1.0 + r * r) - 1.0).sum(axis=1)
    return c, a, loss


@dataclass(frozen=True)
class _Law:
    """A fitted law: family, parameters (c, a, *theta), its robust loss and covariance."""

    family: str
    p: np.ndarray
    loss: float
    cov: np.ndarray

    def level(self, x: np.ndarray) -> np.ndarray:
        phi, _ = _phi(self.family, x, tuple(self.p[2:]))
        out: np.ndarray = self.p[0] + self.p[1] * phi
        return out

    def se(self, x: np.ndarray) -> np.ndarray:
        """Standard error of the level at x (delta method)."""
        phi, d = _phi(self.family, x, tuple(self.p[2:]))
        g = np.vstack([np.ones_like(x), phi, *[self.p[1] * dj for dj in d]])
        out: np.ndarray = np.sqrt(np.maximum(np.einsum("ik,ij,jk->k", g, self.cov, g), 0.0))
        return out


def _jac(family: str, p: np.ndarray, x: np.ndarray, sd: float) -> np.ndarray:
    phi, d = _phi(family, x, tuple(p[2:]))
    return np.column_stack([np.ones_like(x), phi, *[p[1] * dj for dj in d]]) / sd


def _law(family: str, p: np.ndarray, x: np.ndarray, y: np.ndarray, sd: float) -> _Law:
    """The law with its covariance: (J'J)^-1 scaled by the residuals' robust spread (at least
    the noise) and the AR(1) inflation of correlated per-epoch noise."""
    j = _jac(family, p, x, sd)
    r = (_Law(family, p, 0.0, np.zeros(0)).level(x) - y) / sd
    spread = max(1.0, MAD_TO_SIGMA * median(np.abs(r)))
    cov = np.linalg.pinv(j.T @ j) * spread * spread * inflation(PHI)
    return _Law(family, p, float(2.0 * (np.sqrt(1.0 + r * r) - 1.0).sum()), cov)


def _refine(family: str, p0: np.ndarray, x: np.ndarray, y: np.ndarray, sd: float,
            span: float) -> _Law:
    """The best grid shape's law refined: scipy's bounded scalar search of the shape parameter
    between the grid's neighbours, (c, a) profiled out by the robust fit at each step."""
    # imported here, not at the top: `import diagnosis` stays light for the trainer and readers
    from scipy.optimize import minimize_scalar  # type: ignore[import-untyped]

    step = _steps(span).get(family)
    if step is None:  # a linear law, or the two-parameter log-power: the grid fit stands
        return _law(family, p0, x, y, sd)

    def fitted(log_th: float) -> tuple[float, float, float]:
        phi, _ = _phi(family, x, (math.exp(log_th),))
        c, a, loss = _fit(phi[None, :], y, sd)
        return float(c[0]), float(a[0]), float(loss[0])

    mid = math.log(p0[2])
    res = minimize_scalar(lambda u: fitted(u)[2], bounds=(mid - step, mid + step),
                          method="bounded", options={"xatol": 0.01, "maxiter": 25})
    c, a, _ = fitted(float(res.x))
    return _law(family, np.array([c, a, math.exp(float(res.x))]), x, y, sd)


def _laws(x: np.ndarray, y: np.ndarray, sd: float, span: float) -> list[_Law]:
    """The best law (refined) first, then each other family's best grid shape whose loss is
    within PROFILE_DELTA of it: the laws the rows cannot tell apart."""
    grid, phi = _grid(x, span)
    c, a, loss = _fit(phi, y, sd)
    i = int(np.argmin(loss))
    best = _refine(grid[i][0], np.r_[c[i], a[i], grid[i][1]], x, y, sd, span)
    out = [best]
    for fam in FAMILIES:
        rows = [k for k, (f, _) in enumerate(grid) if f == fam]
        k = rows[int(np.argmin(loss[rows]))]
        if fam != best.family and loss[k] <= best.loss + PROFILE_DELTA:
            out.append(_law(fam, np.r_[c[k], a[k], grid[k][1]], x, y, sd))
    return out


def forecast(history: Any, until_epoch: int, *, metric: str = "val_loss") -> Forecast | None:
    """The projected `metric` at `until_epoch` from the rows given, or None: the metric is
    missing, fewer than MIN_POINTS values since the last learning-rate jump, the last value is
    not finite, the curve rises away from every decreasing law, or the interval is too wide.
    Raises ValueError for an until_epoch that is not a whole number."""
    if isinstance(until_epoch, bool) or not float(until_epoch).is_integer():
        raise ValueError(f"until_epoch must be a whole epoch number, got {until_epoch!r}")
    until = int(until_epoch)
    got = _series(history, metric)
    if got is None:
        return None
    ep, y, lr = got
    if ep.size == 0 or not np.isfinite(y[-1]) or until <= ep[-1]:
        return None
    start = _segment_start(lr)
    ok = np.isfinite(y[start:])
    xs, ys = ep[start:][ok] - ep[start] + 1.0, y[start:][ok]
    if ys.size < MIN_POINTS:
        return None
    xb, yb, k = _bins(xs, ys)
    sd = max(level_sd(noise(ys, PHI), PHI, k), 1e-9 * max(1.0, float(np.abs(yb).max())))
    laws = _laws(xb, yb, sd, float(xs[-1]))
    tail = max(2, yb.size // 4)
    if median(yb[-tail:] - laws[0].level(xb[-tail:])) > RISING * sd:
        return None
    px = np.unique(np.linspace(ep[-1], until, PATH_POINTS).round())
    xx = px - ep[start] + 1.0
    centre = laws[0].level(xx)
    low = np.min([law.level(xx) - Z * law.se(xx) for law in laws], axis=0)
    high = np.max([law.level(xx) + Z * law.se(xx) for law in laws], axis=0)
    return _result(metric, ep, y, until, int(ep[start]), laws[0].family, px, centre, low, high)


def _result(metric: str, ep: np.ndarray, y: np.ndarray, until: int, start: int, family: str,
            px: np.ndarray, centre: np.ndarray, low: np.ndarray, high: np.ndarray) -> Forecast | None:
    """The Forecast, or None when its interval is not finite or wider than MAX_WIDTH x best."""
    fin = np.isfinite(y)
    best = float(y[fin].min())
    scale = max(abs(best), 1e-12)
    if not np.all(np.isfinite(centre)) or not (np.isfinite(high[-1]) and np.isfinite(low[-1])) \
            or high[-1] - low[-1] > MAX_WIDTH * scale:
        return None
    proj = float(centre[-1])
    return Forecast(
        metric=metric, epoch=int(ep[-1]), until_epoch=until, projected=proj, low=float(low[-1]),
        high=float(high[-1]), best=best, best_epoch=int(ep[fin][int(np.argmin(y[fin]))]),
        gain=max(0.0, (best - proj) / scale), gain_high=max(0.0, (best - float(low[-1])) / scale),
        family=family, segment_start=start, path_epochs=tuple(int(e) for e in px),
        path_projected=tuple(float(v) for v in centre), path_low=tuple(float(v) for v in low),
        path_high=tuple(float(v) for v in high))


#: The kinds whose message says how much more the curve is expected to gain.
GAIN_KINDS = ("plateau", "converged", "still_improving")


def with_forecast(findings: Sequence[Finding], history: Any, until_epoch: int | None) -> list[Finding]:
    """The findings, the plateau/converged/still-improving ones with the forecast of their
    metric appended to the message ("≈ 2.1% more expected by epoch 120.") and put in their
    evidence, when there is a planned end beyond the history and the forecast says something."""
    out, cache = [], {}
    for f in findings:
        if f.kind in GAIN_KINDS and until_epoch:
            if f.metric not in cache:
                cache[f.metric] = forecast(history, int(until_epoch), metric=f.metric)
            fc = cache[f.metric]
            if fc is not None:
                f = replace(f, message=f"{f.message.rstrip()} {fc.message().capitalize()}.",
                            evidence={**f.evidence, "forecast": {
                                "until_epoch": fc.until_epoch, "projected": fc.projected,
                                "low": fc.low, "high": fc.high, "gain": fc.gain,
                                "family": fc.family}})
        out.append(f)
    return out
