"""Cached data access for the pages. Everything read goes through `tracking`.

Rule (Streamlit's performance guide): cache the expensive source data keyed on the file's
state, apply filters and choices outside the cached functions, never mutate a cached frame.
"""
from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from curvewatch import tracking
from curvewatch.diagnosis import diagnose, with_forecast
from curvewatch.tracking import (
    HistoryReader,
    LayersReader,
    RunInfo,
    RunNotFound,
    StepsReader,
    safeio,
)
from curvewatch.tracking.history_cache import CACHE_MIN_BYTES
from curvewatch.tracking.paths import RUNS_ENV
from curvewatch.tracking.remote_read import local_runs_dir
from curvewatch.trainer.config import run_thresholds
from curvewatch.trainer.errors import ConfigError

from . import forecast_band, summaries
from .downsample import screen_rows
from .figures import with_steps

#: the run folder's files whose (mtime, size) key the caches (names from docs/run-format.md)
METRICS_FILE = "metrics.jsonl"
LAYERS_FILE = "layers.jsonl"
STEPS_FILE = "steps.jsonl"


def runs_dir() -> Path:
    """The runs directory: $CURVEWATCH_RUNS or ./runs (read on every script run, so tests and
    users can point it elsewhere); for a URL, this machine's mirror of it, refreshed at most
    every $CURVEWATCH_POLL_SECONDS (tracking.remote_read)."""
    return local_runs_dir(os.environ.get(RUNS_ENV) or str(tracking.default_runs_dir()),
                          reading=True)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run, newest first, from run.json + status.json only (tracking caches those by
    mtime and size, so a rerun re-parses only what changed)."""
    return tracking.list_runs(root if root is not None else runs_dir())


def resolve_run(root: Path, run_id: str | None) -> Path | None:
    """The folder of a run id taken from a URL or widget, or None when it is not a run here.
    Every id from outside goes through tracking.run_path (rejects traversal and symlinks)."""
    if not run_id:
        return None
    try:
        return tracking.run_path(root, str(run_id))
    except (RunNotFound, ValueError, OSError):
        return None


def list_groups(root: Path | None = None) -> list[Any]:
    """Run groups (k-fold, bootstrap, repeated seeds, sweeps), newest first; [] when the
    folder has none."""
    return tracking.list_groups(root if root is not None else runs_dir())


def load_group(root: Path, group_id: str | None) -> Any | None:
    """GroupInfo with its aggregate computed now (live members included), or None when
    `group_id` (from a URL) names no group here."""
    if not group_id:
        return None
    try:
        path = tracking.group_path(root, str(group_id))
        group = tracking.read_group(path, curves=True)
    except (LookupError, ValueError, OSError):
        return None
    if group.state != "unreadable":
        try:
            group = dataclasses.replace(group, aggregate=tracking.aggregate_group(group, live=True))
        except Exception as e:  # said on the page (group.problem), with the stored aggregate
            group = dataclasses.replace(group, problem=f"its live aggregate cannot be computed: "
                                        f"{type(e).__name__}: {e}")
    return group


def is_group(root: Path, some_id: str) -> bool:
    path = resolve_run(root, some_id)
    return path is not None and tracking.is_group_dir(path)


def file_state(path: Path) -> tuple[int, int]:
    """(mtime_ns, size) of a file, (0, 0) when it does not exist: the cache key of its content."""
    try:
        s = os.stat(path)
    except OSError:
        return (0, 0)
    return (s.st_mtime_ns, s.st_size)


@st.cache_data(max_entries=256, show_spinner=False)
def _history_cached(run_dir: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return tracking.read_history(run_dir)


def load_history(run_dir: Path | str) -> pd.DataFrame:
    """A run's per-epoch history, re-read only when metrics.jsonl changed."""
    mtime, size = file_state(Path(run_dir) / METRICS_FILE)
    return _history_cached(str(run_dir), mtime, size)


@dataclasses.dataclass(frozen=True)
class RunView:
    """What the Run page draws of a run read from its files (not followed live): `history` is
    its rows cut to screen resolution (every row of a run of at most SCREEN_POINTS epochs),
    the findings (with their forecasts) and the forecast band come from the whole history."""
    history: pd.DataFrame
    rows: int  # rows of the whole history
    first_epoch: int | None
    last_epoch: int | None
    findings: tuple[Any, ...]
    band: Any  # diagnosis.Forecast | None
    failed: str | None  # why there are no findings (DiagnosisFailed), or None


def run_view(run_dir: Path | str, thresholds: Any, steps_per_epoch: Any,
             epochs: int | None) -> RunView:
    """The Run page's data for a run not followed live, computed once per state of its files
    (metrics, layers, run.json, best.pt): a rerun costs the cache lookup, not a read and a
    diagnosis of a million rows. `thresholds`: thresholds_for(config)."""
    p = Path(run_dir)
    return _run_view_cached(str(p), file_state(p / METRICS_FILE), file_state(p / LAYERS_FILE),
                            file_state(p / tracking.paths.RUN_JSON), best_checkpoint(p),
                            thresholds, steps_per_epoch, epochs)


@st.cache_data(max_entries=8, show_spinner=False)
def _run_view_cached(run_dir: str, metrics: tuple[int, int], layers: tuple[int, int],
                     run_json: tuple[int, int], best: str | None, thresholds: Any,
                     steps_per_epoch: Any, epochs: int | None) -> RunView:
    history = with_steps(tracking.read_history(run_dir), steps_per_epoch)
    first, last = _epoch_bounds(history)
    findings: list[Any] = []
    failed = None
    try:
        findings = findings_for(history, tracking.read_layers(run_dir), thresholds, run_dir)
        findings = list(with_forecast(findings, history, epochs))
    except DiagnosisFailed as e:
        failed = str(e)
    return RunView(screen_rows(history), len(history), first, last, tuple(findings),
                   forecast_band.band_forecast(history, epochs), failed)


def span_history(run_dir: Path | str, span: tuple[int, int], steps_per_epoch: Any
                 ) -> pd.DataFrame:
    """The rows of epochs span[0]..span[1] of a run read from its files, at full resolution
    when the span holds at most SCREEN_POINTS rows, else cut to screen resolution (a zoom
    re-reads the detail; cached per file state and span)."""
    mtime, size = file_state(Path(run_dir) / METRICS_FILE)
    return _span_cached(str(run_dir), mtime, size, (int(span[0]), int(span[1])),
                        steps_per_epoch)


@st.cache_data(max_entries=16, show_spinner=False)
def _span_cached(run_dir: str, mtime_ns: int, size: int, span: tuple[int, int],
                 steps_per_epoch: Any) -> pd.DataFrame:
    return screen_rows(with_steps(tracking.read_history(run_dir), steps_per_epoch), span)


def _epoch_bounds(history: pd.DataFrame) -> tuple[int | None, int | None]:
    if "epoch" not in history.columns:
        return None, None
    ep = pd.to_numeric(history["epoch"], errors="coerce")
    if not ep.notna().any():
        return None, None
    return int(ep.min()), int(ep.max())


@st.cache_data(max_entries=128, show_spinner=False)
def _layers_cached(run_dir: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return tracking.read_layers(run_dir)


def load_layers(run_dir: Path | str) -> pd.DataFrame:
    mtime, size = file_state(Path(run_dir) / LAYERS_FILE)
    return _layers_cached(str(run_dir), mtime, size)


def live_history(run_dir: Path | str) -> pd.DataFrame:
    """History for the live tick: one HistoryReader per run kept in session state, so each
    tick parses only the bytes appended since the previous one."""
    readers: dict[str, HistoryReader] = st.session_state.setdefault("_history_readers", {})
    key = str(run_dir)
    reader = readers.get(key)
    if reader is None:
        reader = readers[key] = HistoryReader(run_dir)
    return reader.read()


@st.cache_data(max_entries=32, show_spinner=False)
def _steps_cached(run_dir: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return tracking.read_steps(run_dir)


def load_steps(run_dir: Path | str, live: bool = False) -> pd.DataFrame:
    """The run's per-step log ('step' plus loss, grad_norm, lr ...); empty without one."""
    if live:
        followers: dict[str, StepsReader] = st.session_state.setdefault("_steps_followers", {})
        key = str(run_dir)
        if key not in followers:
            followers[key] = StepsReader(run_dir)
        return followers[key].read()
    mtime, size = file_state(Path(run_dir) / STEPS_FILE)
    if size == 0:
        return pd.DataFrame({"step": pd.Series(dtype="int64")})
    return _steps_cached(str(run_dir), mtime, size)


def live_layers(run_dir: Path | str) -> pd.DataFrame:
    """Per-layer gradient norms of a live run: one tracking.LayersReader per run in session
    state, parsing only the lines appended since the previous tick."""
    followers: dict[str, LayersReader] = st.session_state.setdefault("_layers_followers", {})
    key = str(run_dir)
    if key not in followers:
        followers[key] = LayersReader(run_dir)
    return followers[key].read()


class DiagnosisFailed(Exception):
    """The diagnosis of a run could not be made; the message names the run and the cause
    (a page shows it as an error, never as a healthy run)."""


def thresholds_for(config: dict[str, Any] | None, run: Any = None) -> Any:
    """trainer.config.run_thresholds (the trainer's own judgement of a run), or
    DiagnosisFailed naming `run` when its config's overrides are invalid."""
    try:
        return run_thresholds(config or {})
    except ConfigError as e:
        raise DiagnosisFailed(f"run {_run_name(run)} cannot be diagnosed: {e}") from e


def _run_name(run: Any) -> str:
    return Path(run).name if run is not None else "(unnamed)"


_FROM_RUN: Any = object()


def findings_for(history: pd.DataFrame, layers: pd.DataFrame | None = None,
                 thresholds: Any = None, run_dir: Any = None, *,
                 chance: Any = _FROM_RUN) -> list[Any]:
    """diagnose() on a history ([] for an empty one); DiagnosisFailed naming the run when it
    raises, so a page shows the error instead of "no problems". With `run_dir`, the advice
    names the run's best checkpoint when it has one (best.pt), and only then (own loops and
    imports have none). `chance`: the chance loss when already read (a worker thread has no
    Streamlit cache), else chance_loss(run_dir)."""
    if history is None or history.empty:
        return []
    try:
        return list(diagnose(history, thresholds=thresholds,
                             layers=layers if layers is not None and not layers.empty else None,
                             best_checkpoint=best_checkpoint(run_dir),
                             chance_loss=chance_loss(run_dir) if chance is _FROM_RUN
                             else chance))
    except Exception as e:  # any bug or bad value: reported with the run's name, not hidden
        raise DiagnosisFailed(f"the diagnosis of run {_run_name(run_dir)} failed: "
                              f"{type(e).__name__}: {e}") from e


def chance_loss(run_dir: Any) -> Any:
    """run.json's data.chance_loss (the loss of a model that learned nothing), as recorded, or
    None; diagnose checks it (a bad value fails the diagnosis with a message naming it)."""
    if run_dir is None:
        return None
    return _chance_cached(str(run_dir), *file_state(Path(run_dir) / tracking.paths.RUN_JSON))


@st.cache_data(max_entries=2048, show_spinner=False)
def _chance_cached(run_dir: str, mtime_ns: int, size: int) -> Any:
    return tracking.read_run(run_dir).data.get("chance_loss")


def best_checkpoint(run_dir: Any) -> str | None:
    """The name of the run's best-weights checkpoint if the file exists (best.pt), else None."""
    if run_dir is None:
        return None
    try:  # lstat: a symlink in a run folder is not followed (nor a checkpoint)
        mode = tracking.checkpoints.checkpoint_path(run_dir, tracking.BEST).lstat().st_mode
    except (OSError, ValueError):
        return None
    return tracking.BEST if stat.S_ISREG(mode) else None


#: The largest best.pt the Run page hands to the browser.
MAX_CHECKPOINT_BYTES = 2 << 30


def read_best_checkpoint(run_dir: Any) -> bytes:
    """The bytes of the run's best.pt, read as a regular file only (no symlink, FIFO or
    device), for the Run page's download; OSError when there is none."""
    path = tracking.checkpoints.checkpoint_path(run_dir, tracking.BEST)
    return safeio.read_regular(path, MAX_CHECKPOINT_BYTES)


#: run_summary's row while a large run's summary is made in the background
PENDING = {"flags": (), "best_val_acc": None, "source": "pending"}
_FAILED = summaries.Summary((("diagnosis_failed", "critical"),), None)


def _summarise(run_dir: str, thresholds: Any, chance: Any) -> summaries.Summary:
    """The summary of a run's whole history (no Streamlit call: it runs in a worker too)."""
    history = tracking.read_history(run_dir)
    try:
        flags = tuple((f.kind, f.severity) for f in findings_for(
            history, None, thresholds, run_dir, chance=chance))
    except DiagnosisFailed:  # a flag, never a clean row; the Run page shows the message
        flags = _FAILED.flags
    best_acc = None
    for col in ("val_acc", "val_r2"):
        if col in history.columns:
            v = pd.to_numeric(history[col], errors="coerce")
            if v.notna().any():
                best_acc = float(v.max())
            break
    return summaries.Summary(flags, best_acc)


def _summary_job(run_dir: str, mtime_ns: int, size: int, patience: Any, overrides: tuple
                 ) -> tuple[str, Callable[[], summaries.Summary]] | None:
    """The basis of a run's summary (summaries.basis) and how to make it; None when its
    thresholds are invalid (its summary is then _FAILED, no history read)."""
    try:
        th = thresholds_for({"patience": patience, "thresholds": dict(overrides)}, run_dir)
    except DiagnosisFailed:
        return None
    chance = chance_loss(run_dir)  # read here: a worker thread has no Streamlit cache
    judged = (repr(th), repr(chance), best_checkpoint(run_dir))
    return (summaries.basis(size, mtime_ns, judged),
            lambda: _summarise(run_dir, th, chance))


@st.cache_data(max_entries=2048, show_spinner=False)
def _summary_cached(run_dir: str, mtime_ns: int, size: int, patience: Any = None,
                    overrides: tuple = ()) -> summaries.Summary:
    job = _summary_job(run_dir, mtime_ns, size, patience, overrides)
    if job is None:
        return _FAILED
    if size < CACHE_MIN_BYTES:  # diagnosed about as fast as a stored summary is read
        return job[1]()
    return summaries.stored_or_made(run_dir, *job)


def _in_background(run_dir: str, mtime_ns: int, size: int, patience: Any, overrides: tuple,
                   wait: bool) -> summaries.Summary | None:
    """A large run's summary made in a worker (summaries.in_background); None while it is
    being made, unless `wait`."""
    job = _summary_job(run_dir, mtime_ns, size, patience, overrides)
    if job is None:
        return _FAILED
    while True:
        future, current = summaries.in_background(run_dir, *job, failed=_FAILED)
        if not (wait or future.done()):
            return None
        made = future.result()  # of an earlier state of the file, unless current: ask again
        if current:
            return made


def run_summary(info: RunInfo, *, wait: bool = True) -> dict[str, Any]:
    """{'flags': ((kind, severity), ...), 'best_val_acc': float | None, 'source': ...}.

    The trainer writes its findings (`flags`) and `best_val_acc` into status.json (every 2 s
    and at the end), so for its runs nothing but status.json is read ('source': 'status').
    Runs without `flags` in status.json (a user's own loop through tracking.Run) fall back to
    diagnosing their metrics.jsonl ('source': 'metrics'), once per state of the file: kept in
    memory and, from 64 KiB, in `.summary.json` (dashboard.summaries). A metrics.jsonl over
    summaries.BACKGROUND_BYTES is diagnosed in a worker thread; without `wait` its row is
    PENDING ('source': 'pending') until that is done.
    """
    empty = {"flags": (), "best_val_acc": None, "source": "none"}
    if info.state == "unreadable":
        return empty
    status = info.status or {}
    if isinstance(status.get("flags"), list):
        flags = tuple((str(f.get("kind")), str(f.get("severity", "info")))
                      for f in status["flags"] if isinstance(f, dict) and f.get("kind"))
        acc = status.get("best_val_acc")
        return {"flags": flags, "source": "status",
                "best_val_acc": float(acc) if isinstance(acc, (int, float))
                and not isinstance(acc, bool) else None}
    mtime, size = file_state(info.path / METRICS_FILE)
    if size == 0:
        return empty
    th = info.config.get("thresholds") if isinstance(info.config.get("thresholds"), dict) else {}
    judged = (info.config.get("patience"), tuple(sorted((str(k), str(v)) for k, v in th.items())))
    if size <= summaries.BACKGROUND_BYTES:
        made = _summary_cached(str(info.path), mtime, size, *judged)
    else:
        made_or_not = _in_background(str(info.path), mtime, size, *judged, wait)
        if made_or_not is None:
            return PENDING
        made = made_or_not
    return {"flags": made.flags, "best_val_acc": made.best_val_acc, "source": "metrics"}


def run_flags(info: RunInfo) -> tuple[tuple[str, str], ...]:
    """(kind, severity) of the run's current findings (see run_summary)."""
    return run_summary(info)["flags"]


# ------------------------------------------------------------------------------ groups
def member_rows(root: Path, group: Any) -> list[dict[str, Any]]:
    """One row per group member for the group page: what the group record planned (fold,
    seed, setting) and, from the member's run.json + status.json only, its state, progress,
    best epoch, best val loss / accuracy and flags."""
    rows = []
    for m in group.members:
        info = None
        if m.run_id:
            path = resolve_run(root, m.run_id)
            info = tracking.read_run(path) if path is not None else None
        summ = run_summary(info) if info is not None else {"flags": (), "best_val_acc": None}
        status = info.status if info is not None else {}
        epochs = info.epochs if info is not None else None
        rows.append({
            "member": m.index, "name": m.name,
            "state": m.state if info is None or info.problem else info.state,
            "fold": m.fold, "seed": m.seed, "setting": m.setting,
            "params": ", ".join(f"{k}={v}" for k, v in (m.params or {}).items()),
            "progress": (min(1.0, info.epoch / epochs) if info is not None and epochs
                         else None),
            "epoch": f"{info.epoch}/{epochs}" if info is not None and epochs else "",
            "epochs done": info.epoch if info is not None else None,
            "epochs planned": epochs,
            "best epoch": info.best_epoch if info is not None else None,
            "best val loss": info.best_val_loss if info is not None else None,
            "best val acc": summ["best_val_acc"],
            "flags": tuple(summ["flags"]),
            "error": m.error or (status.get("error") if isinstance(status.get("error"), str)
                                 else "") or "",
            "run_id": m.run_id or "",
        })
    return rows


def member_histories(root: Path, group: Any, live: bool = False) -> dict[str, pd.DataFrame]:
    """Each member's history keyed by its run id (live: incremental readers)."""
    out: dict[str, pd.DataFrame] = {}
    for rid in group.run_ids:
        path = resolve_run(root, rid)
        if path is not None:
            out[rid] = live_history(path) if live else load_history(path)
    return out
