"""Run summaries (flags and best val accuracy) of runs whose status.json has none: kept as
`.summary.json` beside metrics.jsonl, and made off the page's thread for large runs.

The file is derived data, like tracking's `.metrics.arrow`: it names a digest of everything
the summary was made from (metrics.jsonl's size and mtime_ns, the thresholds, chance loss and
best checkpoint it was judged with, and the diagnosis code's own digest) and is used only
while that still matches. A missing, stale or damaged file is recomputed, never trusted over
metrics.jsonl; a folder the dashboard may not write to keeps its summaries in memory.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from curvewatch.tracking import jsonio, safeio

#: The file, next to metrics.jsonl (hidden: run listings skip dot-files).
SUMMARY_NAME = ".summary.json"
#: A metrics.jsonl larger than this is summarised in the background (the 1M-epoch run's
#: 255 MB take seconds); smaller ones on the page's thread, as before.
BACKGROUND_BYTES = 4 << 20
#: The largest summary file read (a planted giant file is not).
MAX_SUMMARY_BYTES = 1 << 20
#: Summaries of runs whose folder could not keep one, and of failed jobs, kept per process.
MAX_REMEMBERED = 2048
_FORMAT = 1


@dataclass(frozen=True)
class Summary:
    """What the Runs table shows of a run: its findings' (kind, severity) and best val acc."""

    flags: tuple[tuple[str, str], ...]
    best_val_acc: float | None


def basis(size: int, mtime_ns: int, judged: tuple[Any, ...]) -> str:
    """The digest a summary is made from: metrics.jsonl's (size, mtime_ns), `judged` (the
    thresholds, chance loss and the like, as repr-able values) and the diagnosis code."""
    text = repr((_FORMAT, size, mtime_ns, judged, diagnosis_digest()))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@cache
def diagnosis_digest() -> str:
    """A digest of curvewatch/diagnosis's source: a summary made by other diagnosis code is
    stale (no version number to forget to bump)."""
    import curvewatch.diagnosis as package

    root = Path(package.__file__).parent
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def load(run_dir: str | Path, made_from: str) -> Summary | None:
    """The run's stored summary if it was made from `made_from` (see basis); None when it is
    missing, stale or damaged in any way."""
    try:
        stored = safeio.loads_bounded(safeio.read_regular(
            os.path.join(run_dir, SUMMARY_NAME), MAX_SUMMARY_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("basis") != made_from:
        return None
    flags, acc = stored.get("flags"), stored.get("best_val_acc")
    if not isinstance(flags, list) or not all(
            isinstance(f, list) and len(f) == 2 and all(isinstance(s, str) for s in f)
            for f in flags):
        return None
    if acc is not None and (isinstance(acc, bool) or not isinstance(acc, (int, float))
                            or math.isnan(acc)):
        return None
    return Summary(tuple((k, s) for k, s in flags), None if acc is None else float(acc))


def save(run_dir: str | Path, made_from: str, summary: Summary) -> bool:
    """Write the summary atomically (no fsync: a torn one is recomputed); whether it was
    written (a folder that cannot be written to keeps none)."""
    record = {"format": _FORMAT, "basis": made_from,
              "flags": [list(f) for f in summary.flags], "best_val_acc": summary.best_val_acc}
    try:
        jsonio.atomic_write_bytes(Path(run_dir) / SUMMARY_NAME,
                                  jsonio.dumps(record).encode("utf-8"), durable=False)
    except OSError:
        return False
    return True


def stored_or_made(run_dir: str | Path, made_from: str, make: Callable[[], Summary]
                   ) -> Summary:
    """The stored summary when current, else make() now, stored for the next process."""
    found = load(run_dir, made_from)
    if found is None:
        found = make()
        save(run_dir, made_from, found)
    return found


# ------------------------------------------------------------------ in the background
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="curvewatch-summary")
_lock = threading.Lock()
_jobs: dict[str, tuple[str, Future[Summary]]] = {}  # run_dir -> (basis, the job making it)
_remembered: dict[tuple[str, str], Summary] = {}  # made but not stored (or failed)


def in_background(run_dir: str | Path, made_from: str, make: Callable[[], Summary], *,
                  failed: Summary) -> tuple[Future[Summary], bool]:
    """(a future, whether it is of this summary): done at once when the summary is stored or
    remembered, else the job making it, started here unless one (from any session of this
    server) already is. A run has at most one job at a time: while one makes the summary of
    an earlier state of its metrics.jsonl (a live run grew), that job comes back with False.
    A job that raises gives `failed`, kept in memory (not stored: the next process retries)."""
    where = os.fspath(run_dir)
    with _lock:
        running = _jobs.get(where)
        known = _remembered.get((where, made_from))
    if running is not None:
        return running[1], running[0] == made_from
    if known is None:
        known = load(run_dir, made_from)
    if known is not None:
        done: Future[Summary] = Future()
        done.set_result(known)
        return done, True
    with _lock:
        running = _jobs.get(where)
        if running is None:
            running = _jobs[where] = (made_from, _executor.submit(_run, where, made_from,
                                                                  make, failed))
    return running[1], running[0] == made_from


def _run(run_dir: str, made_from: str, make: Callable[[], Summary], failed: Summary
         ) -> Summary:
    try:
        made = make()
        stored = save(run_dir, made_from, made)
    except Exception:  # the row shows the failure; the Run page says why
        made, stored = failed, False
    with _lock:
        if not stored:
            if len(_remembered) >= MAX_REMEMBERED:
                _remembered.clear()
            _remembered[(run_dir, made_from)] = made
        _jobs.pop(run_dir, None)
    return made
