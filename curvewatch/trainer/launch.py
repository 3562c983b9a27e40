"""Detached runs: a background process in its own session, writing to the run's trainer.log,
and the exclusive lock that keeps two processes from training one run folder."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from curvewatch.tracking.paths import LOCK


def spawn_worker(run_dir: Path, *, resume: bool) -> int:
    """Start `python -m trainer _worker RUN_DIR` detached (new session, no stdin, output to
    trainer.log) and return its pid without waiting for it."""
    args = [sys.executable, "-m", "curvewatch.trainer", "_worker", str(run_dir)]
    if resume:
        args.append("--resume")
    log = open(run_dir / "trainer.log", "ab")
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=os.getcwd(), close_fds=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        log.close()
    return proc.pid


def spawn_group(group_dir: Path) -> int:
    """Start `python -m trainer _group GROUP_DIR` detached (new session, no stdin, output to
    the group's log) and return its pid: it runs the group's members."""
    from curvewatch.tracking.paths import GROUP_LOG

    log = open(Path(group_dir) / GROUP_LOG, "ab")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "curvewatch.trainer", "_group",
                                 str(group_dir)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=os.getcwd(), close_fds=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        log.close()
    return proc.pid


class RunLocked(RuntimeError):
    """Another live process holds the run folder."""


def lock_run(run_dir: Path, *, wait: float = 0.0) -> IO[bytes]:
    """Hold an exclusive lock on the run folder for as long as the returned file stays open
    (the kernel drops it when the process dies, however it dies). `wait`: seconds to keep
    trying (a reader's probe, tracking.procinfo.lock_held, holds a shared lock for an
    instant)."""
    f = open(Path(run_dir) / LOCK, "ab")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() >= deadline:
                f.close()
                raise RunLocked(f"run {Path(run_dir).name} is being trained by another "
                                "process") from None
            time.sleep(0.01)


class SigtermStop:
    """Set by SIGTERM, so `kill` asks for the same graceful stop as a STOP file."""

    def __init__(self) -> None:
        self.reason: str | None = None
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.reason = "stopped by SIGTERM"
