"""Shared test helpers: run the trainer CLI as a real process and poll conditions with deadlines."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def trainer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer", *args]


def run_trainer(*args: str, runs_dir: Path | None = None, timeout: float = 240,
                cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m trainer ARGS` to completion and return the finished process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if runs_dir is not None:
        env["CURVEWATCH_RUNS"] = str(runs_dir)
    return subprocess.run(trainer_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env=env, stdin=subprocess.DEVNULL)


def wait_for(condition: Callable[[], T], timeout: float = 60, every: float = 0.05,
             what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy and return that; raise TimeoutError
    (which fails the test, or which a caller may catch to retry) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run folder, found {runs}"
    return runs[0]


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    return d


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest work first, so two workers finish together instead of one waiting on a long
    test picked up last: the grouped tests (each group is one unit of work for a worker, the
    dashboard group the longest), then the slow ones, then the rest; order kept within each."""
    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("xdist_group"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2
    items.sort(key=weight)
