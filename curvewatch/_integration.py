"""What the framework integrations share: config values as JSON, the diagnosis that stops a
run early, and the final state of a run whose training returned."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from curvewatch.diagnosis import Finding, diagnose, stopping_finding
from curvewatch.tracking import HistoryReader, Run

_JSON = (str, int, float, bool, type(None))


def jsonable(value: Any) -> Any:
    """`value` as JSON: containers kept, 0-d numpy/torch numbers through `.item()`, any other
    object (a module, a dtype, a path) by its `str`."""
    if isinstance(value, _JSON):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return item()
    return str(value)


class EarlyStop:
    """The diagnosis of a growing run, read back from its folder after each row: the finding
    of `kinds` that should stop it (as the trainer's --early-stop). Bad kinds: ValueError."""

    def __init__(self, kinds: Iterable[str], thresholds: Any = None) -> None:
        self.kinds = tuple(kinds)
        stopping_finding([], self.kinds)  # bad kinds fail here, naming them
        self.thresholds = thresholds
        self.finding: Finding | None = None
        self._reader: HistoryReader | None = None
        self._path: Path | None = None

    def check(self, run: Run) -> Finding | None:
        """The finding that ends `run` now (kept as `finding`), or None; None without kinds."""
        if not self.kinds:
            return None
        if self._reader is None or self._path != run.path:
            self._reader, self._path = HistoryReader(run.path), run.path
        self.finding = stopping_finding(diagnose(self._reader.read(), self.thresholds),
                                        self.kinds)
        return self.finding


def finish_returned(run: Run, finding: Finding | None) -> None:
    """End a run whose training returned: `early_stopped` with the finding that stopped it,
    `stopped` when a STOP file asked for it (the dashboard's Stop), else `completed`."""
    if finding is not None:
        run.finish("early_stopped", stop_reason=finding.message, stopped_by=finding.to_dict())
    elif run.stop_requested():
        run.finish("stopped", stop_reason="stop requested (STOP file)")
    else:
        run.finish("completed")
