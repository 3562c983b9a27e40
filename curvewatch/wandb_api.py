"""The wandb-style API: `init`, `log`, `config`, `summary`, `finish`, `run`, so that a script
written for wandb runs with `import curvewatch as wandb` (the subset in docs/own-project.md).

One run is active per process. Rows become epoch and step lines by curvewatch.rows; the lines
are written through tracking.Run as they complete. A script that ends without `finish()`
finishes its run at exit (`completed`); an uncaught exception marks it `failed` with the
traceback, Ctrl-C `stopped`, as the Run context manager does.
"""
from __future__ import annotations

import atexit
import sys
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping

from curvewatch.tracking import Run
from curvewatch.tracking.writer import error_tail

from .rows import EpochLine, Line, Rows, StepLine, flatten
from .watch import GradWatch

#: wandb.init arguments accepted and ignored: they choose wandb's servers, its own folders or
#: what it uploads, none of which exists here.
IGNORED_INIT_ARGS = ("entity", "dir", "save_code", "settings", "anonymous", "job_type",
                     "reinit", "sync_tensorboard", "monitor_gym")
MODES = ("online", "offline")


class NotInitialized(RuntimeError):
    """A wandb-style call before `curvewatch.init()` (or after `finish()`)."""


_lock = threading.RLock()
_active: WandbRun | None = None


class Config(MutableMapping[str, Any]):
    """The run's hyperparameters, by attribute (`config.lr`) or item (`config["lr"]`); every
    change is written to run.json's config at once."""

    def __init__(self, run: Run, values: Mapping[str, Any]):
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_values", dict(values))

    def update(self, d: Any = (), /, allow_val_change: bool | None = None,
               **kwargs: Any) -> None:
        """Merge a dict (or an argparse Namespace, as wandb takes) and write it once."""
        values = {**as_config(d), **as_config(kwargs)}
        self._values.update(values)
        self._run.update_config(values)
        if _planned(values) is not None:
            self._run.update_status(epochs=_planned(values))

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        self.update({k: v for k, v in d.items() if k not in self._values})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"config keys cannot be deleted (run.json keeps {key!r})")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}; it has "
                                 f"{', '.join(sorted(self._values)) or 'none'}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def __repr__(self) -> str:
        return f"Config({self._values!r})"


class Summary(MutableMapping[str, Any]):
    """The run's final values (status.json's `summary`): set by the script, plus the values it
    logged after its last epoch."""

    def __init__(self, run: Run):
        self._run = run
        self._values: dict[str, Any] = {}

    def update(self, d: Any = (), /, **kwargs: Any) -> None:
        self._values.update(flatten({**dict(d), **kwargs}))
        self._run.update_status(summary=dict(self._values))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._values[key]
        self._run.update_status(summary=dict(self._values))

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class WandbRun:
    """The active run, as `curvewatch.init()` returns it and `curvewatch.run` names it."""

    def __init__(self, run: Run, config: Mapping[str, Any]):
        self._run = run
        self._rows = Rows()
        self.config = Config(run, config)
        self.summary = Summary(run)
        self.finished = False
        self._grads = GradWatch()

    @property
    def id(self) -> str:
        return self._run.id

    @property
    def name(self) -> str:
        return str(self._run.info["name"])

    @property
    def path(self) -> Path:
        """The run folder."""
        return self._run.path

    dir = path

    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> None:
        """Log metrics (see curvewatch.rows for how rows become epochs and steps)."""
        with _lock:
            self._check_open("log")
            self._write(self._rows.log(data, step=step, commit=commit))
            if self._grads.models:  # after the write: these gradients are of the next line
                self._grads.sample()

    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients",
              log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
        """Record the gradient norms of `models` (curvewatch/watch.py); wandb's other
        arguments are accepted and ignored."""
        with _lock:
            self._check_open("watch")
            self._grads.add(models, log)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Write the last epoch and end the run: `completed`, or `failed` for a non-zero
        exit code. A second call does nothing."""
        if exit_code:
            self._end("failed", error=f"finished with exit code {exit_code}")
        else:
            self._end("completed")

    def __enter__(self) -> WandbRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _end_with(self, exc)

    def _end(self, state: str, **kwargs: Any) -> None:
        global _active
        with _lock:
            if self.finished:
                return
            self.finished = True
            if _active is self:
                _active = None
            try:
                lines, left = self._rows.finish()
                self._write(lines)
                if left:
                    self.summary.update({k: v for k, v in left.items()
                                         if k not in self.summary})
            finally:
                self._grads.close()
                self._run.finish(state, **kwargs)

    def _write(self, lines: list[Line]) -> None:
        for line in lines:
            if isinstance(line, EpochLine):
                columns, layers = self._grads.take()
                self._run.log_epoch(line.epoch, layers=layers or None,
                                    **{**columns, **line.values})
            elif isinstance(line, StepLine):
                self._run.log_step(line.step, **line.values)

    def _check_open(self, call: str) -> None:
        if self.finished:
            raise NotInitialized(f"curvewatch.{call}() after finish() of run {self.id}: call "
                                 f"curvewatch.init() to start another run")


def init(project: str | None = None, name: str | None = None,
         config: Mapping[str, Any] | Any | None = None, runs_dir: str | Path | None = None, *,
         tags: list[str] | tuple[str, ...] | None = None, notes: str | None = None,
         group: str | None = None, mode: str | None = None, **kwargs: Any) -> WandbRun:
    """Start a run in `runs_dir` ($CURVEWATCH_RUNS, else ./runs) and make it the active one;
    an active run is finished first (`completed`). `project` and `group` become tags."""
    unknown = sorted(set(kwargs) - set(IGNORED_INIT_ARGS))
    if unknown:
        raise TypeError(f"curvewatch.init() got unsupported argument(s) {', '.join(unknown)}; "
                        f"it takes project, name, config, runs_dir, tags, notes, group, mode "
                        f"and ignores {', '.join(IGNORED_INIT_ARGS)}")
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (both write the run folder "
                         f"locally) or None, got {mode!r}")
    values = as_config(config)
    labels = [*(tags or ()), *(t for t in (project, group) if t)]
    global _active
    with _lock:
        if _active is not None:
            _active.finish()
        run = Run.create(runs_dir, name=name or project or "run", config=values,
                         tags=labels, notes=notes or "", epochs=_planned(values))
        _active = WandbRun(run, values)
        _install_hooks()
        return _active


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None,
        sync: bool | None = None) -> None:
    """Log metrics to the active run (wandb.log's arguments; `sync` is ignored)."""
    active("log()").log(data, step=step, commit=commit)


def watch(models: Any, criterion: Any = None, log: str | None = "gradients",
          log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
    """wandb.watch: the active run records the gradient norms of `models` at each log()
    call that follows a backward pass (per epoch: mean and max global norm, per-tensor RMS)."""
    active("watch()").watch(models, criterion, log, log_freq, idx, log_graph)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the active run; does nothing when none is active (as wandb.finish)."""
    with _lock:
        run = _active
    if run is not None:
        run.finish(exit_code, quiet)


def as_config(config: Any) -> dict[str, Any]:
    """A config as run.json stores it: a dict, an argparse Namespace (its attributes) or None;
    values JSON cannot hold (a Path, a dtype) as their str(), as wandb stores them."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        if not hasattr(config, "__dict__"):
            raise TypeError(f"config must be a dict or an argparse Namespace, got "
                            f"{type(config).__name__}")
        config = vars(config)
    return {str(k): _plain(v) for k, v in config.items()}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _planned(config: Mapping[str, Any]) -> int | None:
    """The epochs a config plans (its `epochs`), for the listings' progress and ETA."""
    epochs = config.get("epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) \
        and epochs > 0 else None


def active(call: str) -> WandbRun:
    """The active run; NotInitialized naming the call when there is none."""
    with _lock:
        if _active is None:
            raise NotInitialized(f"curvewatch.{call} was used before curvewatch.init(): "
                                 f"call curvewatch.init(name=..., config=...) first")
        return _active


def current() -> WandbRun | None:
    """The active run, or None (what `curvewatch.run` gives)."""
    return _active


# ---------------------------------------------------------------- process end
_hooked = False


def _install_hooks() -> None:
    """Once per process: an uncaught exception fails the active run, exit finishes it."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        run = _active
        if run is not None:
            _end_with(run, exc)
        previous(kind, exc, tb)

    sys.excepthook = hook
    atexit.register(finish)


def _end_with(run: WandbRun, exc: BaseException | None) -> None:
    if exc is None:
        run.finish()
    elif isinstance(exc, KeyboardInterrupt):
        run._end("stopped", stop_reason="interrupted (Ctrl-C)")
    else:
        run._end("failed", error=error_tail(exc))
