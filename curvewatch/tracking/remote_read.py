"""Reading runs from object storage through a local mirror: each run's manifest (sync.json) is
polled, and only when it changed are the JSON files and the new bytes of the .jsonl files
fetched and appended to the mirror, which every ordinary reader (list_runs, read_history, the
dashboard) then reads as a local runs directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths as P
from .jsonio import atomic_write_bytes
from .object_store import (
    MIRROR_MARK,
    RemoteRoot,
    filesystem,
    is_url,
    mirror_dir,
    parse_url,
    remote_of,
    spool_dir,
)
from .reader import derive_state
from .sync import (
    CHECKPOINT_FILES,
    ENDED,
    GROUP_FILES,
    MANIFEST,
    SEGMENTED,
    remote_size,
    segment_name,
    segment_prefix,
)

POLL_ENV = "CURVEWATCH_POLL_SECONDS"
POLL_SECONDS = 10.0
SEEN = ".sync.json"  # in a mirrored run folder: the last manifest applied


@dataclass(frozen=True)
class Refresh:
    """What one refresh of a mirror did: runs listed, runs whose manifest changed."""
    listed: int
    changed: int


FINAL_POLL_SECONDS = 60.0
_last: dict[str, float] = {}  # root URL -> when this process last refreshed its mirror
_final_checked: dict[tuple[str, str], float] = {}  # (URL, run id) of an ended run -> last poll


def refresh(root: RemoteRoot, fs: Any = None, *, force: bool = False) -> Path:
    """The mirror of `root`, brought up to date at most once per $CURVEWATCH_POLL_SECONDS
    (default 10) in this process, so a page that reruns often costs no more requests."""
    mirror = mirror_dir(root)
    every = float(os.environ.get(POLL_ENV) or POLL_SECONDS)
    if force or time.monotonic() - _last.get(root.url, -1e18) >= every:
        refresh_now(root, mirror, fs if fs is not None else filesystem(root))
        _last[root.url] = time.monotonic()
    return mirror


def refresh_now(root: RemoteRoot, mirror: Path, fs: Any) -> Refresh:
    """One LIST of the root, one GET of each run's manifest, and the fetches it calls for."""
    try:
        names = [Path(n).name for n in fs.ls(root.path, detail=False)]
    except FileNotFoundError:
        names = []
    ids = [n for n in names if P.is_run_id(n) and not n.startswith(".")]
    changed = sum(_refresh_run(fs, root, run_id, mirror / run_id) for run_id in ids)
    return Refresh(listed=len(ids), changed=changed)


def _refresh_run(fs: Any, root: RemoteRoot, run_id: str, local: Path) -> bool:
    seen = local / SEEN
    if not _due(root, run_id, local):
        return False
    try:
        raw = _get(fs, root.key(run_id, MANIFEST))
    except FileNotFoundError:
        return False  # claimed, not yet synced
    if seen.exists() and seen.read_bytes() == raw:
        return False
    manifest = _manifest(raw)
    if manifest is None:
        return False  # not a manifest this reader can follow: the run is left out
    try:
        before = json.loads(seen.read_bytes()).get("stamps", {})
    except (OSError, ValueError, AttributeError):
        before = {}
    local.mkdir(parents=True, exist_ok=True)
    try:
        for name in SEGMENTED:
            _fetch_new_bytes(fs, root, run_id, name, local / name, manifest["files"][name])
    except FileNotFoundError:
        return False  # a compaction removed a segment under us: the next poll reads it
    for name in GROUP_FILES if manifest["kind"] == "group" else (P.RUN_JSON, P.STATUS_JSON):
        if (local / name).exists() and before.get(name) == manifest["stamps"].get(name):
            continue  # unchanged since the last manifest applied
        try:
            atomic_write_bytes(local / name, _get(fs, root.key(run_id, name)))
        except FileNotFoundError:
            pass
    _forget_stop(local)
    atomic_write_bytes(seen, raw)  # last: a refresh cut short is redone
    return True


def _manifest(raw: bytes) -> dict[str, Any] | None:
    """A manifest's `files` (byte counts, int >= 0) and `stamps`, or None when `raw` is not
    one (anyone with write access to the bucket may have put anything there)."""
    try:
        doc = json.loads(raw)
        files = {n: doc["files"].get(n, 0) for n in SEGMENTED}
        stamps, kind = doc.get("stamps", {}), doc.get("kind", "run")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    ok = all(type(v) is int and v >= 0 for v in files.values()) and isinstance(stamps, dict)
    return {"files": files, "stamps": stamps, "kind": kind} if ok else None


def _state(local: Path) -> Any:
    """The written state of a mirrored run (status.json) or group (group.json); None if
    neither can be read."""
    for name in (P.STATUS_JSON, P.GROUP_JSON):
        try:
            return json.loads((local / name).read_bytes()).get("state")
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _forget_stop(local: Path) -> None:
    """Drop the mirror's STOP (left by `trainer stop`) once the run or group has ended."""
    if _state(local) in ENDED:
        (local / P.STOP).unlink(missing_ok=True)


def _get(fs: Any, key: str) -> bytes:
    # start=0: a ranged GET, one request (s3fs asks for the size first without a range)
    return bytes(fs.cat_file(key, start=0))


def _due(root: RemoteRoot, run_id: str, local: Path) -> bool:
    """Whether to poll a run's manifest now: a live run on every refresh, an ended one (a
    resume would make it live again) once per FINAL_POLL_SECONDS."""
    if _state(local) not in ENDED:
        return True
    now, last = time.monotonic(), _final_checked.get((root.url, run_id))
    if last is not None and now - last < FINAL_POLL_SECONDS:
        return False
    _final_checked[(root.url, run_id)] = now
    return True


def _fetch_new_bytes(fs: Any, root: RemoteRoot, run_id: str, name: str, local: Path,
                     target: int) -> None:
    have = local.stat().st_size if local.exists() else 0
    if have >= target:
        return
    _, compacted, chain = remote_size(fs, root, run_id, name)
    pieces: list[bytes] = []
    if have < compacted:
        pieces.append(fs.cat_file(root.key(run_id, name), start=have, end=compacted))
        have = compacted
    for start, size in chain:
        if start + size <= have:
            continue
        key = root.key(run_id, segment_prefix(name), segment_name(start))
        pieces.append(fs.cat_file(key, start=have - start))
        have = start + size
    with open(local, "ab") as f:  # whole segments only, so lines stay whole
        f.write(b"".join(pieces))


def local_runs_dir(runs_dir: str, *, reading: bool) -> Path:
    """The local folder standing for a runs directory given as text: a plain path as it is;
    a URL (ValueError naming it when bad) as this machine's spool for writing, or as its
    mirror, refreshed, for reading."""
    if not is_url(runs_dir):
        return Path(runs_dir)
    root = parse_url(runs_dir)
    return refresh(root) if reading else spool_dir(root)


class NotResumable(Exception):
    """A bucket's run that this machine cannot resume (the message says why and what to do)."""


def pull_run(root: RemoteRoot, run_id: str, fs: Any = None) -> Path | None:
    """This machine's spool folder of the bucket's run `run_id`, brought down when the spool
    lacks it (a run another machine wrote) or holds less of it than the bucket (it was
    trained further elsewhere: the old copy is kept aside as `.stale-<id>-<time>`): its files
    as the bucket holds them (every contiguous byte, not only what the last manifest named,
    so the syncer goes on from the bucket's end) and its checkpoints. None when the bucket
    holds no run of that id (it may be a name); NotResumable for another machine's group, a
    run still running, or one with no last.pt in the bucket."""
    spool = spool_dir(root)
    target = spool / run_id
    if not P.is_run_id(run_id):
        return None
    fs = fs if fs is not None else filesystem(root)
    if target.exists():
        here = (target / P.METRICS).stat().st_size if (target / P.METRICS).exists() else 0
        if remote_size(fs, root, run_id, P.METRICS)[0] <= here:
            return target  # as far as the bucket (or further: its syncer sends the rest)
        target.rename(spool / f".stale-{run_id}-{int(time.time())}")
    if not fs.exists(root.key(run_id, P.RUN_JSON)):
        if fs.exists(root.key(run_id, P.GROUP_JSON)):
            raise NotResumable(f"{run_id} is a group another machine runs: its runner's "
                               "spool holds its plan, so resume it on that machine (or "
                               "resume each member run here by its id)")
        return None
    _check_resumable(fs, root, run_id)
    staging = Path(tempfile.mkdtemp(prefix=P.STAGING_PREFIX, dir=spool))
    try:
        for name in SEGMENTED:
            end = remote_size(fs, root, run_id, name)[0]
            if end:
                _fetch_new_bytes(fs, root, run_id, name, staging / name, end)
        (staging / P.CHECKPOINTS).mkdir()
        for name in (P.RUN_JSON, P.STATUS_JSON, *CHECKPOINT_FILES):
            try:
                atomic_write_bytes(staging / name, _get(fs, root.key(run_id, name)))
            except FileNotFoundError:
                pass  # no best.pt yet
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _check_resumable(fs: Any, root: RemoteRoot, run_id: str) -> None:
    """NotResumable, saying why, for a bucket's run that is running (by its heartbeat) or
    that has no last.pt there."""
    try:
        status = json.loads(_get(fs, root.key(run_id, P.STATUS_JSON)))
    except (FileNotFoundError, ValueError):
        status = None
    # read straight from the bucket, after the writer's last sync: on its own host a gone
    # process means it crashed, elsewhere only the heartbeat can tell
    if isinstance(status, dict) and derive_state(status) == "running":
        raise NotResumable(f"run {run_id} is running on {status.get('host')!s} (its heartbeat "
                           "is fresh): stop it first, or wait for it to end")
    last = f"{P.CHECKPOINTS}/last.pt"
    if not fs.exists(root.key(run_id, last)):
        raise NotResumable(
            f"run {run_id} has no {last} in {root.url} (its writer syncs it at the end of the "
            "run and every 30 s; one killed before that left it in its own spool): resume it "
            "on the machine that wrote it")


def push_stop(run_dir: Path) -> bool:
    """Ask a run seen in a mirror to stop: the STOP object its writer's syncer brings down
    into the writer's folder. False (nothing done) for a run folder outside a mirror."""
    root = remote_of(Path(run_dir).parent, MIRROR_MARK)
    if root is None:
        return False
    filesystem(root).pipe_file(root.key(Path(run_dir).name, P.STOP), b"")
    return True
