"""The run reader: lists runs from run.json and status.json alone, loads histories as pandas
DataFrames, and follows a live run by reading only the bytes appended since the last look.

A reader never raises, blocks or reads outside the run folder because of what is inside a
run folder: files are opened through tracking.safeio (regular files only, no symlink followed,
bounded reads, bounded JSON), every field is type-checked where it is read (a field of the
wrong type reads as absent), an unreadable run comes back as a RunInfo whose `problem` says
why, and every other run still loads.
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

from . import history_cache, paths as P, safeio
from .jsonl import read_from
from .object_store import MIRROR_MARK
from .procinfo import hostname, process_alive

#: A running run whose heartbeat is older than this many heartbeat intervals counts as crashed.
STALE_HEARTBEATS = 6
#: status.json / run.json larger than this are refused as not-a-run-file.
MAX_JSON_BYTES = 4 << 20
#: Counts (epochs, steps, resumes) above this are not counts: read as absent.
MAX_COUNT = 10**12
#: pid_t is 32 bits: a larger "pid" is not one.
MAX_PID = 2**31 - 1
#: Unix seconds a time column can show (pandas' Timestamp ends in the year 2262).
MAX_TIME = 9.2e9
#: A display name or tag longer than this is cut (with an ellipsis) where it is read.
MAX_TEXT = 200
#: Notes longer than this are cut (tracking.annotate refuses to write them).
MAX_NOTES = 10_000
MAX_TAGS = 100


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
    notes: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def epoch(self) -> int:
        return _count(self.status.get("epoch")) or 0

    @property
    def epochs(self) -> int | None:
        return _count(self.status.get("epochs")) or None

    @property
    def best_val_loss(self) -> float | None:
        return _real(self.status.get("best_val_loss"))

    @property
    def best_epoch(self) -> int | None:
        return _count(self.status.get("best_epoch"))


def _count(x: Any) -> int | None:
    """x if it is an int in 0..MAX_COUNT (not a bool), else None."""
    return x if isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_COUNT else None


def _real(x: Any) -> float | None:
    """x as a float if it is a number (not a bool) a float holds, else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    try:
        return float(x)
    except OverflowError:
        return None


def _text(x: Any, limit: int = MAX_TEXT) -> str | None:
    """x if it is a string (cut to `limit` characters), else None."""
    if not isinstance(x, str):
        return None
    return x if len(x) <= limit else x[: limit - 1] + "…"


def _time(x: Any) -> float | None:
    """Unix seconds a table can show (finite, 1970 to 2261), else None."""
    v = _real(x)
    return v if v is not None and 0 <= v <= MAX_TIME else None


_json_cache: dict[str, tuple[tuple[int, int, int], Any]] = {}


def _read_json_cached(path: str) -> Any:
    """A run file's JSON (regular file only, no symlink followed, at most MAX_JSON_BYTES,
    bounded nesting: tracking.safeio), memoised on (mtime_ns, size, inode): listing 1,000
    runs re-parses only what changed. `path` is a str: pathlib costs more than the read."""
    fd = safeio.open_regular(path)
    try:
        st = os.fstat(fd)
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = _json_cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        if st.st_size > MAX_JSON_BYTES:
            raise ValueError(f"{st.st_size} bytes, more than a run file can be "
                             f"({MAX_JSON_BYTES})")
        data = safeio.read_fd(fd, MAX_JSON_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"grew past {MAX_JSON_BYTES} bytes while being read")
    value = safeio.loads_bounded(data)
    _json_cache[path] = (key, value)
    return value


def read_json_file(path: Path) -> Any:
    """run.json, status.json or group.json, read as a reader must (see _read_json_cached);
    raises OSError or ValueError with a reason that never quotes the content."""
    return _read_json_cached(os.fspath(path))


def derive_state(status: dict[str, Any], *, now: float | None = None,
                 host: str | None = None, pid_check: bool = True) -> str:
    """The state to show: the written one, or `crashed` for a `running` run whose heartbeat
    is stale or, with `pid_check`, whose process is gone (same host). A copy of a bucket's run
    (`in_mirror`) is judged by its heartbeat alone: its status arrives a sync and a poll after
    its writer's, whose process, even on this host, may have ended in between."""
    state = status.get("state")
    if state != "running":
        return state if isinstance(state, str) else "unreadable"
    now = time.time() if now is None else now
    beat = _real(status.get("heartbeat_seconds"))
    beat = beat if beat is not None and 0 < beat < math.inf else 5.0
    updated = _real(status.get("updated_at"))
    if updated is None or not math.isfinite(updated) or now - updated > STALE_HEARTBEATS * beat:
        return "crashed"
    pid = status.get("pid")
    if pid_check and isinstance(pid, int) and not isinstance(pid, bool) and status.get(
            "host") == (host or hostname()):
        start = status.get("pid_start")  # process_alive: a pid no process can have is dead
        if not process_alive(pid, start if isinstance(start, int) and not isinstance(
                start, bool) else None):
            return "crashed"
    return "running"


def read_run(run_dir: str | Path) -> RunInfo:
    """RunInfo for one run folder; problems are reported in `.problem`, never raised."""
    path = Path(run_dir)
    return _read_run(path, os.fspath(path), path.is_symlink())


def _read_run(path: Path, where: str, is_link: bool) -> RunInfo:
    """read_run of `path`, whose str is `where` (list_runs knows both, and whether it is a
    symlink, from its directory listing: no stat)."""
    run_id = path.name
    if is_link:
        return RunInfo(run_id, path, "unreadable",
                       problem="the run folder is a symlink, which is never followed")
    try:
        info = _read_json_cached(os.path.join(where, P.RUN_JSON))
        if not isinstance(info, dict):
            raise ValueError("run.json does not hold a JSON object")
    except FileNotFoundError:
        return RunInfo(run_id, path, "unreadable", problem=_NO_RUN_JSON)
    except (OSError, ValueError) as e:
        return RunInfo(run_id, path, "unreadable",
                       problem=f"run.json is unreadable: {safeio.describe(e)}")
    tags = info.get("tags")
    base: dict[str, Any] = dict(
        id=run_id, path=path, name=_text(info.get("name")) or run_id,
        group=_text(info.get("group")) or None,
        created_at=_time(info.get("created_at")),
        config=_dict(info.get("config")), data=_dict(info.get("data")),
        model=_dict(info.get("model")),
        tags=tuple(t for t in map(_text, tags[:MAX_TAGS]) if t) if isinstance(tags, list)
        else (),
        notes=_text(info.get("notes"), MAX_NOTES) or "",
    )
    try:
        status = _read_json_cached(os.path.join(where, P.STATUS_JSON))
        if not isinstance(status, dict):
            raise ValueError("status.json does not hold a JSON object")
    except FileNotFoundError:
        return RunInfo(**base, state="unreadable", problem="status.json is missing")
    except (OSError, ValueError) as e:
        return RunInfo(**base, state="unreadable",
                       problem=f"status.json is unreadable: {safeio.describe(e)}")
    shown = clean_status(status)
    if shown.get("state") not in P.STATES:
        return RunInfo(**base, state="unreadable", status=shown,
                       problem=f"status.json has state {str(shown.get('state'))[:40]!r}; "
                               f"known states are {', '.join(P.STATES)}")
    # the state is derived from what was written (a pid no process can have means crashed)
    return RunInfo(**base, state=derive_state(status, pid_check=not in_mirror(path.parent)),
                   status=shown)


_mirrors: dict[str, bool] = {}


def in_mirror(runs_dir: str | Path) -> bool:
    """Whether `runs_dir` is this machine's mirror of a bucket (tracking.remote_read), asked
    once per folder: its runs were written elsewhere, or by a process seen a poll late."""
    key = os.fspath(runs_dir)
    hit = _mirrors.get(key)
    if hit is None:
        hit = _mirrors[key] = os.path.exists(os.path.join(key, MIRROR_MARK))
    return hit


_NO_RUN_JSON = "run.json is missing"


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


_COUNTS = ("epoch", "epochs", "step", "best_epoch", "resumes")
_REALS = ("started_at", "updated_at", "ended_at", "resumed_at", "heartbeat_seconds",
          "best_val_loss", "best_val_acc")
_TEXTS = {"host": 300, "stop_reason": 2000, "error": 8000}


def clean_status(status: dict[str, Any]) -> dict[str, Any]:
    """status.json with each field docs/run-format.md defines type-checked: a field of the
    wrong type (an epoch that is a list or 10**300, a `latest` that is not an object, a
    `stopped_by` without a string `kind`) is left out, as if absent; unknown fields are kept."""
    out = dict(status)
    for k in _COUNTS:
        if k in out and _count(out[k]) is None:
            del out[k]
    for k in _REALS:
        if k in out:
            v = _real(out[k])
            if v is None:
                del out[k]
            else:
                out[k] = v
    for k, limit in _TEXTS.items():
        text = _text(out.get(k), limit)
        if text is None:
            out.pop(k, None)
        else:
            out[k] = text
    pid = out.get("pid")
    if "pid" in out and not (isinstance(pid, int) and not isinstance(pid, bool)
                             and 0 < pid <= MAX_PID):
        del out["pid"]
    start = out.get("pid_start")
    if "pid_start" in out and not (isinstance(start, int) and not isinstance(start, bool)
                                   and 0 <= start < 2**63):
        del out["pid_start"]
    if "latest" in out and not isinstance(out["latest"], dict):
        del out["latest"]
    if "flags" in out:
        flags = out["flags"]
        if isinstance(flags, list):
            out["flags"] = [f for f in flags if isinstance(f, dict)
                            and isinstance(f.get("kind"), str)]
        else:
            del out["flags"]
    if "stopped_by" in out:
        out["stopped_by"] = clean_finding(out["stopped_by"])
    return out


def clean_finding(raw: Any) -> dict[str, Any] | None:
    """A diagnosis finding as stored in status.json (`stopped_by`), its fields type-checked:
    None unless it is an object with a string `kind`."""
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
        return None
    out = dict(raw)
    out["kind"] = _text(raw["kind"]) or "unknown"
    sev = raw.get("severity")
    out["severity"] = sev if sev in ("critical", "warning", "info") else "info"
    for k in ("message", "advice"):
        out[k] = _text(raw.get(k), 4000) or ""
    for k in ("start_epoch", "end_epoch"):
        out[k] = _count(raw.get(k))
    out["evidence"] = raw.get("evidence") if isinstance(raw.get("evidence"), dict) else {}
    return out


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
        is_link = entry.is_symlink()
        if is_link or entry.is_dir(follow_symlinks=False):
            info = _read_run(Path(entry.path), entry.path, is_link)
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
        self.mark_absent = False

    def read(self) -> pd.DataFrame:
        chunk = read_from(self.path, self.offset)
        if chunk.offset < self.offset:  # file was replaced: start over
            self._rows, self.problems, self._frame = [], [], None
        self.offset = chunk.offset
        # a file that stays unreadable (a FIFO) gives the same reason on every tick: once
        self.problems.extend(p for p in chunk.problems if p not in self.problems[-8:])
        rows = [r for r in map(self._row, chunk.records) if r is not None]
        self._rows.extend(rows)
        frame = self._frame
        if frame is None or (rows and not self._appends_in_order(frame, rows)):
            frame = self._rebuild()
        elif rows:
            new = _table(rows, self.key, self.mark_absent)
            # the ABSENT column is relative to the table's columns: rebuild when they differ
            frame = (pd.concat([frame, new], ignore_index=True)
                     if list(new.columns) == list(frame.columns) else self._rebuild())
        self._frame = frame
        return frame

    def _rebuild(self) -> pd.DataFrame:
        return _table(self._rows, self.key, self.mark_absent)

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
    """Follows one run's metrics.jsonl: the per-epoch history, reading only appended bytes.
    With `cache`, the first read starts from the columnar cache (tracking.history_cache) and
    goes on after the bytes it covers; a later read that must rebuild the table reads the
    file afresh (the cached rows are not kept as records)."""

    def __init__(self, run_dir: str | Path, filename: str = P.METRICS, *, cache: bool = True):
        super().__init__(Path(run_dir) / filename, "epoch", _metrics_row)
        self.mark_absent = True  # the ABSENT column
        self._seed, self._seeded = cache, False

    def read(self) -> pd.DataFrame:
        if self._seed:
            self._seed = False
            seeded = history_cache.seed(self.path.parent, filename=self.path.name)
            if seeded is not None:
                self._frame, self.offset = seeded
                self._seeded = True
        return super().read()

    def _rebuild(self) -> pd.DataFrame:
        if not self._seeded:
            return super()._rebuild()
        self._seeded, self.offset, self._rows, self._frame = False, 0, [], None
        self.problems = []
        return super().read()


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


#: Column naming, per row, the columns that row's record did not have (comma-separated; only
#: present when some record lacks one): a metric logged every 2nd epoch is *absent* (no data)
#: in the others, while a logged NaN ("NaN" in the file) is a value. Both read as NaN in their
#: column; diagnosis reads this column to keep them apart (diagnosis.engine.ABSENT).
ABSENT = "absent"


def _table(rows: list[dict[str, Any]], key: str, mark_absent: bool = False) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({key: pd.Series(dtype="int64")})
    frame = pd.DataFrame.from_records(rows)
    names = [c for c in frame.columns if c != ABSENT]
    if mark_absent and any(len(r) < len(names) for r in rows):
        frame[ABSENT] = [",".join(c for c in names if c not in r) for r in rows]
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
    """One run's per-epoch metrics as a DataFrame: `epoch` plus one column per metric. Read
    through its columnar cache (tracking.history_cache), which gives the same frame."""
    return history_cache.read(run_dir, lambda: HistoryReader(run_dir, cache=False).read())


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
    '' when there is none. Only a regular file is read, never through a symlink (a log that
    is a FIFO, a device or a link reads as none)."""
    run_dir = Path(run_dir)
    text = read_tail(run_dir / P.LOG, max_bytes)
    if text is None and not os.path.lexists(run_dir / P.LOG):
        log = P.member_log_of(run_dir)
        text = read_tail(log, max_bytes, root=log.parent.parent) if log is not None else None
    return text or ""


def read_tail(path: Path, max_bytes: int, *, root: Path | None = None) -> str | None:
    """The last `max_bytes` of a text file, decoded leniently; None when it cannot be read
    as a regular file (tracking.safeio.read_tail: no FIFO, device or symlink; with `root`, no
    symlinked folder between root and the file either)."""
    return safeio.read_tail(path, max_bytes, root=root)
