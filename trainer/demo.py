"""The demo runs that `make run` starts in an empty runs directory: one healthy run, one that
overfits and one that plateaus, so every part of the dashboard has something to show."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO_RUNS: dict[str, list[str]] = {
    "demo-healthy-cnn": ["--dataset", "digits-images", "--model", "cnn", "--hidden", "64",
                         "--dropout", "0.3", "--weight-decay", "1e-4", "--batch-size", "32",
                         "--epochs", "40"],
    "demo-overfitting-mlp": ["--dataset", "digits", "--train-size", "300", "--label-noise",
                             "0.1", "--hidden", "512,512", "--batch-size", "16",
                             "--epochs", "80"],
    "demo-plateau-sgd": ["--dataset", "moons", "--hidden", "4", "--optimizer", "sgd", "--lr",
                         "0.02", "--batch-size", "16", "--epochs", "80", "--schedule", "step"],
}


def has_runs(runs_dir: Path) -> bool:
    return runs_dir.is_dir() and any(p.is_dir() and not p.name.startswith(".")
                                     for p in runs_dir.iterdir())


def launch_demo(runs_dir: Path) -> list[str]:
    """Start the demo runs detached, each through the trainer's own CLI, all at once (each
    launch validates its data and model first); return their first output lines."""
    launches = {name: subprocess.Popen(
        [sys.executable, "-m", "trainer", "run", "--detach", "--runs-dir", str(runs_dir),
         "--name", name, "--threads", "1", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, args in DEMO_RUNS.items()}
    out = []
    for name, proc in launches.items():
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"demo run {name} did not start: {stderr.strip()}")
        out.append(stdout.strip().splitlines()[0])
    return out
