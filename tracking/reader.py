"""The run reader: lists runs from run.json and status.json alone, loads histories as pandas
DataFrames, and follows a live run by reading only the bytes appended since the last look.

A reader never raises because of what is inside a run folder: an unreadable run comes back as
a RunInfo whose `problem` says why, and every other run still loads.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from . import paths as P
from .jsonio import read_json
from .jsonl import read_from
from .procinfo import hostname, process_alive

#: A running run whose heartbeat is older than this many heartbeat intervals counts as crashed.
STALE_HEARTBEATS = 6
#: status.json / run.json larger than this are refused as not-a-run-file.
MAX_JSON_BYTES = 4 << 20


@dataclass(frozen=True)
class RunInfo:
    """What run.json and status.json say about one run, with the derived state."""

    id: str
    path: Path
    state: str  # running | completed | stopped | early_stopped | failed | crashed | unreadable
    name: str = ""
    group: str | None = None
    created_at: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    status: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def epoch(self) -> int:
        return _int(self.status.get("epoch"))

    @property
    def epochs(self) -> int | None:
        e = self.status.get("epochs")
        return e if isinstance(e, int) else None

    @property
    def best_val_loss(self) -> float | None:
        v = self.status.get("best_val_loss")
        return float(v) if isinstance(v, (int, float)) else None

    @property
    def best_epoch(self) -> int | None:
        e = self.status.get("best_epoch")
        return e if isinstance(e, int) else None


def _int(x: Any) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else 0


_json_cache: dict[Path, tuple[tuple[int, int], Any]] = {}


def _read_json_cached(path: Path) -> Any:
    """read_json memoised on (mtime_ns, size): listing 1,000 runs re-parses only what changed."""
    st = path.stat()
    key = (st.st_mtime_ns, st.st_size)
    hit = _json_cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    if st.st_size > MAX_JSON_BYTES:
        raise ValueError(f"{path.name} is {st.st_size} bytes, more than a run file can be "
                         f"({MAX_JSON_BYTES})")
    value = read_json(path)
    _json_cache[path] = (key, value)
    return value


def derive_state(status: dict[str, Any], *, now: float | None = None,
                 host: str | None = None) -> str:
    """The state to show: the written one, or `crashed` for a `running` run whose process is
    gone (same host) or whose heartbeat is stale."""
    state = status.get("state")
    if state != "running":
        return state if isinstance(state, str) else "unreadable"
    now = time.time() if now is None else now
    beat = status.get("heartbeat_seconds")
    beat = beat if isinstance(beat, (int, float)) and beat > 0 else 5.0
    updated = status.get("updated_at")
    if not isinstance(updated, (int, float)) or now - updated > STALE_HEARTBEATS * beat:
        return "crashed"
    pid = status.get("pid")
    if isinstance(pid, int) and status.get("host") == (host or hostname()):
        start = status.get("pid_start")
        if not process_alive(pid, start if isinstance(start, int) else None):
            return "crashed"
    return "running"


def read_run(run_dir: str | Path) -> RunInfo:
    """RunInfo for one run folder; problems are reported in `.problem`, never raised."""
    path = Path(run_dir)
    run_id = path.name
    if path.is_symlink():
        return RunInfo(run_id, path, "unreadable",
                       problem="the run folder is a symlink, which is never followed")
    try:
        info = _read_json_cached(path / P.RUN_JSON)
        if not isinstance(info, dict):
            raise ValueError("run.json does not hold a JSON object")
    except FileNotFoundError:
        return RunInfo(run_id, path, "unreadable", problem=_NO_RUN_JSON)
    except (OSError, ValueError) as e:
        return RunInfo(run_id, path, "unreadable", problem=f"run.json is unreadable: {e}")
    base: dict[str, Any] = dict(
        id=run_id, path=path, name=str(info.get("name") or run_id),
        group=info.get("group") if isinstance(info.get("group"), str) else None,
        created_at=info.get("created_at") if isinstance(info.get("created_at"), (int, float))
        else None,
        config=_dict(info.get("config")), data=_dict(info.get("data")),
        model=_dict(info.get("model")),
        tags=tuple(t for t in info.get("tags") or () if isinstance(t, str)),
    )
    try:
        status = _read_json_cached(path / P.STATUS_JSON)
        if not isinstance(status, dict):
            raise ValueError("status.json does not hold a JSON object")
    except FileNotFoundError:
        return RunInfo(**base, state="unreadable", problem="status.json is missing")
    except (OSError, ValueError) as e:
        return RunInfo(**base, state="unreadable", problem=f"status.json is unreadable: {e}")
    if status.get("state") not in P.STATES:
        return RunInfo(**base, state="unreadable", status=status,
                       problem=f"status.json has state {str(status.get('state'))[:40]!r}; "
                               f"known states are {', '.join(P.STATES)}")
    return RunInfo(**base, state=derive_state(status), status=status)


_NO_RUN_JSON = "run.json is missing"


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def list_runs(runs_dir: str | Path | None = None) -> list[RunInfo]:
    """Every run folder in the runs directory, newest first, read from run.json and
    status.json only. Hidden entries, plain files and group folders (a group.json and no
    run.json) are skipped; a missing directory is empty."""
    root = Path(runs_dir) if runs_dir is not None else P.default_runs_dir()
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name, reverse=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    runs = []
    for entry in entries:
        if entry.name.startswith(".") or not P.is_run_id(entry.name):
            continue
        if entry.is_symlink() or entry.is_dir(follow_symlinks=False):
            info = read_run(Path(entry.path))
            if info.problem == _NO_RUN_JSON and os.path.exists(os.path.join(entry.path,
                                                                            P.GROUP_JSON)):
                continue  # a group folder (tracking.list_groups), not a run
            runs.append(info)
    return runs


class JsonlFrame:
    """Follows one .jsonl file as a table: each `read()` parses only the bytes appended since
    the previous one and returns the whole table as a DataFrame, one row per `key` (sorted,
    the last record of a repeated key kept). New rows in order are appended to the frame
    (O(new rows)); anything else rebuilds it."""

    def __init__(self, path: str | Path, key: str,
                 row: Callable[[dict[str, Any]], dict[str, Any] | None]):
        self.path, self.key, self._row = Path(path), key, row
        self.offset = 0
        self.problems: list[str] = []
        self._rows: list[dict[str, Any]] = []
        self._frame: pd.DataFrame | None = None

    def read(self) -> pd.DataFrame:
        chunk = read_from(self.path, self.offset)
        if chunk.offset < self.offset:  # file was replaced: start over
            self._rows, self.problems, self._frame = [], [], None
        self.offset = chunk.offset
        self.problems.extend(chunk.problems)
        rows = [r for r in map(self._row, chunk.records) if r is not None]
        self._rows.extend(rows)
        frame = self._frame
        if frame is None or (rows and not self._appends_in_order(frame, rows)):
            frame = _table(self._rows, self.key)
        elif rows:
            frame = pd.concat([frame, _table(rows, self.key)], ignore_index=True)
        self._frame = frame
        return frame

    def _appends_in_order(self, frame: pd.DataFrame, rows: list[dict[str, Any]]) -> bool:
        keys = [r[self.key] for r in rows]
        last = frame[self.key].iloc[-1] if len(frame) else 0
        return keys[0] > last and all(a < b for a, b in pairwise(keys))


def _metrics_row(record: dict[str, Any]) -> dict[str, Any] | None:
    if not _valid_epoch(record.get("epoch")):
        return None
    return {k: v for k, v in record.items() if not isinstance(v, (dict, list))}


def _layers_row(record: dict[str, Any]) -> dict[str, Any] | None:
    norms = record.get("grad_norm")
    if not _valid_epoch(record.get("epoch")) or not isinstance(norms, dict):
        return None
    return {"epoch": record["epoch"], **{str(k): _num(v) for k, v in norms.items()}}


def _steps_row(record: dict[str, Any]) -> dict[str, Any] | None:
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return None
    return {k: v for k, v in record.items() if not isinstance(v, (dict, list))}


class HistoryReader(JsonlFrame):
    """Follows one run's metrics.jsonl: the per-epoch history, reading only appended bytes."""

    def __init__(self, run_dir: str | Path, filename: str = P.METRICS):
        super().__init__(Path(run_dir) / filename, "epoch", _metrics_row)


class LayersReader(JsonlFrame):
    """Follows layers.jsonl: `epoch` plus one column per parameter tensor's gradient norm."""

    def __init__(self, run_dir: str | Path):
        super().__init__(Path(run_dir) / P.LAYERS, "epoch", _layers_row)


class StepsReader(JsonlFrame):
    """Follows steps.jsonl: one row per logged step."""

    def __init__(self, run_dir: str | Path):
        super().__init__(Path(run_dir) / P.STEPS, "step", _steps_row)


def _valid_epoch(e: Any) -> bool:
    return isinstance(e, int) and not isinstance(e, bool) and e >= 1


def _table(rows: list[dict[str, Any]], key: str) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({key: pd.Series(dtype="int64")})
    frame = pd.DataFrame.from_records(rows)
    for col in frame.columns:
        if col != key and frame[col].dtype == object and _mostly_numeric(frame[col]):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame = frame.drop_duplicates(key, keep="last").sort_values(key, kind="stable")
    return frame.reset_index(drop=True)


def _mostly_numeric(col: pd.Series) -> bool:
    vals = col.dropna()
    return len(vals) > 0 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 for v in vals)


def read_history(run_dir: str | Path) -> pd.DataFrame:
    """One run's per-epoch metrics as a DataFrame: `epoch` plus one column per metric."""
    return HistoryReader(run_dir).read()


def read_layers(run_dir: str | Path) -> pd.DataFrame:
    """Per-parameter-tensor gradient norms: `epoch` plus one column per tensor name."""
    return LayersReader(run_dir).read()


def read_steps(run_dir: str | Path) -> pd.DataFrame:
    """Per-step records (steps.jsonl) as a DataFrame, empty when the run logged none."""
    return StepsReader(run_dir).read()


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def read_log_tail(run_dir: str | Path, max_bytes: int = 20_000) -> str:
    """The last `max_bytes` of the run's output, decoded leniently: its trainer.log, or for a
    member of a run group (whose output goes to the group's log of that member) that log;
    '' when there is none."""
    run_dir = Path(run_dir)
    text = read_tail(run_dir / P.LOG, max_bytes)
    if text is None:
        log = P.member_log_of(run_dir)
        text = read_tail(log, max_bytes) if log is not None else None
    return text or ""


def read_tail(path: Path, max_bytes: int) -> str | None:
    """The last `max_bytes` of a text file, decoded leniently; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
