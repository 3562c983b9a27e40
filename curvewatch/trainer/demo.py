"""The demo runs that `make run` starts in an empty runs directory: one healthy run, one that
overfits and one that plateaus, so every part of the dashboard has something to show."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .config import DEFAULTS, MAX_EPOCH_PACE

DEMO_RUNS: dict[str, list[str]] = {
    "demo-healthy-cnn": ["--dataset", "digits-images", "--model", "cnn", "--hidden", "64",
                         "--dropout", "0.3", "--weight-decay", "1e-4", "--batch-size", "32",
                         "--epochs", "15"],
    "demo-overfitting-mlp": ["--dataset", "digits", "--train-size", "300", "--label-noise",
                             "0.1", "--hidden", "512,512", "--batch-size", "16",
                             "--epochs", "80"],
    "demo-plateau-sgd": ["--dataset", "moons", "--hidden", "4", "--optimizer", "sgd", "--lr",
                         "0.02", "--batch-size", "16", "--epochs", "80"],
}
# Each promise holds with a margin of epochs over seeds 0-4 and 1-2 torch threads (so over
# CPUs' rounding too): bench/demo_margins.py measures it. The healthy run stops well before
# it converges (a converged run rightly plateaus); the plateau run keeps a constant rate
# (with a step schedule one seed's plateau showed only at epoch 74 of 80).
# Unpaced, the demo runs end in 6-9 s, before a freshly opened dashboard has drawn a curve:
# each is paced (--min-epoch-seconds) to last about this long, so its curves fill visibly.
DEMO_SECONDS = 60.0


def option_value(args: list[str], flag: str, default: str | None = None) -> str | None:
    """The value an argument list gives `flag` (the last one wins, as on the command line)."""
    at = [i for i, a in enumerate(args[:-1]) if a == flag]
    return args[at[-1] + 1] if at else default


def demo_epochs(args: list[str]) -> int:
    return int(option_value(args, "--epochs", str(DEFAULTS.epochs)))


def max_demo_seconds() -> float:
    """The longest pacing every demo run accepts (its epochs times the trainer's cap)."""
    return min(demo_epochs(a) for a in DEMO_RUNS.values()) * MAX_EPOCH_PACE


def has_runs(runs_dir: Path) -> bool:
    return runs_dir.is_dir() and any(p.is_dir() and not p.name.startswith(".")
                                     for p in runs_dir.iterdir())


def launch_demo(runs_dir: Path, seconds: float = DEMO_SECONDS) -> list[str]:
    """Start the demo runs detached, each through the trainer's own CLI, all at once (each
    launch validates its data and model first), each paced to last about `seconds` (0: full
    speed); return their first output lines."""
    def pace(args: list[str]) -> list[str]:
        return ["--min-epoch-seconds", f"{seconds / demo_epochs(args):.6g}"] if seconds else []

    launches = {name: subprocess.Popen(
        [sys.executable, "-m", "curvewatch.trainer", "run", "--detach", "--runs-dir", str(runs_dir),
         "--name", name, "--threads", "1", *args, *pace(args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, args in DEMO_RUNS.items()}
    out = []
    for name, proc in launches.items():
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"demo run {name} did not start: {stderr.strip()}")
        out.append(stdout.strip().splitlines()[0])
    return out
