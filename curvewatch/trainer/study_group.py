"""The one Curvewatch group of an Optuna study in a runs directory, shared by every worker
of the study that writes there: its id is derived from the storage and the study's name, the
first worker creates it atomically and the others join it; every change is a locked
read-modify-write of group.json (jsonio.update_json), so workers never lose each other's
members; the last worker to leave finishes it."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from curvewatch.tracking import GroupWriter, paths as P
from curvewatch.tracking.groups import HEARTBEAT_SECONDS
from curvewatch.tracking.jsonio import update_json
from curvewatch.tracking.procinfo import hostname, process_alive, process_start_ticks
from curvewatch.tracking.reader import STALE_HEARTBEATS
from curvewatch.tracking.sync import push_group

#: group.json's list of the workers in the group now: host, pid, pid_start, beat_at.
WORKERS = "workers"


def study_group_id(storage: str, study: str) -> str:
    """`optuna-<study slug>-<8 hex>`: the same for every worker of one study on one storage
    (a journal file by its absolute path, a database by its URL without the password)."""
    where = storage if "://" in storage else os.path.abspath(storage)
    digest = hashlib.sha256(f"{where}\n{study}".encode()).hexdigest()[:8]
    return f"optuna-{P.slugify(study, 30)}-{digest}"


def _me() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": hostname(), "pid": pid, "pid_start": process_start_ticks(pid),
            "beat_at": time.time()}


def _is_me(w: Any, me: Mapping[str, Any]) -> bool:
    return isinstance(w, dict) and (w.get("host"), w.get("pid")) == (me["host"], me["pid"])


def _alive(w: Any, now: float) -> bool:
    """A worker entry whose process lives: by pid on this host, else by its beat's age."""
    if not isinstance(w, dict):
        return False
    if w.get("host") == hostname():
        return process_alive(w.get("pid"), w.get("pid_start"))  # type: ignore[arg-type]
    beat = w.get("beat_at")
    return isinstance(beat, (int, float)) and now - beat < STALE_HEARTBEATS * HEARTBEAT_SECONDS


def _enter(rec: dict[str, Any], me: dict[str, Any], *, prune: bool = False
           ) -> dict[str, Any]:
    """`me` listed (its beat refreshed) in a running group: a group that another worker
    ended, taking this one for gone, runs again. `prune` drops the workers that are gone."""
    workers = [w for w in rec.get(WORKERS) or [] if not _is_me(w, me)
               and (not prune or _alive(w, me["beat_at"]))]
    rec[WORKERS] = [*workers, me]
    if rec.get("state") != "running":
        rec.update(state="running", ended_at=None, stop_reason=None, aggregate=None)
    return rec


def final_state(members: list[Mapping[str, Any]], stopped: bool) -> str:
    """A study group's end (pure): a pruned trial is how a study goes, so completed unless
    trials failed (partial; failed when every one did), or stopped when asked to."""
    failed = sum(m.get("outcome") == "failed" for m in members)
    if stopped:
        return "stopped"
    return "completed" if not failed else "failed" if failed == len(members) else "partial"


class StudyGroup:
    """This worker's handle on the study's group (created with its first trial)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name
        self.record: dict[str, Any] = {}
        self._beat = time.monotonic()

    @classmethod
    def join(cls, runs_dir: Path, group_id: str, *, name: str, base_config: Mapping[str, Any],
             validation: str, sweep: Mapping[str, Any], argv: list[str]) -> "StudyGroup":
        """Create the group (atomically: one worker wins, the others find it) and join it:
        this worker is listed, and a group a finished worker had ended runs again."""
        try:  # pid 0: several processes write it, only the heartbeat judges it
            GroupWriter.create(runs_dir, name=name, method="sweep", members=[],
                               validation=validation, base_config=base_config,
                               sweep={**sweep, "settings": []}, argv=argv, pid=0,
                               group_id=group_id)
        except FileExistsError:
            pass
        group = cls(P.group_path(runs_dir, group_id))
        me = _me()
        group._update(lambda rec: _enter(rec, me, prune=True))
        return group

    def _update(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        def stamped(rec: dict[str, Any]) -> dict[str, Any]:
            rec = change(rec)
            rec["updated_at"] = time.time()
            return rec
        self.record = update_json(self.path / P.GROUP_JSON, stamped)
        self._beat = time.monotonic()
        push_group(self.path)  # a group in a spool goes up to its bucket

    def add_member(self, trial: int, name: str, params: dict[str, str], run_id: str,
                   seed: int) -> None:
        me = _me()

        def add(rec: dict[str, Any]) -> dict[str, Any]:
            _enter(rec, me)
            index = len(rec["members"])
            rec["sweep"]["settings"].append(params)
            rec["members"].append({
                "index": index, "name": name, "trial": trial, "fold": None, "seed": seed,
                "repeat": 0, "setting": index, "params": params, "args": [],
                "state": "running", "run_id": run_id, "exit_code": None, "error": None,
                "started_at": time.time(), "ended_at": None, "outcome": None})
            return rec
        self._update(add)

    def update_member(self, trial: int, **fields: Any) -> None:
        def change(rec: dict[str, Any]) -> dict[str, Any]:
            for m in rec["members"]:
                if m.get("trial") == trial:
                    m.update(fields)
            return rec
        self._update(change)

    def beat(self) -> None:
        """Refresh the group's and this worker's heartbeat when due."""
        if time.monotonic() - self._beat < HEARTBEAT_SECONDS:
            return
        me = _me()
        self._update(lambda rec: _enter(rec, me))

    def stop_requested(self) -> bool:
        return (self.path / P.STOP).exists()

    def leave(self, stop_reason: str | None,
              aggregate: Callable[[Any], dict[str, Any]]) -> str | None:
        """Take this worker off the group; the last live worker finishes it (aggregate over
        every trial, final state). Returns the final state, None while others work on."""
        me = _me()
        ended: list[str] = []

        def change(rec: dict[str, Any]) -> dict[str, Any]:
            others = [w for w in rec.get(WORKERS) or []
                      if not _is_me(w, me) and _alive(w, me["beat_at"])]
            rec[WORKERS] = others
            reason = stop_reason or rec.get("stop_reason")
            if others:  # a stop is kept for the last one (the others see the STOP file too)
                rec["stop_reason"] = reason
                return rec
            self.record = rec
            writer = GroupWriter(self.path, rec)  # writes curves.jsonl, drops STOP
            writer.finish(final_state(rec["members"], bool(reason)),
                          aggregate=aggregate(self), stop_reason=reason)
            ended.append(rec["state"])
            return rec
        self._update(change)
        return ended[0] if ended else None
