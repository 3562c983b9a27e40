"""The run writer: the public logging API for the trainer and for users' own training loops.

    from curvewatch.tracking import Run
    with Run.create("runs", name="my-experiment", config=vars(args)) as run:
        for epoch in range(1, epochs + 1):
            ...
            run.log_epoch(train_loss=tl, val_loss=vl, val_acc=va, grad_norm=g)

The context manager records `completed` on a clean exit, `stopped` on Ctrl-C and `failed` with
the traceback's tail on an exception. A heartbeat thread refreshes status.json every few
seconds so a reader can tell a live run from a crashed one.
"""
from __future__ import annotations

import math
import numbers
import os
import platform
import sys
import threading
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping, TypeGuard

from . import paths as P, sync
from .jsonio import atomic_write_json, read_json, update_json
from .jsonl import JsonlAppender, read_from
from .procinfo import hostname, process_start_ticks

STATES, FINAL_STATES = P.STATES, P.FINAL_STATES
HEARTBEAT_SECONDS = 5.0
#: status.json is rewritten at most this often by log_epoch (an atomic replace costs far more
#: than an append); listings may lag metrics.jsonl by this much. finish() always writes.
STATUS_EVERY_SECONDS = 1.0
ERROR_TAIL_CHARS = 4000


def error_tail(exc: BaseException) -> str:
    """The last part of a formatted traceback, short enough for status.json."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-ERROR_TAIL_CHARS:]


def checked_chance_loss(value: Any) -> float:
    """`value` as a chance-level loss (a finite number > 0); ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"chance_loss must be a finite number > 0 (ln K for K classes, the "
                         f"target variance for MSE) or None, got {value!r}")
    return float(value)


class NotRankZero(RuntimeError):
    """A run was opened on a process other than rank 0 of a distributed job."""


def check_rank_zero(rank: int | None) -> None:
    """Refuse to write a run from a process other than rank 0 of a distributed job: one job
    is one run, written by rank 0. `rank` None reads $RANK (set by torchrun, Lightning,
    accelerate); a process with no rank is rank 0."""
    if rank is None:
        raw = os.environ.get("RANK", "").strip() or "0"
        try:
            rank = int(raw)
        except ValueError:
            raise NotRankZero(f"$RANK must be a process rank (an integer), got {raw!r}") \
                from None
    if rank != 0:
        raise NotRankZero(
            f"this process is rank {rank} of a distributed job, and only rank 0 writes the "
            "run: create it under `if rank == 0:` (the other ranks log nothing; pass rank=0 "
            "to write from this process all the same)")


def _finite(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and math.isfinite(x)


class Run:
    """An open run folder being written. Create with `Run.create` or continue with `Run.reopen`."""

    def __init__(self, path: Path, info: dict[str, Any], status: dict[str, Any], *,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS):
        self.path = Path(path)
        self.id = self.path.name
        self.info = info
        self._status = status
        self._lock = threading.RLock()
        self._metrics = JsonlAppender(self.path / P.METRICS)
        self._layers: JsonlAppender | None = None
        self._steps: JsonlAppender | None = None
        self._closed = False
        self._status_written = -math.inf  # the first epoch shows at once
        self._latest: dict[str, Any] | None = None  # status "latest" not yet filled in
        self._stop_heartbeat = threading.Event()
        self._heartbeat = None
        if heartbeat_seconds > 0:
            self._heartbeat = threading.Thread(target=self._beat, args=(heartbeat_seconds,),
                                               name=f"heartbeat-{self.id}", daemon=True)
            self._heartbeat.start()
        self._sync = sync.attach(self.path)  # a run in a spool mirrors to its bucket

    # ---------------------------------------------------------------- creation
    @classmethod
    def create(cls, runs_dir: str | Path | None = None, *, name: str = "run",
               config: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
               model: Mapping[str, Any] | None = None, group: str | None = None,
               tags: list[str] | tuple[str, ...] = (), notes: str = "",
               epochs: int | None = None, pid: int | None = None,
               heartbeat_seconds: float = HEARTBEAT_SECONDS,
               chance_loss: float | None = None, rank: int | None = None) -> "Run":
        """Make a new run folder with run.json and a `running` status.json.

        `pid` is the process that will write the run (default: this one); pass 0 when another
        process is about to take over (a detached launch), so only the heartbeat judges it.
        `chance_loss`: the loss of a model that has learned nothing (ln K for K classes under
        cross-entropy, the target's variance under MSE), recorded as run.json's
        data.chance_loss; the diagnosis uses it as the untrained level. None: not known.
        `rank`: this process's rank in a distributed job (None: $RANK); any but 0 raises
        NotRankZero, since one job writes one run, from rank 0."""
        check_rank_zero(rank)
        P.check_name(name)
        now = time.time()
        data = dict(data or {})
        if chance_loss is not None:
            data["chance_loss"] = checked_chance_loss(chance_loss)
        info = {
            "format": P.FORMAT_VERSION, "id": None, "name": name, "group": group,
            "created_at": now, "config": dict(config or {}), "data": data,
            "model": dict(model or {}), "environment": _environment(),
            "tags": list(tags), "notes": notes,
        }
        status = _initial_status(now, epochs, pid, heartbeat_seconds)

        def fill(run_id: str, staging: Path) -> None:
            info["id"] = run_id
            _reserve_space(staging)
            atomic_write_json(staging / P.RUN_JSON, info)
            atomic_write_json(staging / P.STATUS_JSON, status)

        path = sync.publish_run(runs_dir, name, fill)  # a URL: into the spool, synced up
        return cls(path, info, status, heartbeat_seconds=heartbeat_seconds)

    @classmethod
    def reopen(cls, run_dir: str | Path, *, epochs: int | None = None, resumed: bool = True,
               heartbeat_seconds: float = HEARTBEAT_SECONDS, clear_stop: bool = True,
               rank: int | None = None) -> "Run":
        """Continue writing an existing run in this process: state goes back to `running` and
        later epochs append after the ones already written. `resumed=False` is a detached
        worker taking over the folder its launcher just created. `clear_stop=False` keeps a
        STOP file (a detached resume's launcher cleared the old one; a STOP written since is a
        request to stop the resumed run). `rank` as in `create`."""
        check_rank_zero(rank)
        path = Path(run_dir)
        info = read_json(path / P.RUN_JSON)
        try:
            old = read_json(path / P.STATUS_JSON)
        except (OSError, ValueError):
            old = {}
        status = _initial_status(time.time(), epochs or old.get("epochs"), None,
                                 heartbeat_seconds)
        status["started_at"] = old.get("started_at", status["started_at"])
        # metrics.jsonl, not the old status, is the truth about which epochs exist.
        for record in read_from(path / P.METRICS).records:
            if isinstance(record.get("epoch"), int) and record["epoch"] > status["epoch"]:
                _note_epoch(status, record)
        resumes = old.get("resumes") if isinstance(old.get("resumes"), int) else 0
        status["resumes"] = resumes + int(resumed)
        if resumed:
            status["resumed_at"] = time.time()
        if resumed and clear_stop:
            # a STOP left from before (a group's stop can land after its member has ended)
            # must not stop the run its owner now asks to go on
            try:
                (path / P.STOP).unlink()
            except FileNotFoundError:
                pass
        _reserve_space(path)
        atomic_write_json(path / P.STATUS_JSON, status)
        return cls(path, info, status, heartbeat_seconds=heartbeat_seconds)

    # ---------------------------------------------------------------- logging
    @property
    def last_epoch(self) -> int:
        return int(self._status.get("epoch") or 0)

    @property
    def status(self) -> dict[str, Any]:
        with self._lock:
            self._fill_latest()
            return dict(self._status)

    def log_epoch(self, epoch: int | None = None, *, layers: Mapping[str, float] | None = None,
                  **metrics: Any) -> dict[str, Any]:
        """Append one finished epoch to metrics.jsonl (and its per-layer gradient norms to
        layers.jsonl), then update status.json. Epochs are 1-based and strictly increasing;
        `epoch` defaults to the next one and `time` to now. Returns the record written."""
        with self._lock:
            self._check_open()
            last = self.last_epoch
            epoch = last + 1 if epoch is None else epoch
            if not isinstance(epoch, int) or epoch <= last:
                raise ValueError(f"epoch must be an int greater than the last logged epoch "
                                 f"{last}, got {epoch!r}")
            record = {"epoch": epoch, **metrics}
            record.setdefault("time", time.time())
            self._metrics.append(record)
            if layers:
                if self._layers is None:
                    self._layers = JsonlAppender(self.path / P.LAYERS)
                self._layers.append({"epoch": epoch, "grad_norm": dict(layers)})
            _note_epoch(self._status, record)
            self._latest = dict(record)  # a copy: the caller gets `record` back to keep
            if time.monotonic() - self._status_written >= STATUS_EVERY_SECONDS:
                self._write_status(durable=False)
            return record

    def log_step(self, step: int, **values: Any) -> None:
        """Append a per-step record (loss, grad_norm, lr ...) to steps.jsonl."""
        with self._lock:
            self._check_open()
            if self._steps is None:
                self._steps = JsonlAppender(self.path / P.STEPS)
            self._steps.append({"step": step, **values})

    def update_status(self, **fields: Any) -> None:
        """Merge extra fields (e.g. `epochs`, `note`) into status.json."""
        with self._lock:
            self._check_open()
            self._status.update(fields)
            self._write_status(durable=False)

    def update_config(self, values: Mapping[str, Any]) -> None:
        """Merge `values` into run.json's config (one atomic replace): hyperparameters a
        script sets after its run started (`curvewatch.config`)."""
        with self._lock:
            self._check_open()

            def change(info: Any) -> Any:
                info["config"] = {**info.get("config", {}), **values}
                return info
            # the file's run.json, not this copy: notes or tags edited since are kept
            self.info = update_json(self.path / P.RUN_JSON, change, durable=False)

    def stop_requested(self) -> bool:
        """True once someone asked this run to stop (the STOP file exists)."""
        return (self.path / P.STOP).exists()

    def finish(self, state: str = "completed", *, error: str | None = None,
               stop_reason: str | None = None, stopped_by: Mapping[str, Any] | None = None) -> None:
        """Record the final state durably and close the files. A second call does nothing."""
        if state not in FINAL_STATES:
            raise ValueError(f"state must be one of {', '.join(FINAL_STATES)}, got {state!r}")
        with self._lock:
            if self._closed:
                return
            self._status.update(state=state, ended_at=time.time(), error=error,
                                stop_reason=stop_reason,
                                stopped_by=dict(stopped_by) if stopped_by else None)
            self._release_reserve()  # frees room for this write if the disk is full
            try:
                for f in self._appenders():
                    try:
                        f.fsync()
                    except OSError:
                        pass  # the state below matters more; a write error already failed us
                self._write_status(durable=True)
            finally:
                self.close()
            try:
                (self.path / P.STOP).unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Stop the heartbeat and close files without changing the state. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_heartbeat.set()
            for f in self._appenders():
                f.close()
            self._release_reserve()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=5)
        if self._sync is not None:
            self._sync.stop(compact=self._status.get("state") in FINAL_STATES)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._closed:
            return
        if exc is None:
            self.finish("completed")
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("stopped", stop_reason="interrupted (Ctrl-C)")
        else:
            self.finish("failed", error=error_tail(exc))

    # ---------------------------------------------------------------- internals
    def _release_reserve(self) -> None:
        try:
            (self.path / P.RESERVE).unlink()
        except OSError:
            pass

    def _appenders(self) -> list[JsonlAppender]:
        return [f for f in (self._metrics, self._layers, self._steps) if f is not None]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"run {self.id} is closed")

    def _fill_latest(self) -> None:
        """status.json's `latest` (the last record without nested values), built when status
        is written or read rather than on every log_epoch: most epochs only append a line."""
        if self._latest is not None:
            self._status["latest"] = {k: v for k, v in self._latest.items()
                                      if not isinstance(v, (dict, list))}
            self._latest = None

    def _write_status(self, *, durable: bool) -> None:
        self._fill_latest()
        self._status_written = time.monotonic()
        self._status["updated_at"] = time.time()
        atomic_write_json(self.path / P.STATUS_JSON, self._status, durable=durable)

    def _beat(self, every: float) -> None:
        while not self._stop_heartbeat.wait(every):
            with self._lock:
                if self._closed:
                    return
                try:
                    self._write_status(durable=True)
                except OSError:
                    pass  # the next epoch's write reports the error to the training loop


def _reserve_space(run_dir: Path) -> None:
    """Hold RESERVE_BYTES on disk while the run is open (a ballast file, as CockroachDB does):
    when the disk fills up, finish() deletes it so the final state can still be written."""
    path = run_dir / P.RESERVE
    with open(path, "wb") as f:
        f.write(b"\0" * P.RESERVE_BYTES)


def _note_epoch(st: dict[str, Any], record: dict[str, Any]) -> None:
    """Fold one epoch record into a status dict: epoch, step and the best val loss (the
    latest metrics are filled in when status is written: Run._fill_latest)."""
    st["epoch"] = record["epoch"]
    if "step" in record:
        st["step"] = record["step"]
    vl = record.get("val_loss")
    if _finite(vl):
        best = st.get("best_val_loss")
        if not _finite(best) or vl < best:
            st["best_val_loss"], st["best_epoch"] = float(vl), record["epoch"]
    va = record.get("val_acc")
    if _finite(va):
        best = st.get("best_val_acc")
        if not _finite(best) or va > best:
            st["best_val_acc"] = float(va)


def _initial_status(now: float, epochs: int | None, pid: int | None,
                    heartbeat_seconds: float) -> dict[str, Any]:
    pid = os.getpid() if pid is None else pid
    return {
        "format": P.FORMAT_VERSION, "state": "running", "pid": pid or None,
        "pid_start": process_start_ticks(pid) if pid else None, "host": hostname(),
        "started_at": now, "updated_at": now, "ended_at": None, "epoch": 0, "epochs": epochs,
        "step": 0, "best_epoch": None, "best_val_loss": None, "latest": {},
        "stop_reason": None, "stopped_by": None, "error": None,
        "heartbeat_seconds": heartbeat_seconds,
    }


def _environment() -> dict[str, Any]:
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "host": hostname(), "argv": sys.argv[:]}
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
    return env
