"""Fixture runs for the dashboard tests, generated at test time (nothing committed):

- writer runs (`tracking.Run`, instant): a healthy pair in one group (seeds 0 and 1), an
  overfitting run stopped early by a real diagnosis finding, a diverging run that failed with
  NaN, a regression run (r2 instead of accuracy), a run that is still running (this process
  writes it, heartbeat on), and an unreadable folder (broken run.json);
- real short trainings through the trainer's CLI: an overfitting run with early stopping on
  (digits, 300 samples, 10% label noise, 512x512), a short healthy run, a 3-fold
  cross-validation group and a 2-setting sweep (--parallel 2).

`fixture_runs()` builds them once per test process and returns a `Fixtures` record.
"""
from __future__ import annotations

import atexit
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conftest import run_trainer, trainer_forks, wait_for  # noqa: E402,F401  (dfx.wait_for)
from curvewatch import tracking  # noqa: E402,F401  (tests use dfx.tracking)
from curvewatch.tracking import Run  # noqa: E402
from curvewatch.trainer.demo import DEMO_RUNS  # noqa: E402

LAYERS = ("net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias")
#: one torch thread per fixture training: three at once on a 2-core machine must not thrash
THREADS = ("--threads", "1")
#: the overfitting demo run (its finding's margin over seeds and threads is measured by
#: bench/demo_margins.py: from epoch 18-28 of 80), cut to 60 epochs and stopped by the finding
OVERFIT_ARGS = (*DEMO_RUNS["demo-overfitting-mlp"], "--epochs", "60",
                "--early-stop", "overfitting")


def trainer(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m trainer ARGS` to its end, in a process forked from the pre-imported server."""
    return run_trainer(*args, timeout=timeout)


def started_id(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[1]


def base_config(**over: Any) -> dict[str, Any]:
    try:
        from curvewatch.trainer.config import DEFAULTS
        cfg = DEFAULTS.to_dict()
    except Exception:
        cfg = {"dataset": "digits", "model": "mlp", "hidden": [128, 64], "lr": 0.001,
               "epochs": 30, "batch_size": 64, "optimizer": "adam", "weight_decay": 0.0,
               "dropout": 0.0, "seed": 0}
    cfg.update(over)
    return cfg


def _layers(e: int, scale: float = 1.0) -> dict[str, float]:
    return {name: scale * (0.5 + i) * math.exp(-0.02 * e) for i, name in enumerate(LAYERS)}


def _write(root: Path, name: str, epochs: int, curve: Callable[[int], dict[str, float]], *,
           state: str = "completed", group: str | None = None, tags: tuple[str, ...] = (),
           cfg: dict[str, Any] | None = None, **finish: Any) -> str:
    run = Run.create(root, name=name, config=cfg or base_config(epochs=epochs), epochs=epochs,
                     group=group, tags=list(tags), heartbeat_seconds=0,
                     data={"dataset": "digits", "task": "classification", "n_train": 1437,
                           "n_val": 360, "n_features": 64, "n_classes": 10,
                           "batch_size": 64, "steps_per_epoch": 23},
                     model={"name": "mlp", "n_params": 17226})
    t0 = time.time() - 600
    for e in range(1, epochs + 1):
        run.log_epoch(epoch=e, step=23 * e, time=t0 + 2.0 * e, layers=_layers(e), **curve(e))
    if state != "running":
        run.finish(state, **finish)
    return run.id


def healthy(seed: int) -> Callable[[int], dict[str, float]]:
    def f(e: int) -> dict[str, float]:
        wiggle = 0.01 * math.sin(e + seed)
        tl = 2.3 * math.exp(-e / 6) + 0.05 + wiggle
        vl = 2.3 * math.exp(-e / 6) + 0.09 + wiggle
        return dict(train_loss=tl, val_loss=vl, train_acc=1 - tl / 2.6, val_acc=1 - vl / 2.6,
                    grad_norm=0.5 + 0.1 * math.exp(-e / 10), grad_norm_max=1.0,
                    lr=1e-3 * (0.5 if e > 20 else 1.0))
    return f


def overfit(e: int) -> dict[str, float]:
    tl = 2.0 * math.exp(-e / 5) + 0.01
    vl = 0.35 + 1.6 * math.exp(-e / 3) + 0.012 * max(0, e - 9) ** 1.2
    return dict(train_loss=tl, val_loss=vl, train_acc=min(1.0, 1 - tl / 2.2),
                val_acc=0.9 - 0.002 * max(0, e - 9), grad_norm=0.3, grad_norm_max=0.9,
                lr=1e-3)


def diverging(e: int) -> dict[str, float]:
    loss = 2.0 * 1.6 ** e if e < 12 else float("nan")
    return dict(train_loss=loss, val_loss=loss * 1.1, train_acc=0.1, val_acc=0.1,
                grad_norm=10.0 * 3 ** e if e < 12 else float("inf"), grad_norm_max=1e6,
                lr=5.0)


def regression(e: int) -> dict[str, float]:
    tl = 1.0 * math.exp(-e / 4) + 0.1
    return dict(train_loss=tl, val_loss=tl + 0.05, train_r2=1 - tl, val_r2=0.95 - tl,
                grad_norm=0.2, lr=1e-3)


@dataclass
class Fixtures:
    root: Path
    ids: dict[str, str] = field(default_factory=dict)  # role -> run id
    live: Run | None = None  # the writer run kept running by this process
    broken: str = "20260101-000000-broken-0000"


def make_writer_runs(root: Path, fx: Fixtures) -> None:
    root.mkdir(parents=True, exist_ok=True)
    fx.ids["healthy"] = _write(root, "healthy-seed0", 40, healthy(0), group="seeds",
                               tags=("baseline",), cfg=base_config(epochs=40, seed=0))
    fx.ids["healthy_seed1"] = _write(root, "healthy-seed1", 40, healthy(1), group="seeds",
                                     tags=("baseline",), cfg=base_config(epochs=40, seed=1))
    stopped_by, reason = None, "validation loss rose"
    try:
        import pandas as pd

        from curvewatch.diagnosis import diagnose
        hist = pd.DataFrame([{"epoch": e, **overfit(e)} for e in range(1, 31)])
        found = [f for f in diagnose(hist) if f.kind == "overfitting"]
        if found:
            stopped_by, reason = found[0].to_dict(), found[0].message
    except Exception:
        pass
    fx.ids["overfit"] = _write(root, "overfit-synthetic", 30, overfit, state="early_stopped",
                               cfg=base_config(epochs=60, hidden=[512, 512], train_size=300,
                                               label_noise=0.1, batch_size=16,
                                               early_stop=["overfitting"]),
                               stop_reason=reason, stopped_by=stopped_by)
    fx.ids["diverged"] = _write(root, "diverged", 14, diverging, state="failed",
                                cfg=base_config(epochs=50, lr=5.0, optimizer="sgd"),
                                error="RuntimeError: loss is NaN at epoch 12")
    fx.ids["regression"] = _write(root, "regression", 20, regression,
                                  cfg=base_config(epochs=20, dataset="blobs"))
    # a run this process keeps writing: state `running` while the test process lives
    live = Run.create(root, name="live-writer", config=base_config(epochs=100), epochs=100,
                      heartbeat_seconds=1.0)
    for e in range(1, 6):
        live.log_epoch(epoch=e, layers=_layers(e), **healthy(2)(e))
    fx.live = live
    fx.ids["running"] = live.id
    bad = root / fx.broken
    bad.mkdir(exist_ok=True)
    (bad / "run.json").write_text("{not json")


#: the group fixtures: a real 3-fold cross-validation and a 2x1 sweep run two at a time
KFOLD_ARGS = ("run", "--name", "real-folds", "--validation", "kfold:3", "--epochs", "4",
              "--hidden", "16", *THREADS)
SWEEP_ARGS = ("sweep", "--name", "real-sweep", "--grid", "lr=1e-3,1e-2", "--epochs", "4",
              "--hidden", "16", "--parallel", "2", *THREADS)


def make_real_runs(root: Path, fx: Fixtures, timeout: float = 240) -> None:
    """Real trainings started at once: an overfitting run with early stopping, a
    short healthy one, a 3-fold cross-validation group and a 2-setting sweep; returns when
    all have finished. One torch thread each (a 2-core machine must not thrash)."""
    jobs = {"real_overfit": ("run", "--name", "real-overfit", *THREADS, *OVERFIT_ARGS),
            "real_healthy": ("run", "--name", "real-healthy", "--epochs", "6", "--seed", "1",
                             "--log-every-steps", "5", *THREADS),
            "real_group": KFOLD_ARGS,
            "real_sweep": SWEEP_ARGS}
    # all four at once, each in the foreground of a process forked from the pre-imported
    # server (a detached start would import torch twice more for each)
    forks = trainer_forks()
    pids = {role: forks.fork(args[0], "--runs-dir", str(root), *args[1:])
            for role, args in jobs.items()}
    for pid in pids.values():
        forks.go(pid)
    for role, pid in pids.items():
        code = forks.wait(pid, timeout=timeout)
        out, err = forks.output(pid)
        assert code == 0, f"{role}: exit {code}\n{err[-2000:]}"
        fx.ids[role] = out.split()[1].rstrip(":")  # "run ID in ..." or "group ID: ..."


_CACHE: dict[str, Fixtures] = {}


def fixture_runs(real: bool = True) -> Fixtures:
    """The fixture runs directory, built once per test process (writer runs always; the real
    trainings when `real`)."""
    fx = _CACHE.get("fx")
    if fx is None:
        root = Path(tempfile.mkdtemp(prefix="curvewatch-dash-")) / "runs"
        fx = Fixtures(root)
        make_writer_runs(root, fx)
        _CACHE["fx"] = fx
        atexit.register(_cleanup, fx)
    if real and "real_overfit" not in fx.ids:
        make_real_runs(fx.root, fx)
    return fx


def _cleanup(fx: Fixtures) -> None:
    if fx.live is not None:
        try:
            fx.live.finish("stopped")
        except Exception:
            pass
    shutil.rmtree(fx.root.parent, ignore_errors=True)


def empty_runs_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="curvewatch-empty-")) / "runs"
    d.mkdir()
    atexit.register(shutil.rmtree, d.parent, True)
    return d
