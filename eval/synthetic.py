"""Synthetic edge curves for the evaluation: steps, spikes, NaN mid-run, very short runs.

Real trainings rarely produce these shapes on purpose, so each case is a short formula
curve (seeded noise) with the findings it must produce (kind -> window of the first epoch
the online detector may report it) and the findings it must never produce at any epoch.
`python -m eval.evaluate` prints the pass/fail table; tests/test_diagnosis_corpus.py pins it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from curvewatch.diagnosis import Thresholds, diagnose

__all__ = ["CASES", "Case", "check"]


def _e(n: int) -> np.ndarray:
    return np.arange(1, n + 1, dtype=float)


def _decay(n: int, start: float = 2.3, floor: float = 0.1, tau: float = 8.0) -> np.ndarray:
    return floor + (start - floor) * np.exp(-(_e(n) - 1) / tau)


def _noisy(x: np.ndarray, rel: float, seed: int, phi: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = np.empty(x.size)
    w = rng.normal(size=x.size)
    z[0] = w[0]
    for i in range(1, x.size):
        z[i] = phi * z[i - 1] + np.sqrt(1 - phi * phi) * w[i]
    return x * (1.0 + rel * z)


@dataclass(frozen=True)
class Case:
    name: str
    history: pd.DataFrame
    expect: dict = field(default_factory=dict)   # kind -> (first epoch lo, hi)
    forbid: tuple = ()


def _frame(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"epoch": np.arange(1, n + 1), **{k: np.asarray(v, dtype=float) for k, v in cols.items()}})


def _cases() -> list[Case]:
    out: list[Case] = []
    healthy_forbid = ("overfitting", "plateau", "divergence", "unstable", "underfitting", "exploding_gradients",
                      "vanishing_gradients")
    # steps
    n = 60
    e = _e(n)
    val = np.where(e < 30, 0.8, 0.5)
    val[:5] = [2.0, 1.5, 1.2, 1.0, 0.9]
    out.append(Case("val steps down after an lr step (x0.1 at epoch 30)",
                    _frame(train_loss=val - 0.1, val_loss=val, lr=np.where(e < 30, 0.1, 0.01)),
                    {"plateau": (12, 22)}, ("overfitting", "divergence")))
    val = _decay(n, floor=0.3) + np.where(e >= 30, 0.15, 0.0)
    out.append(Case("val steps up 40% at epoch 30 and stays, train keeps falling",
                    _frame(train_loss=_decay(n, floor=0.01), val_loss=val), {"overfitting": (32, 40)},
                    ("divergence", "plateau")))
    val = np.r_[_decay(12, tau=3, floor=0.5), np.full(n - 12, 0.5)]
    out.append(Case("flat val under a cosine schedule (lr changes every epoch)",
                    _frame(train_loss=val - 0.1, val_loss=_noisy(val, 0.01, 3),
                           lr=1e-3 * 0.5 * (1 + np.cos(np.pi * (e - 1) / n))),
                    {"plateau": (17, 28)}, ("overfitting", "divergence")))
    # spikes
    val = _noisy(0.3 + 2.0 * np.exp(-e / 20), 0.02, 1)
    val[25] *= 1.6
    out.append(Case("one-epoch validation spike on a falling curve",
                    _frame(train_loss=_noisy(0.2 + 2.0 * np.exp(-e / 18), 0.004, 2), val_loss=val), {},
                    healthy_forbid))
    tr = _decay(n, floor=0.1)
    tr[20] = 2.0
    out.append(Case("one-epoch training-loss spike that recovers",
                    _frame(train_loss=tr, val_loss=tr + 0.05), {"unstable": (21, 21)}, ("divergence",)))
    tr = _decay(40, floor=0.1)
    tr[25:] = 50.0
    out.append(Case("training loss explodes at epoch 26 and stays",
                    _frame(train_loss=tr), {"unstable": (26, 26), "divergence": (28, 28)}, ()))
    g = _noisy(np.full(n, 1.0), 0.2, 5)
    g[30] = 40.0
    out.append(Case("one-epoch gradient-norm spike (40x)",
                    _frame(train_loss=_decay(n), val_loss=_decay(n, floor=0.2), grad_norm=g),
                    {"exploding_gradients": (31, 31)}, ("divergence",)))
    g = np.r_[np.full(10, 1.0), 1.0 * 1.3 ** np.arange(1, 31)]
    out.append(Case("gradient norm growing 1.3x per epoch from epoch 11",
                    _frame(train_loss=_decay(40), grad_norm=g), {"exploding_gradients": (24, 32)}, ()))
    g = 2.0 * np.exp(-(e - 1) / 6) + 0.005
    out.append(Case("gradient norm decaying 400x (healthy)",
                    _frame(train_loss=_decay(n, floor=0.01), val_loss=_decay(n, floor=0.2), grad_norm=g), {},
                    ("exploding_gradients", "vanishing_gradients")))
    # NaN / inf mid-run
    tr = _decay(30, floor=0.2)
    tr[14:] = np.nan
    out.append(Case("training loss NaN from epoch 15", _frame(train_loss=tr, val_loss=_decay(30, floor=0.3)),
                    {"divergence": (15, 15)}, ("overfitting", "plateau")))
    v = _decay(30, floor=0.3)
    v[14:] = np.inf
    out.append(Case("validation loss +inf from epoch 15", _frame(train_loss=_decay(30, floor=0.2), val_loss=v),
                    {"divergence": (15, 15)}, ("overfitting", "plateau")))
    v = _decay(40, floor=0.3)
    v[19] = np.nan
    out.append(Case("a single NaN validation loss at epoch 20, finite after",
                    _frame(train_loss=_decay(40, floor=0.2), val_loss=v), {"divergence": (20, 20)},
                    ("overfitting", "plateau", "unstable")))
    # very short runs
    for k in (2, 3, 4):
        out.append(Case(f"{k}-epoch run, validation loss rising",
                        _frame(train_loss=np.linspace(2.0, 1.0, k), val_loss=np.linspace(1.0, 1.5, k)), {},
                        ("overfitting", "plateau", "underfitting", "divergence", "still_improving")))
    out.append(Case("5-epoch run, flat losses", _frame(train_loss=np.full(5, 1.0), val_loss=np.full(5, 1.1)), {},
                    ("overfitting", "plateau", "underfitting")))
    # noisy but healthy
    for seed in (11, 12):
        out.append(Case(f"noisy healthy curve (3% noise, seed {seed})",
                        _frame(train_loss=_noisy(0.2 + 2.0 * np.exp(-e / 25), 0.006, seed + 50),
                               val_loss=_noisy(0.3 + 2.0 * np.exp(-e / 30), 0.03, seed),
                               grad_norm=_noisy(np.ones(n), 0.2, seed + 7)), {}, healthy_forbid))
    return out


CASES: list[Case] = _cases()


def check(case: Case, th: Thresholds | None = None) -> dict:
    """Scan every prefix; the first epoch each kind is reported (ongoing, or ending at that epoch);
    pass/fail. The info kinds are left out of `found` unless the case names them."""
    th = th or Thresholds()
    h = case.history
    first: dict[str, int] = {}
    ep = h["epoch"].to_numpy(int)
    for t in range(1, len(h) + 1):
        for f in diagnose(h.iloc[:t], th):
            if f.ongoing or f.end_epoch == ep[t - 1]:
                first.setdefault(f.kind, int(ep[t - 1]))
    if "converged" in first:  # a plateau at a low loss: it meets (or breaks) a plateau rule
        first["plateau"] = min(first["converged"], first.get("plateau", first["converged"]))
    ok = all(k in first and lo <= first[k] <= hi for k, (lo, hi) in case.expect.items())
    shown = {k: e for k, e in first.items()
             if k not in ("still_improving", "overconfidence", "converged", "possible_overfitting")
             or k in case.expect
             or k in case.forbid}
    ok = ok and not any(k in first for k in case.forbid)
    return {"name": case.name, "epochs": len(h), "ok": bool(ok), "found": shown,
            "expect": {k: (f"{lo}" if lo == hi else f"{lo}-{hi}") for k, (lo, hi) in case.expect.items()},
            "forbid": list(case.forbid)}
