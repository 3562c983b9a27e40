"""The detector registry: one module per detector, each declaring a `Spec`.

`diagnose` runs `REGISTRY` in order; the kinds, the kinds `should_stop` accepts and the kinds the
dashboard shades as spans are derived from it here, nowhere else. Adding a detector: a module
with a `SPEC`, and its place in `REGISTRY`.
"""

from __future__ import annotations

from ..findings import register_kinds
from . import (
    divergence,
    exploding_gradients,
    overconfidence,
    overfitting,
    plateau,
    still_improving,
    underfitting,
    unstable,
    vanishing_gradients,
)
from .spec import Context, Spec

__all__ = ["REGISTRY", "KINDS", "STOP_KINDS", "STOP_ALSO", "SPAN_KINDS", "Spec", "Context", "spec_of"]

#: Every detector, in the order `diagnose` runs them and reports their findings.
REGISTRY: tuple[Spec, ...] = tuple(m.SPEC for m in (
    divergence, exploding_gradients, vanishing_gradients, unstable, overfitting, overconfidence,
    underfitting, plateau, still_improving))

#: Every kind of finding, in the order `diagnose` reports them. Part of the contract.
KINDS: tuple[str, ...] = tuple(k for s in REGISTRY for k in s.kinds)
register_kinds(KINDS)
#: Kinds that `should_stop` (and the trainer's --early-stop) accept, in their stop_rank order.
STOP_KINDS: tuple[str, ...] = tuple(s.kind for s in sorted((s for s in REGISTRY if s.stop_rank is not None),
                                                           key=lambda s: s.stop_rank or 0))
#: Kinds a stop kind also covers (its spec's stops_too): a run stopped on plateaus stops when it
#: has converged, a plateau at a low loss reported as info.
STOP_ALSO: dict[str, tuple[str, ...]] = {s.kind: s.stops_too for s in REGISTRY
                                         if s.stop_rank is not None and s.stops_too}
#: Kinds drawn as a shaded span from start to end (to the last epoch while ongoing).
SPAN_KINDS: tuple[str, ...] = tuple(k for s in REGISTRY if s.span for k in s.kinds)

_BY_KIND = {k: s for s in REGISTRY for k in s.kinds}


def spec_of(kind: str) -> Spec:
    """The spec of the detector that reports `kind` (KeyError for an unknown kind)."""
    return _BY_KIND[kind]
