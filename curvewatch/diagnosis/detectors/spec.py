"""`Spec`: what one detector declares to the registry, and `Context`: what it is given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from ..findings import Finding
from ..history import History
from ..layers import Layers
from ..thresholds import Thresholds

__all__ = ["Spec", "Context"]


@dataclass(frozen=True)
class Context:
    """One diagnosis in progress: the history, the thresholds, the per-layer gradient table
    (or None) and the findings of the detectors that ran before, by kind."""

    h: History
    th: Thresholds
    layers: Layers | None
    found: Mapping[str, Finding]

    def ongoing(self, kind: str) -> bool:
        """Has a detector that ran before reported `kind`, still holding at the last epoch?"""
        f = self.found.get(kind)
        return f is not None and f.ongoing


@dataclass(frozen=True)
class Spec:
    """One detector. The registry runs detectors in its order; `diagnose` reports their findings
    in that order, so `kinds` (its kind, then any other it may report instead) fix `KINDS`.

    reads: kinds whose findings it reads (they run before it); requires: it runs only when one
    of these was found; suppressed_by: it does not run while one of these holds at the last
    epoch; stop_rank: None, or its place among the kinds `should_stop` accepts; stops_too: its
    other kinds that stop a run stopped on its kind (a converged run stops a plateau stop); span: the
    dashboard shades its findings from start to end; thresholds: the `Thresholds` fields it
    reads itself (shared helpers also read window, noise_window and autocorr); columns: the
    history columns it reads (without them it finds nothing); min_rows: the rows it needs."""

    kinds: tuple[str, ...]
    detect: Callable[[Context], Finding | None]
    columns: tuple[str, ...]
    thresholds: tuple[str, ...]
    reads: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    suppressed_by: tuple[str, ...] = ()
    stop_rank: int | None = None
    stops_too: tuple[str, ...] = ()
    span: bool = False
    min_rows: int = 2

    @property
    def kind(self) -> str:
        return self.kinds[0]

