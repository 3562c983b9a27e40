"""Mirror one local run folder to object storage. The local folder stays the writer's truth;
the bucket gets its .jsonl files as immutable segments named by byte offset, run.json and
status.json replaced whole, a manifest (sync.json) readers poll, and a compaction at finish;
its checkpoints at most every $CURVEWATCH_CHECKPOINT_SYNC_SECONDS and at finish, so a resume
on another machine can start from the bucket. A group folder's group.json and curves.jsonl
go up whole with a manifest of their own (`push_group`). A STOP object in the bucket is
brought down as the local STOP file."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import paths as P
from .object_store import RemoteRoot, filesystem, is_url, parse_url, remote_of, spool_dir
from .procinfo import hostname
from .reader import STALE_HEARTBEATS

SEGMENTED = (P.METRICS, P.LAYERS, P.STEPS)
WHOLE = (P.RUN_JSON, P.STATUS_JSON)
MANIFEST = "sync.json"
SYNC_ENV = "CURVEWATCH_SYNC_SECONDS"
SYNC_SECONDS = 2.0
#: best.pt and last.pt, sent when changed at most this often (a model can be large) and at
#: the end of the run.
CHECKPOINT_FILES = (f"{P.CHECKPOINTS}/best.pt", f"{P.CHECKPOINTS}/last.pt")
CHECKPOINT_SYNC_ENV = "CURVEWATCH_CHECKPOINT_SYNC_SECONDS"
CHECKPOINT_SYNC_SECONDS = 30.0
#: A group folder's files, sent whole (tracking.groups).
GROUP_FILES = (P.GROUP_JSON, "curves.jsonl")
#: The states after which a run or a group (partial: some members failed) changes no more
#: unless resumed.
ENDED = (*P.FINAL_STATES, "partial")


def segment_prefix(name: str) -> str:
    """The folder of a .jsonl file's segments: metrics.jsonl -> metrics."""
    return name.removesuffix(".jsonl")


def segment_name(start: int) -> str:
    """A segment's object name: the byte offset of its first byte in the local file."""
    return f"{start:015d}.jsonl"


def remote_size(fs: Any, root: RemoteRoot, run_id: str,
                name: str) -> tuple[int, int, list[tuple[int, int]]]:
    """(bytes of `name` in the bucket, bytes of its compacted object, [(start, size)] of the
    segments beyond it): the compacted object then the contiguous segments after it."""
    try:
        compacted = int(fs.info(root.key(run_id, name))["size"])
    except FileNotFoundError:
        compacted = 0
    end, chain = compacted, []
    for start, size in _segments(fs, root.key(run_id, segment_prefix(name))):
        if start + size <= end:
            continue  # covered by the compacted object
        if start != end:
            break  # a gap: what follows is not readable yet
        chain.append((start, size))
        end = start + size
    return end, compacted, chain


def _segments(fs: Any, folder: str) -> list[tuple[int, int]]:
    """(start, size) of the segment objects in `folder`, in order."""
    try:
        listed = fs.ls(folder, detail=True)
    except FileNotFoundError:
        return []
    return sorted((int(Path(e["name"]).stem), int(e["size"])) for e in listed
                  if Path(e["name"]).stem.isdigit())


class Syncer:
    """Mirrors the run folder `run_dir` to `root`/<run id>/. The bucket, listed on the first
    sync, is the truth about what was sent, so a syncer restarted after a kill neither loses
    nor repeats a line."""

    def __init__(self, run_dir: Path, root: RemoteRoot, fs: Any = None):
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.root = root
        self.fs = fs if fs is not None else filesystem(root)
        self._sent: dict[str, int] | None = None
        self._stamps: dict[str, tuple[int, int]] = {}
        self._checkpoints_at = -math.inf
        self._checkpoint_every = float(os.environ.get(CHECKPOINT_SYNC_ENV)
                                       or CHECKPOINT_SYNC_SECONDS)

    def key(self, *parts: str) -> str:
        return self.root.key(self.run_id, *parts)

    def sync(self) -> bool:
        """Send what is new (segments, then changed JSON files, then the manifest) and bring a
        remote STOP down. Returns whether anything was sent."""
        if self._sent is None:
            self._sent = {n: remote_size(self.fs, self.root, self.run_id, n)[0]
                          for n in SEGMENTED}
        sent = any([self._send_segment(n) for n in SEGMENTED])
        sent = any([self._send_whole(n) for n in WHOLE]) or sent
        if sent:
            self._put_manifest()
        self._send_checkpoints(force=False)
        self._fetch_stop()
        return sent

    def _send_checkpoints(self, *, force: bool) -> None:
        """best.pt and last.pt when changed, at most every CHECKPOINT_SYNC_SECONDS unless
        `force` (the run has ended). Sent after the manifest: readers never fetch them."""
        if not force and time.monotonic() - self._checkpoints_at < self._checkpoint_every:
            return
        self._checkpoints_at = time.monotonic()
        for name in CHECKPOINT_FILES:
            self._send_whole(name)

    def compact(self) -> None:
        """After the last sync of a finished run: each .jsonl whole as one object, then its
        segments deleted (readers fall back to the compacted object)."""
        self.sync()
        self._send_checkpoints(force=True)
        for name in SEGMENTED:
            data = self._complete(name, 0)
            if not data:
                continue
            self.fs.pipe_file(self.key(name), data)
            old = [self.key(segment_prefix(name), segment_name(s))
                   for s, z in _segments(self.fs, self.key(segment_prefix(name)))
                   if s + z <= len(data)]
            if old:
                self.fs.rm(old)
        self._put_manifest()
        if self.fs.exists(self.key(P.STOP)):
            self.fs.rm(self.key(P.STOP))  # the run honoured it; a resume must not stop again

    def _complete(self, name: str, start: int) -> bytes:
        """The complete lines of the local `name` from byte `start` (a line in flight waits)."""
        try:
            with open(self.run_dir / name, "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return b""
        return data[:data.rfind(b"\n") + 1]

    def _send_segment(self, name: str) -> bool:
        assert self._sent is not None
        start = self._sent[name]
        data = self._complete(name, start)
        if not data:
            return False
        try:
            self.fs.pipe_file(self.key(segment_prefix(name), segment_name(start)), data,
                              mode="create")
        except FileExistsError:
            # sent before a kill, or by a twin: the bucket says where we stand
            self._sent[name] = remote_size(self.fs, self.root, self.run_id, name)[0]
            return self._send_segment(name) if self._sent[name] > start else False
        self._sent[name] = start + len(data)
        return True

    def _send_whole(self, name: str) -> bool:
        try:
            st = os.stat(self.run_dir / name)
            stamp = (st.st_mtime_ns, st.st_size)
            if self._stamps.get(name) == stamp:
                return False
            data = (self.run_dir / name).read_bytes()
        except FileNotFoundError:
            return False
        self.fs.pipe_file(self.key(name), data)
        self._stamps[name] = stamp
        return True

    def _put_manifest(self) -> None:
        assert self._sent is not None
        manifest = {"format": 1, "files": dict(self._sent), "synced_at": time.time(),
                    "stamps": {n: list(s) for n, s in self._stamps.items()}}
        self.fs.pipe_file(self.key(MANIFEST), json.dumps(manifest).encode())

    def _fetch_stop(self) -> None:
        local = self.run_dir / P.STOP
        if not local.exists() and self.fs.exists(self.key(P.STOP)):
            local.touch()


class SyncThread:
    """A Syncer run every `every` seconds in a daemon thread of the writing process, plus a
    last sync (and a compaction) when the run ends."""

    def __init__(self, syncer: Syncer, every: float | None = None):
        self.syncer = syncer
        self.every = every if every is not None else float(os.environ.get(SYNC_ENV)
                                                            or SYNC_SECONDS)
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._guard = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"sync-{syncer.run_id}")
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(self.every):
            self._once(self.syncer.sync)

    def _once(self, step: Any) -> None:
        with self._guard:
            try:
                step()
                self.error = None
            except Exception as e:  # noqa: BLE001 - storage down: the next round retries
                self.error = e

    def stop(self, *, compact: bool) -> None:
        """End the thread after a last sync; `compact` for a run that has ended."""
        self._done.set()
        self._thread.join(timeout=30)
        self._once(self.syncer.compact if compact else self.syncer.sync)
        if self.error is not None:  # the run is whole in the spool; say where
            print(f"curvewatch: run {self.syncer.run_id} is not fully synced to "
                  f"{self.syncer.root.url} ({self.error!r}); it is complete in "
                  f"{self.syncer.run_dir}, and reopening it there syncs the rest",
                  file=sys.stderr)


def attach(run_dir: Path) -> SyncThread | None:
    """A running SyncThread for a run folder in a spool, None for an ordinary runs dir."""
    root = remote_of(Path(run_dir).parent)
    return SyncThread(Syncer(Path(run_dir), root)) if root is not None else None


class IdTaken(Exception):
    """Another writer's run in the bucket holds the id just drawn."""


def publish_run(runs_dir: str | Path | None, name: str,
                fill: Callable[[str, Path], None]) -> Path:
    """paths.publish_run_dir, for a local runs directory or a URL (then into this machine's
    spool, the id claimed in the bucket before the local folder appears; a taken id is
    drawn again). `None`: $CURVEWATCH_RUNS, else ./runs."""
    text = (os.environ.get(P.RUNS_ENV) or "runs") if runs_dir is None else runs_dir
    local = spool_dir(parse_url(str(text))) if is_url(text) else Path(text)
    root = remote_of(local)
    if root is None:
        return P.publish_run_dir(local, name, fill)[1]
    fs = filesystem(root)

    def fill_and_claim(run_id: str, staging: Path) -> None:
        fill(run_id, staging)
        try:
            fs.pipe_file(root.key(run_id, P.RUN_JSON), (staging / P.RUN_JSON).read_bytes(),
                         mode="create")
        except FileExistsError:
            raise IdTaken(run_id) from None

    for _ in range(100):
        try:
            return P.publish_run_dir(local, name, fill_and_claim)[1]
        except IdTaken:
            continue
    raise RuntimeError(f"could not claim a free run id in {root.url} after 100 tries")


_push_failed: set[str] = set()  # groups whose failed push was reported (once each)


def push_group(group_dir: Path) -> bool:
    """Send a group folder in a spool to its bucket: group.json and curves.jsonl whole, then a
    manifest naming their stamps (what readers poll); bring a STOP object down. Nothing for
    a group outside a spool. A study's group written from several machines is merged with
    the bucket's copy first (`merge_group`), so no machine's trials are dropped. A storage
    error is reported once and left to the next push (the group is whole in the spool)."""
    group_dir = Path(group_dir)
    root = remote_of(group_dir.parent)
    if root is None:
        return False
    try:
        _push_group(root, group_dir)
    except Exception as e:  # noqa: BLE001 - storage down: the next write pushes again
        if group_dir.name not in _push_failed:
            _push_failed.add(group_dir.name)
            print(f"curvewatch: group {group_dir.name} is not synced to {root.url} ({e!r}); "
                  "the next change of the group sends it again", file=sys.stderr)
        return False
    return True


def _push_group(root: RemoteRoot, group_dir: Path) -> None:
    fs, gid = filesystem(root), group_dir.name
    local = json.loads((group_dir / P.GROUP_JSON).read_bytes())
    try:
        remote = json.loads(bytes(fs.cat_file(root.key(gid, P.GROUP_JSON), start=0)))
    except (FileNotFoundError, ValueError):
        remote = None
    merged = merge_group(local, remote, host=hostname(), now=time.time())
    fs.pipe_file(root.key(gid, P.GROUP_JSON), json.dumps(merged, indent=2).encode())
    stamps = {P.GROUP_JSON: [time.time_ns(), 0]}
    curves = group_dir / GROUP_FILES[1]
    if curves.exists():
        fs.pipe_file(root.key(gid, GROUP_FILES[1]), curves.read_bytes())
        stamps[GROUP_FILES[1]] = stamps[P.GROUP_JSON]
    manifest = {"format": 1, "kind": "group", "files": {}, "synced_at": time.time(),
                "stamps": stamps}
    fs.pipe_file(root.key(gid, MANIFEST), json.dumps(manifest).encode())
    stop = root.key(gid, P.STOP)
    if merged.get("state") in ENDED:
        if fs.exists(stop):
            fs.rm(stop)  # the group honoured it; a resume must not stop again
    elif not (group_dir / P.STOP).exists() and fs.exists(stop):
        (group_dir / P.STOP).touch()


def merge_group(local: dict[str, Any], remote: dict[str, Any] | None, *, host: str,
                now: float) -> dict[str, Any]:
    """The group record to put from machine `host` (pure): `local`, unless both are one
    Optuna study's group; then members are joined by trial number (one that has ended wins),
    renumbered in trial order with their settings, and the workers are this host's from
    `local` and the others' from `remote`: while another host's worker beats, the group
    stays running (its aggregate is then the dashboard's, computed live)."""
    def study(rec: Any) -> bool:
        return isinstance(rec, dict) and (rec.get("sweep") or {}).get("mode") == "optuna"
    if remote is None or not (study(local) and study(remote)) \
            or remote.get("id") != local.get("id"):
        return local
    by_trial: dict[Any, dict[str, Any]] = {}
    for m in [*(remote.get("members") or []), *(local.get("members") or [])]:
        if not isinstance(m, dict):
            continue
        seen = by_trial.get(m.get("trial"))
        if seen is None or not seen.get("ended_at") or m.get("ended_at"):
            by_trial[m.get("trial")] = m
    members = [dict(m, index=i, setting=i) for i, m in enumerate(
        sorted(by_trial.values(), key=lambda m: (m.get("trial") is None, m.get("trial") or 0)))]
    stale = STALE_HEARTBEATS * float(local.get("heartbeat_seconds") or 5.0)
    others = [w for w in remote.get("workers") or [] if isinstance(w, dict)
              and w.get("host") != host and now - float(w.get("beat_at") or 0) < stale]
    out = dict(local, members=members, workers=[*(local.get("workers") or []), *others],
               sweep={**local["sweep"], "settings": [m.get("params") for m in members]},
               updated_at=max(local.get("updated_at") or 0, remote.get("updated_at") or 0))
    if others and local.get("state") != "running":
        out.update(state="running", ended_at=None, aggregate=None, stop_reason=None)
    return out
