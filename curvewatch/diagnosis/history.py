"""The training history as the detectors read it: float arrays per column, sorted by epoch,
one row per epoch, with the rows where each column has data (a metric not logged every epoch is
*absent* in the others, which is not a non-finite value); and the words findings share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .stats import rolling_median

__all__ = ["History", "prepare", "COLUMNS", "ABSENT", "NAMES", "num", "best_epoch", "keep_best", "float_column",
           "in_epoch_order"]

#: History columns the engine reads; any other column is ignored.
COLUMNS: tuple[str, ...] = ("train_loss", "val_loss", "train_acc", "val_acc", "grad_norm",
                            "grad_norm_max", "lr")


#: Optional history column naming, per row, the metrics that row has no data for
#: (comma-separated, e.g. "val_loss,val_acc"; empty or NaN: none). A metric logged every 2nd
#: epoch is *absent* in the other rows, which is not a non-finite value: a NaN cell named here
#: is no data, a NaN cell not named here is a logged NaN (a divergence). tracking's reader
#: writes it (tracking.reader.ABSENT); without it every NaN is a logged NaN.
ABSENT = "absent"

NAMES = {"train_loss": "Training loss", "val_loss": "Validation loss", "grad_norm": "Gradient norm",
          "grad_norm_max": "Largest gradient norm", "train_acc": "Training accuracy",
          "val_acc": "Validation accuracy"}


def num(x: float) -> str:
    """A number for a sentence: 3 significant digits."""
    if not np.isfinite(x):
        return {True: "NaN"}.get(bool(np.isnan(x)), "infinity" if x > 0 else "-infinity")
    return f"{x:.3g}"


@dataclass
class History:
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
    _only: dict[str, "History"] = field(default_factory=dict)

    def only(self, name: str | None) -> "History":
        """The history restricted to the rows where column `name` has data (itself when it
        has data everywhere or is missing): a detector of `name` works on these rows, so a
        metric logged every k-th epoch is a series of its checks with their epochs."""
        mask = self.present.get(name) if name is not None else None
        if mask is None or bool(mask.all()) or not mask.any():
            return self  # (a column never logged is all NaN: its detectors find nothing)
        assert name is not None
        if name not in self._only:
            rows = np.nonzero(mask)[0]
            self._only[name] = History(epochs=self.epochs[rows],
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
            fin = np.isfinite(x)
            self._smooth[key] = rolling_median(x if fin.all() else np.where(fin, x, np.nan), window)
        return self._smooth[key]

    def has(self, name: str, min_finite: int = 2) -> bool:
        x = self.cols.get(name)
        return x is not None and int(np.isfinite(x).sum()) >= min_finite


def prepare(history: Any) -> History | None:
    """The history as float arrays, or None when it has no epoch. Untyped callers may pass
    None or anything pd.DataFrame() accepts (records, a dict of columns).

    A frame already in epoch order, one row per epoch, with float64 columns (what
    tracking's reader returns) is not copied: the arrays are pandas's read-only views of its
    columns (a million-epoch history is 64 MB of them)."""
    if history is None:
        return None
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame(history)
    n = len(frame)
    if n < 1:
        return None
    if "epoch" not in frame.columns:
        ep = np.arange(1, n + 1)
    elif frame["epoch"].dtype == np.int64:
        ep = frame["epoch"].to_numpy()
    else:
        ep = float_column(frame["epoch"])
    order: np.ndarray | None = None  # None: the rows are already in order, one per epoch
    if not in_epoch_order(ep):
        order, ep = _epoch_order(ep.astype(float, copy=False))
        if ep.size < 1:
            return None
    cols = {}
    for c in COLUMNS:
        if c in frame.columns:
            col = float_column(frame[c])
            cols[c] = col if order is None else col[order]
    present = {}
    if ABSENT in frame.columns and cols:
        names = frame[ABSENT].to_numpy(dtype=object)
        # a few distinct labels (the combinations of metrics a record lacked): parse each once
        codes, labels = pd.factorize(names if order is None else names[order])
        for c, x in cols.items():
            # a cell with a value is present whatever the column says; a NaN named absent is not
            named = np.array([isinstance(a, str) and c in a.split(",") for a in labels] + [False])
            present[c] = ~np.isnan(x) | ~named[codes]  # (code -1, a NaN label: the False at the end)
    epochs = ep if ep.dtype == np.int64 else ep.astype(np.int64)
    return History(epochs=epochs, cols=cols, n=int(epochs.size), present=present)


def float_column(col: pd.Series) -> np.ndarray:
    """A column as float64, non-numbers as NaN: the column's own array when it already is
    one, so no copy is made."""
    if col.dtype == np.float64:
        out: np.ndarray = col.to_numpy()
        return out
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)


def in_epoch_order(ep: np.ndarray) -> bool:
    """Are the epochs finite and strictly increasing (sorted, one row per epoch)?"""
    if ep.dtype.kind == "f" and not (np.isfinite(ep[0]) and np.isfinite(ep[-1])):
        return False
    return ep.size < 2 or bool((ep[1:] > ep[:-1]).all())  # (a NaN compares False)


def _epoch_order(ep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows in epoch order, their epochs): rows without a finite epoch dropped, and of the
    rows of one epoch the last written kept."""
    keep = np.isfinite(ep)
    order = np.argsort(np.where(keep, ep, np.inf), kind="stable")
    order = order[keep[order]]
    ep = ep[order]
    if ep.size > 1:
        last = np.append(ep[1:] != ep[:-1], True)
        order, ep = order[last], ep[last]
    return order, ep


def best_epoch(h: History, metric: str) -> int | None:
    """The epoch of the lowest finite value of `metric` (the weights a best checkpoint holds)."""
    x = h.cols.get(metric)
    if x is None or not np.isfinite(x).any():
        return None
    return int(h.epochs[int(np.nanargmin(np.where(np.isfinite(x), x, np.nan)))])


def keep_best(h: History, epoch: int | None) -> str:
    """'keep ...': the advice's words for the best weights, naming only what exists."""
    at = f"epoch-{epoch} " if epoch is not None else "best "
    if h.best_checkpoint:
        return f"keep the {at}checkpoint ({h.best_checkpoint})"
    where = f"those of epoch {epoch}" if epoch is not None else "those of the best epoch"
    return (f"keep the best weights, {where}, if your loop saved them (no checkpoint is "
            f"recorded for this run)")
