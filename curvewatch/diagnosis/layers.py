"""Gradient norms as the gradient detectors read them: the global norm column of the history
and the optional per-layer table, converted lazily."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .history import History


class Layers:
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


def layer_frame(layers: pd.DataFrame | None, h: History) -> Layers | None:
    if layers is None or not isinstance(layers, pd.DataFrame) or layers.empty or "epoch" not in layers.columns:
        return None
    lf = Layers(layers, int(h.epochs[-1]))
    return lf if len(lf) and lf.names else None


def grad_series(h: History) -> tuple[str, np.ndarray] | None:
    for c in ("grad_norm", "grad_norm_max"):
        if c in h.cols and (np.isfinite(h.cols[c]).sum() >= 2 or (~np.isnan(h.cols[c])).any()):
            return c, h.cols[c]
    return None


def grad_rows(h: History) -> History:
    """The rows where the gradient norm the detectors read has data."""
    series = grad_series(h)
    return h.only(series[0]) if series is not None else h


def col_nanmedian(vals: np.ndarray) -> np.ndarray:
    """Median of the finite values of each column; NaN for a column without any (no warning)."""
    out = np.full(vals.shape[1], np.nan)
    fin = np.isfinite(vals)
    ok = fin.any(axis=0)
    if ok.any():
        out[ok] = np.nanmedian(np.where(fin[:, ok], vals[:, ok], np.nan), axis=0)
    return out


def layer_names(names: list[str], k: int = 4) -> str:
    if len(names) <= k:
        return ", ".join(names)
    return ", ".join(names[:k]) + f" and {len(names) - k} more"
