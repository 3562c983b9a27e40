"""Names inside a run folder, run ids, and the one gate from a run reference to a path.

Nothing outside the runs directory is ever read, written or deleted through a run id or name:
every lookup goes through `run_path`, which accepts only a plain folder name that resolves to a
real (non-symlink) folder directly inside the runs directory.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Callable

from .jsonio import fsync_dir
from .safeio import read_json_file

#: run.json / group.json larger than this are not read to find a member's log
_MAX_RECORD_BYTES = 4 << 20

FORMAT_VERSION = 1
RUN_JSON = "run.json"
STATUS_JSON = "status.json"
METRICS = "metrics.jsonl"
LAYERS = "layers.jsonl"
STEPS = "steps.jsonl"
CHECKPOINTS = "checkpoints"
LOG = "trainer.log"
STOP = "STOP"
GROUP_JSON = "group.json"  # marks a group folder (tracking/groups.py)
GROUP_LOG = "group.log"  # a detached group runner's output, in the group folder
MEMBER_LOGS = "logs"  # the group folder's logs/<index>.log: each member's trainer output
RESERVE = ".reserve"
LOCK = ".lock"  # flock held by the process training the run (trainer/launch.py)
#: written by `resume --detach` before it starts the worker, removed by the worker: a STOP
#: that lands in between is for the resumed run, not a leftover to clear
RESUMING = ".resuming"
RESUMING_FRESH_SECONDS = 120.0
RESERVE_BYTES = 64 * 1024

#: States a writer records. `crashed` is never written: readers derive it.
STATES = ("running", "completed", "stopped", "early_stopped", "failed")
FINAL_STATES = STATES[1:]
#: States `resume` continues from last.pt (`crashed` is derived by readers, never written).
RESUMABLE_STATES = ("stopped", "crashed")

RUNS_ENV = "CURVEWATCH_RUNS"
MAX_NAME_CHARS = 200
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class RunNotFound(LookupError):
    """A run reference that names no run folder inside the runs directory."""


class GroupNotFound(LookupError):
    """A group reference that names no group folder inside the runs directory."""


def default_runs_dir() -> Path:
    """The runs directory: $CURVEWATCH_RUNS, else ./runs."""
    return Path(os.environ.get(RUNS_ENV) or "runs")


def check_name(name: str) -> str:
    """Return `name` if it is usable as a display name, else raise ValueError saying why."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"run name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"run name must be at most {MAX_NAME_CHARS} characters, "
                         f"got {len(name)}")
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")]
    if bad:
        raise ValueError(f"run name must not contain control or invisible characters, "
                         f"found {''.join(bad)!r} in {name!r}")
    return name


def slugify(name: str, limit: int = 40) -> str:
    """A filesystem-safe ascii slug of `name` ("run" when nothing usable is left)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:limit].strip("-")
    return slug or "run"


def new_run_id(name: str) -> str:
    """A fresh id `YYYYMMDD-HHMMSS-<slug>-<4 hex>`, sortable by start time."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    return f"{stamp}-{slugify(name)}-{secrets.token_hex(2)}"


#: Hidden staging folders a folder is built in before it is published by rename.
STAGING_PREFIX = ".creating-"
#: A staging folder untouched this long was left by a creator that died (a creation takes
#: milliseconds), so the next creation removes it.
STALE_STAGING_SECONDS = 3600.0


def remove_stale_staging(runs_dir: Path, *, now: float | None = None) -> list[str]:
    """Delete the `.creating-*` folders older than STALE_STAGING_SECONDS; return their names.
    Younger ones may belong to a creation in progress and are left alone."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        entries = list(os.scandir(runs_dir))
    except OSError:
        return removed
    for e in entries:
        try:
            if (e.name.startswith(STAGING_PREFIX) and e.is_dir(follow_symlinks=False)
                    and now - e.stat(follow_symlinks=False).st_mtime > STALE_STAGING_SECONDS):
                shutil.rmtree(e.path)
                removed.append(e.name)
        except OSError:
            continue  # another creator removed it first, or it is not ours to remove
    return removed


def publish_run_dir(runs_dir: Path, name: str, fill: Callable[[str, Path], None],
                    run_id: str | None = None) -> tuple[str, Path]:
    """Create a run folder whole: `fill(run_id, staging)` writes its files into a hidden
    staging folder, which one rename then turns into `runs_dir/<run_id>`. Readers (which skip
    hidden entries) never see a half-made run; a crash leaves only a hidden `.creating-*`.
    A given `run_id` is tried alone: FileExistsError when that folder exists."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(runs_dir)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=runs_dir))
    try:
        for _ in range(1000 if run_id is None else 1):
            rid = new_run_id(name) if run_id is None else run_id
            target = runs_dir / rid
            if os.path.lexists(target):
                continue
            fill(rid, staging)
            try:
                os.rename(staging, target)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue  # another process published this id a moment ago
                raise
            fsync_dir(runs_dir)
            return rid, target
        if run_id is not None:
            raise FileExistsError(errno.EEXIST, "folder exists", str(runs_dir / run_id))
        raise RuntimeError(f"could not find a free run id in {runs_dir} after 1000 tries")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def is_run_id(ref: str) -> bool:
    """True when `ref` has the shape of a folder name that can only mean a child folder."""
    return isinstance(ref, str) and bool(_ID_RE.match(ref)) and ".." not in ref


def run_path(runs_dir: Path, run_id: str) -> Path:
    """The folder of run `run_id`, guaranteed to be a real folder directly inside runs_dir.

    Raises RunNotFound for anything else: separators, '..', absolute paths, NUL bytes,
    symlinks (which could point anywhere) and missing folders."""
    if not is_run_id(run_id):
        raise RunNotFound(f"{run_id!r} is not a run id: ids are folder names made of letters, "
                          f"digits, '.', '_' and '-' (no '/', no '..')")
    root = Path(runs_dir).resolve()
    path = root / run_id
    if path.is_symlink() or not path.is_dir() or path.resolve().parent != root:
        raise RunNotFound(f"no run folder {run_id!r} in {root}")
    return path


def is_group_dir(path: str | Path) -> bool:
    """A folder holding a group.json and no run.json."""
    p = Path(path)
    return (p / GROUP_JSON).exists() and not (p / RUN_JSON).exists()


def group_path(runs_dir: str | Path, group_id: str) -> Path:
    """The folder of group `group_id` directly inside runs_dir (same rules as run_path)."""
    try:
        path = run_path(Path(runs_dir), group_id)
    except RunNotFound:
        raise GroupNotFound(f"no group folder {group_id!r} in {Path(runs_dir).resolve()}") \
            from None
    if not is_group_dir(path):
        raise GroupNotFound(f"{group_id!r} in {Path(runs_dir).resolve()} is not a group "
                            f"(no {GROUP_JSON})")
    return path


def member_log_path(group_dir: str | Path, index: int) -> Path:
    """Where member `index` of the group in `group_dir` writes its trainer output."""
    return Path(group_dir) / MEMBER_LOGS / f"{int(index)}.log"


def member_log_of(run_dir: str | Path) -> Path | None:
    """The group log holding a member run's output, or None for a run outside any group (or
    whose group folder or record is gone or does not list it)."""
    run_dir = Path(run_dir)
    try:
        gid = read_json_file(run_dir / RUN_JSON, _MAX_RECORD_BYTES).get("group")
        if not isinstance(gid, str):
            return None
        gdir = group_path(run_dir.parent, gid)
        members = read_json_file(gdir / GROUP_JSON, _MAX_RECORD_BYTES).get("members") or []
        if not isinstance(members, list):
            return None
    except (OSError, ValueError, AttributeError, GroupNotFound):
        return None
    for i, m in enumerate(members):
        if isinstance(m, dict) and m.get("run_id") == run_dir.name:
            index = m.get("index")
            if not isinstance(index, int) or isinstance(index, bool):
                index = i
            return member_log_path(gdir, index)
    return None
