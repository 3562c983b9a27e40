"""The `Finding` record: what a detector reports, in plain words and numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Finding", "SEVERITIES"]

#: Severities, least to most urgent.
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")


#: The kinds a Finding may have: the detector registry's KINDS, which it registers when it loads
#: (the detector modules import this one, so this one cannot import them).
_KINDS: list[str] = []


def register_kinds(kinds: tuple[str, ...]) -> None:
    """Called once by the detector registry (diagnosis.detectors) with every kind it reports."""
    _KINDS[:] = kinds


def _plain(value: Any) -> Any:
    """Convert numpy scalars and containers to JSON-friendly Python values.

    Non-finite floats are kept as floats (the run format writes them as "NaN",
    "Infinity"); `to_dict` output is therefore `json.dumps`-able with the standard
    library's default ``allow_nan=True``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str) or value is None:
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _plain(value.item())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise TypeError(f"evidence values must be numbers, strings or lists of them, got {type(value).__name__}")


@dataclass(frozen=True)
class Finding:
    """One diagnosis of a training history.

    Attributes:
        kind: one of `KINDS` (the detector registry's).
        severity: "info", "warning" or "critical".
        start_epoch: first epoch of the finding. For ``overfitting`` it is the epoch of
            the validation-loss minimum, i.e. the epoch whose weights best.pt holds.
        end_epoch: last epoch of an episode that has ended, or None while it is ongoing
            at the last epoch of the history.
        metric: the history column the finding is about (e.g. "val_loss").
        message: one plain sentence with the numbers.
        advice: what to try, concretely.
        evidence: the numbers used, as plain ints, floats, strings (JSON-serialisable).
    """

    kind: str
    severity: str
    start_epoch: int
    end_epoch: int | None
    metric: str
    message: str
    advice: str
    evidence: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")
        object.__setattr__(self, "start_epoch", int(self.start_epoch))
        if self.end_epoch is not None:
            object.__setattr__(self, "end_epoch", int(self.end_epoch))
        object.__setattr__(self, "evidence", _plain(dict(self.evidence)))

    @property
    def ongoing(self) -> bool:
        """True while the finding holds at the last epoch of the history (end_epoch is None)."""
        return self.end_epoch is None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-serialisable) that `from_dict` turns back into an equal Finding."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "start_epoch": self.start_epoch,
            "end_epoch": self.end_epoch,
            "metric": self.metric,
            "message": self.message,
            "advice": self.advice,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Finding":
        """Rebuild a Finding from `to_dict` output (e.g. read back from status.json).

        Unknown keys are ignored so that a newer writer does not break an older reader.
        """
        missing = [k for k in ("kind", "severity", "start_epoch", "metric", "message") if k not in d]
        if missing:
            raise ValueError(f"finding dict lacks {', '.join(missing)}; it has {', '.join(map(str, d))}")
        evidence = d.get("evidence") or {}
        evidence = {
            k: (float(v) if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity") else v)
            for k, v in evidence.items()
        }
        end = d.get("end_epoch")
        return cls(
            kind=d["kind"],
            severity=d["severity"],
            start_epoch=int(d["start_epoch"]),
            end_epoch=None if end is None else int(end),
            metric=d["metric"],
            message=d["message"],
            advice=d.get("advice", ""),
            evidence=evidence,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Finding):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.kind, self.severity, self.start_epoch, self.end_epoch, self.metric, self.message))

    def _key(self) -> tuple[Any, ...]:
        """A comparable key (NaN-safe) used for equality."""
        ev = tuple(sorted((k, _nan_key(v)) for k, v in self.evidence.items()))
        return (self.kind, self.severity, self.start_epoch, self.end_epoch, self.metric, self.message,
                self.advice, ev)


def _nan_key(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return ("nan",)
    if isinstance(v, list):
        return tuple(_nan_key(x) for x in v)
    return v
