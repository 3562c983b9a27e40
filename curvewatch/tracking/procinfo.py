"""Is the process that wrote a status file still alive? (Linux /proc, with a portable fallback.)"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from .paths import LOCK
from .safeio import open_regular


def hostname() -> str:
    return socket.gethostname()


def _stat_after_comm(path: str) -> bytes | None:
    """A /proc .../stat line from field 3 (the state) on, or None if it cannot be read. The
    command name (field 2) may contain spaces and parentheses: split after the last ')'."""
    try:
        with open(path, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:]


def process_start_ticks(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (Linux), to tell a reused pid from ours."""
    fields = (_stat_after_comm(f"/proc/{pid}/stat") or b"").split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _task_state(path: str) -> bytes:
    rest = _stat_after_comm(path)
    return b"X" if rest is None else rest[:1]  # unreadable: gone already


def _is_zombie(pid: int) -> bool:
    """True once every thread of `pid` has exited. A killed multi-threaded process shows its
    main thread as a zombie while the others are still exiting, and still holds its files
    (and so its flock on the run folder) until the last one is gone."""
    if _task_state(f"/proc/{pid}/stat") not in (b"Z", b"X"):
        return False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return all(_task_state(f"/proc/{pid}/task/{t}/stat") in (b"Z", b"X") for t in tasks)


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    """True if `pid` runs on this host and, when `start_ticks` is known, is the same process."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**31:
        return False  # pid_t is 32 bits: anything else names no process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except (OverflowError, ValueError, OSError):
        return False
    if _is_zombie(pid):
        return False
    if start_ticks is not None:
        now_ticks = process_start_ticks(pid)
        if now_ticks is not None and now_ticks != start_ticks:
            return False
    return True


def lock_held(run_dir: str | Path, name: str = LOCK) -> bool:
    """True while a live process holds the run folder's lock (the trainer's `.lock`, an
    exclusive flock the kernel drops when the process dies): the truth about whether a run is
    being trained, whatever its status.json says (a process paused for over 30 s shows as
    crashed, yet holds its lock). Probes with a shared, non-blocking flock that is released at
    once; a missing or non-regular lock file counts as not held."""
    try:
        fd = open_regular(Path(run_dir) / name)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also releases the probe's shared lock
    return False
