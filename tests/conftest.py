"""Shared test helpers: run the trainer CLI as a real process and poll conditions with deadlines."""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

from forked_trainer import TrainerForks

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def trainer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "curvewatch.trainer", *args]


def run_trainer(*args: str, runs_dir: Path | None = None, timeout: float = 240,
                cwd: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the trainer's command line (`python -m trainer ARGS`) to completion in a process of
    its own and return the finished process. The process is forked from a server that has
    made the trainer's imports (tests/forked_trainer.py): the same main, exit status and
    output, without 3 s of imports for each of the suite's hundreds of runs."""
    env = {"PYTHONPATH": str(ROOT), **(env or {})}
    if runs_dir is not None:
        env["CURVEWATCH_RUNS"] = str(runs_dir)
    return trainer_forks().run(*args, env=env, cwd=cwd or ROOT, timeout=timeout)


def run_python_m_trainer(*args: str, runs_dir: Path | None = None,
                         timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m trainer ARGS` as a shell would start it: a new interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if runs_dir is not None:
        env["CURVEWATCH_RUNS"] = str(runs_dir)
    return subprocess.run(trainer_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


_FORKS: list[TrainerForks] = []


def trainer_forks() -> TrainerForks:
    """This test process's fork server, started on first use and closed at exit."""
    if not _FORKS:
        _FORKS.append(TrainerForks(Path(tempfile.mkdtemp(prefix="curvewatch-forks-"))))
        atexit.register(_FORKS[0].close)
    return _FORKS[0]


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


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module that trains in the pytest process itself (the
    integration tests): on a loaded 2-core machine torch's second thread stalls each step on
    the other core (docs/testing.md, rule 3)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per browser-test module (the modules skip
    themselves where it is absent)."""
    from playwright.sync_api import sync_playwright

    from servers import CHROMIUM, LAUNCH_ARGS
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


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
