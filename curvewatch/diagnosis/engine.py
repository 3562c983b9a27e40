"""`diagnose` and `should_stop`: a training history in, findings out.

Every detector (diagnosis/detectors/, one module each, run in the registry's order) reads only
the rows it is given (online-consistent), uses only trailing windows and running minima (so
findings at epoch t never depend on later rows), and never raises on NaN or infinite values.
See docs/diagnosis.md for the definitions.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .detectors import REGISTRY, STOP_ALSO, STOP_KINDS, Context
from .findings import Finding
from .history import ABSENT, COLUMNS, prepare
from .layers import layer_frame
from .thresholds import Thresholds

__all__ = ["diagnose", "should_stop", "stopping_finding", "STOP_KINDS", "STOP_ALSO", "COLUMNS", "ABSENT"]


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
    h = prepare(history)
    if h is None:
        return []
    h.best_checkpoint = best_checkpoint or None
    h.chance = chance
    # one epoch shows no trend, but a first epoch that is already NaN diverged (min_rows 1)
    found: dict[str, Finding] = {}  # by kind, in the registry's order; later detectors read it
    ctx = Context(h, th, layer_frame(layers, h) if h.n > 1 else None, found)
    for spec in REGISTRY:
        if h.n < spec.min_rows or any(ctx.ongoing(k) for k in spec.suppressed_by):
            continue
        if spec.requires and not any(k in found for k in spec.requires):
            continue
        f = spec.detect(ctx)
        if f is not None:
            found[f.kind] = f
    return list(found.values())


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
