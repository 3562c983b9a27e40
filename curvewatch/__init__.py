"""Curvewatch's public API: `import curvewatch`.

- The logging API of run folders: `Run` (your own loop: `Run.create(...)`, `log_epoch`,
  `log_step`), `gradient_norms`, and the readers (`read_run`, `read_history`, `list_runs`).
- The diagnosis: `diagnose(history)` gives the findings.
- A wandb-style API, so that `import curvewatch as wandb` runs a wandb script: `init`, `log`,
  `watch`, `finish`, `config`, `summary`, `run` (curvewatch/wandb_api.py; docs/own-project.md lists
  the subset).

Integrations (curvewatch.lightning, curvewatch.transformers) are imported only by the users
who ask for them; this module never imports them.
"""
from typing import Any

from curvewatch.diagnosis import Finding, diagnose
from curvewatch.tracking import (
    Run,
    default_runs_dir,
    gradient_norms,
    list_runs,
    read_history,
    read_run,
    read_steps,
)

from .wandb_api import NotInitialized, WandbRun, finish, init, log, watch

__version__ = "0.1.0"

__all__ = [
    "Finding", "NotInitialized", "Run", "WandbRun", "__version__", "default_runs_dir",
    "diagnose", "finish", "gradient_norms", "init", "list_runs", "log", "read_history",
    "read_run", "read_steps", "watch",
]


def __getattr__(name: str) -> Any:
    """`curvewatch.run`, `.config` and `.summary` follow the active run, as wandb's do
    (`run` is None before init; `config` and `summary` need an active run)."""
    from . import wandb_api

    if name == "run":
        return wandb_api.current()
    if name in ("config", "summary"):
        try:
            return getattr(wandb_api.active(name), name)
        except wandb_api.NotInitialized as e:  # hasattr() and getattr(m, n, d) expect this
            raise AttributeError(str(e)) from None
    raise AttributeError(f"module 'curvewatch' has no attribute {name!r}")
