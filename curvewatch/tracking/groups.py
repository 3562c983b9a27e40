"""Run groups: K-fold and bootstrap validation, repeated seeds and sweeps, as one thing.

A group is a folder in the runs directory, next to its members' run folders:

    runs/<group_id>/
      group.json          the record: method, members, state, aggregate (docs/run-format.md)
      curves.jsonl        the aggregate's per-epoch mean and std, once the group has ended
      group.log           output of a detached group runner
      logs/<index>.log    each member's trainer output
      STOP                present = please stop the group and its members

Each member is a normal run folder (`runs/<run_id>/`) whose run.json `group` is the group id.
Only the group runner writes group.json (atomically); readers never raise because of what is
in it: a broken record comes back as a GroupInfo whose `problem` says why.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from . import paths as P, safeio
from .aggregate import NO_VERDICT, aggregate, headline, rank_settings, score_summary
from .jsonio import atomic_write_bytes, atomic_write_json, dumps, read_json
from .jsonl import read_from
from .procinfo import hostname, lock_held, process_start_ticks
from .reader import (
    MAX_JSON_BYTES,
    HistoryReader,
    _count,
    _real,
    _text,
    _time,
    derive_state,
    in_mirror,
    list_runs,
    read_run,
    read_tail,
)
from .sync import push_group

GROUP_JSON = P.GROUP_JSON
CURVES = "curves.jsonl"
#: Group states a runner writes; readers derive `crashed` as for runs.
GROUP_STATES = ("running", "completed", "partial", "failed", "stopped")
#: Member states besides the run states: not launched yet, or never launched (group stopped).
MEMBER_PENDING, MEMBER_NOT_STARTED = "pending", "not_started"
#: Members in these states make the final aggregate; `running` joins them in a live one.
AGGREGATE_STATES = ("completed", "early_stopped", "stopped")
GROUP_METHODS = ("kfold", "bootstrap", "repeat", "sweep")
HEARTBEAT_SECONDS = 5.0


# --------------------------------------------------------------------------- writer
class GroupWriter:
    """The one writer of a group.json: created by the launcher, taken over by the runner."""

    def __init__(self, path: Path, record: dict[str, Any]):
        self.path = Path(path)
        self.id = self.path.name
        self._record = record
        self._written = time.monotonic()

    @classmethod
    def create(cls, runs_dir: str | Path, *, name: str, method: str,
               members: Sequence[Mapping[str, Any]], validation: str, repeat: int = 1,
               parallel: int = 1, threads: int = 0,
               base_config: Mapping[str, Any] | None = None,
               sweep: Mapping[str, Any] | None = None, argv: Sequence[str] = (),
               pid: int | None = None, group_id: str | None = None) -> "GroupWriter":
        """Make the group folder and its group.json (state running, every member pending).
        `pid` 0 means a detached runner is about to take over, or several processes write
        the group (only the heartbeat judges). A given `group_id` is created atomically or
        not at all: FileExistsError when that folder exists."""
        if method not in GROUP_METHODS:
            raise ValueError(f"method must be one of {', '.join(GROUP_METHODS)}, got {method!r}")
        P.check_name(name)
        now = time.time()
        pid = os.getpid() if pid is None else pid
        record: dict[str, Any] = {}

        def fill(gid: str, staging: Path) -> None:  # written whole, then published by rename
            record.clear()
            record.update({
                "format": P.FORMAT_VERSION, "kind": "group", "id": gid, "name": name,
                "created_at": now, "method": method, "validation": validation,
                "repeat": repeat, "parallel": parallel, "threads": threads,
                "base_config": dict(base_config or {}),
                "sweep": dict(sweep) if sweep else None, "argv": list(argv),
                "state": "running", "pid": pid or None,
                "pid_start": process_start_ticks(pid) if pid else None, "host": hostname(),
                "started_at": now, "updated_at": now, "ended_at": None,
                "heartbeat_seconds": HEARTBEAT_SECONDS, "stop_reason": None,
                "members": [{"state": MEMBER_PENDING, "run_id": None, "exit_code": None,
                             "error": None, "started_at": None, "ended_at": None, **dict(m)}
                            for m in members],
                "aggregate": None,
            })
            atomic_write_json(staging / GROUP_JSON, record)
            (staging / P.MEMBER_LOGS).mkdir(exist_ok=True)

        _, path = P.publish_run_dir(Path(runs_dir), name, fill, run_id=group_id)
        return cls(path, record)

    @classmethod
    def take_over(cls, group_dir: str | Path) -> "GroupWriter":
        """Continue writing a group created by a launcher, from this process (a detached
        runner): pid and heartbeat become this process's."""
        path = Path(group_dir)
        record = read_json(path / GROUP_JSON)
        record.update(pid=os.getpid(), pid_start=process_start_ticks(os.getpid()),
                      host=hostname(), updated_at=time.time())
        w = cls(path, record)
        w._write()
        return w

    @property
    def record(self) -> dict[str, Any]:
        return self._record

    def member_log(self, index: int) -> Path:
        return P.member_log_path(self.path, index)

    def update_member(self, index: int, **fields: Any) -> None:
        self._record["members"][index].update(fields)
        self._write()

    def save(self) -> None:
        """Write the record now (after changing `record` in place)."""
        self._write()

    def beat(self) -> None:
        """Refresh the heartbeat when it is due (call it from the runner's loop)."""
        if time.monotonic() - self._written >= self._record["heartbeat_seconds"]:
            self._write()

    def stop_requested(self) -> bool:
        return (self.path / P.STOP).exists()

    def finish(self, state: str, *, aggregate: Mapping[str, Any] | None,
               stop_reason: str | None = None) -> None:
        """Record the final state and the aggregate. The aggregate's `curves` (one record
        per epoch, large for long runs) go to curves.jsonl, so group.json stays small enough
        to list many groups quickly."""
        if state not in GROUP_STATES[1:]:
            raise ValueError(f"state must be one of {', '.join(GROUP_STATES[1:])}, got {state!r}")
        agg = dict(aggregate) if aggregate is not None else None
        if agg is not None:
            curves = agg.pop("curves", None) or []
            atomic_write_bytes(self.path / CURVES, "".join(
                dumps(c) + "\n" for c in curves).encode("utf-8"))
            agg["curves"] = CURVES
        self._record.update(state=state, ended_at=time.time(), stop_reason=stop_reason,
                            aggregate=agg)
        self._write(durable=True)
        try:
            (self.path / P.STOP).unlink()
        except FileNotFoundError:
            pass

    def _write(self, durable: bool = False) -> None:
        self._written = time.monotonic()
        self._record["updated_at"] = time.time()
        atomic_write_json(self.path / GROUP_JSON, self._record, durable=durable)
        push_group(self.path)  # a group in a spool goes up to its bucket (tracking.sync)


def request_stop(path: str | Path) -> None:
    """Ask a run or a group to stop gracefully (its STOP file)."""
    (Path(path) / P.STOP).touch()


# --------------------------------------------------------------------------- reader
@dataclass(frozen=True)
class GroupMember:
    """One member of a group: what the record planned and, when its run folder exists, the
    run's own state (so a crashed member shows as crashed)."""

    index: int
    name: str
    # pending | not_started | running | completed | early_stopped | stopped | failed | crashed
    # | unreadable
    state: str
    run_id: str | None = None
    fold: int | None = None
    seed: int | None = None
    setting: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class GroupAggregate:
    """A group's aggregate. `curves`: one row per epoch with `epoch`, `n` and `M_mean`,
    `M_std` per metric M. `scores`: {"val_loss": {mean, std, n, values}, "val_acc" or
    "val_r2": ...} over the members' best epochs. `per_member`: one row per member (index,
    run_id, state, setting, fold, seed, best_epoch, epochs, val_loss, val_acc, included).
    `ranking`: sweeps only, one row per setting, best first (rank, setting, params, members,
    failed, val_loss_mean, val_loss_std, val_acc_mean, ...)."""

    curves: pd.DataFrame
    scores: dict[str, dict[str, Any]]
    per_member: pd.DataFrame
    ranking: pd.DataFrame
    members: tuple[str, ...] = ()
    live: bool = False


@dataclass(frozen=True)
class GroupInfo:
    """What group.json says about one group, with the derived state."""

    id: str
    path: Path
    state: str  # running | completed | partial | failed | stopped | crashed | unreadable
    name: str = ""
    method: str = ""
    validation: str = ""
    repeat: int = 1
    parallel: int = 1
    created_at: float | None = None
    ended_at: float | None = None
    members: tuple[GroupMember, ...] = ()
    aggregate: GroupAggregate | None = None
    sweep: dict[str, Any] | None = None
    base_config: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    problem: str | None = None

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(m.run_id for m in self.members if m.run_id)

    @property
    def counts(self) -> dict[str, int]:
        """Members by state, e.g. {"completed": 4, "failed": 1}."""
        out: dict[str, int] = {}
        for m in self.members:
            out[m.state] = out.get(m.state, 0) + 1
        return out

    @property
    def settings(self) -> list[dict[str, Any]]:
        """The sweep's settings (parameter dicts), [] for other groups."""
        s = (self.sweep or {}).get("settings")
        return [dict(x) for x in s if isinstance(x, dict)] if isinstance(s, list) else []


#: Member states that count as finished: the member ran to its end (all its epochs, or early
#: stopping ended it). Stopped, failed, crashed and never-started members did not.
FINISHED_MEMBER_STATES = ("completed", "early_stopped")
#: The order in which `GroupProgress.text` lists the members that have not finished.
_UNFINISHED_ORDER = ("running", MEMBER_PENDING, "stopped", "failed", "crashed",
                     MEMBER_NOT_STARTED, "unreadable")


def state_words(state: str) -> str:
    """A member or group state as words: "not_started" -> "not started"."""
    return str(state).replace("_", " ")


@dataclass(frozen=True)
class GroupProgress:
    """How far a group is: `finished` of `members` ran to their end; `counts` has every
    member state; `fraction` is epochs done over epochs planned (a member without known
    epochs weighs one epoch; a finished member counts all its planned epochs)."""

    members: int
    finished: int
    counts: dict[str, int]
    fraction: float

    @property
    def text(self) -> str:
        """ "1 of 3 members finished · 1 stopped · 1 not started" """
        rest = sorted((s for s in self.counts if s not in FINISHED_MEMBER_STATES),
                      key=lambda s: (_UNFINISHED_ORDER.index(s) if s in _UNFINISHED_ORDER
                                     else len(_UNFINISHED_ORDER), s))
        return " · ".join([f"{self.finished} of {self.members} members finished",
                           *(f"{self.counts[s]} {state_words(s)}" for s in rest)])


def group_progress(members: Sequence[tuple[str, int | None, int | None]]) -> GroupProgress:
    """The one definition of a group's progress, from each member's (state, epochs done,
    epochs planned); None where unknown (a member never started has no run). Pure."""
    counts: dict[str, int] = {}
    done = total = 0.0
    for state, epoch, epochs in members:
        counts[state] = counts.get(state, 0) + 1
        finished = state in FINISHED_MEMBER_STATES
        if epochs:
            total += epochs
            done += epochs if finished else min(max(epoch or 0, 0), epochs)
        else:
            total += 1
            done += 1 if finished else 0
    fin = sum(n for s, n in counts.items() if s in FINISHED_MEMBER_STATES)
    return GroupProgress(members=len(members), finished=fin, counts=counts,
                         fraction=min(1.0, done / total) if total else 0.0)


def _opt_int(x: Any) -> int | None:
    """An int a float holds exactly (|x| <= 2**53, not a bool), else None."""
    return x if isinstance(x, int) and not isinstance(x, bool) and abs(x) <= 2**53 else None


def _score(raw: dict[str, Any]) -> dict[str, Any]:
    """One score {mean, std, n, values} with its fields type-checked (others kept)."""
    values = raw.get("values")
    return {**raw, "mean": _real(raw.get("mean")), "std": _real(raw.get("std")),
            "n": _count(raw.get("n")) or 0,
            "values": [v for v in map(_real, values) if v is not None]
            if isinstance(values, list) else []}


def _member(raw: Any, i: int, runs_root: Path) -> GroupMember:
    if not isinstance(raw, dict):
        return GroupMember(index=i, name=f"member {i}", state="unreadable",
                           error="member entry is not an object")
    rid = r if isinstance(r := raw.get("run_id"), str) and P.is_run_id(r) else None
    state = s if (s := _text(raw.get("state"), 40)) else "unreadable"
    if rid and P.is_run_id(rid):
        run_dir = runs_root / rid
        if run_dir.is_dir() and not run_dir.is_symlink():
            info = read_run(run_dir)
            if not info.problem:
                state = info.state
    params = raw.get("params")
    index = _opt_int(raw.get("index"))
    return GroupMember(index=index if index is not None else i,
                       name=_text(raw.get("name")) or f"member {i}", state=state,
                       run_id=rid, fold=_opt_int(raw.get("fold")), seed=_opt_int(raw.get("seed")),
                       setting=_opt_int(raw.get("setting")),
                       params=dict(params) if isinstance(params, dict) else {},
                       error=_text(raw.get("error"), 8000),
                       exit_code=_opt_int(raw.get("exit_code")))


def _aggregate_from(raw: Any, live: bool = False, curves: list[Any] | None = None
                    ) -> GroupAggregate | None:
    if not isinstance(raw, dict):
        return None
    if curves is None:
        curves = raw.get("curves") if isinstance(raw.get("curves"), list) else []
    curves_df = pd.DataFrame.from_records([c for c in curves if isinstance(c, dict)]) \
        if curves else pd.DataFrame({"epoch": pd.Series(dtype="int64")})
    per = raw.get("per_member") if isinstance(raw.get("per_member"), list) else []
    per_df = pd.DataFrame.from_records([r for r in per if isinstance(r, dict)]) if per else \
        pd.DataFrame(columns=["index", "run_id", "state", "included"])
    rows = []
    for entry in raw.get("ranking") or []:
        if not isinstance(entry, dict):
            continue
        row: dict[str, Any] = {
            "rank": _count(entry.get("rank")), "setting": _opt_int(entry.get("setting")),
            "params": p if isinstance(p := entry.get("params"), dict) else {},
            "members": [m for m in m_ if isinstance(m, str)]
            if isinstance(m_ := entry.get("members"), list) else [],
            "failed": [m for m in f_ if isinstance(m, str)]
            if isinstance(f_ := entry.get("failed"), list) else []}
        for metric, s in entry.items():
            if isinstance(s, dict) and "mean" in s:
                sc = _score(s)
                row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"] = \
                    sc["mean"], sc["std"], sc["n"]
        rows.append(row)
    ranking = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(
        columns=["rank", "setting", "params", "members", "failed"])
    scores = s if isinstance(s := raw.get("scores"), dict) else {}
    members = tuple(m for m in raw.get("members") or () if isinstance(m, str))
    return GroupAggregate(curves=curves_df, scores={k: _score(v) for k, v in scores.items()
                                                    if isinstance(v, dict)},
                          per_member=per_df, ranking=ranking, members=members, live=live)


def read_group(group_dir: str | Path, *, curves: bool = True) -> GroupInfo:
    """GroupInfo for one group folder; problems are reported in `.problem`, never raised.
    `curves=False` leaves the aggregate's per-epoch curves empty (no curves.jsonl read)."""
    path = Path(group_dir)
    gid = path.name
    if path.is_symlink():
        return GroupInfo(gid, path, "unreadable",
                         problem="the group folder is a symlink, which is never followed")
    try:
        rec = safeio.read_json_file(path / GROUP_JSON, MAX_JSON_BYTES)
        if not isinstance(rec, dict):
            raise ValueError(f"{GROUP_JSON} does not hold a JSON object")
    except FileNotFoundError:
        return GroupInfo(gid, path, "unreadable", problem=f"{GROUP_JSON} is missing")
    except (OSError, ValueError) as e:
        return GroupInfo(gid, path, "unreadable",
                         problem=f"{GROUP_JSON} is unreadable: {safeio.describe(e)}")
    raw_members = m if isinstance(m := rec.get("members"), list) else []
    members = tuple(_member(m, i, path.parent) for i, m in enumerate(raw_members))
    problem = None if isinstance(rec.get("members"), list) else "group.json has no member list"
    try:
        raw_agg = rec.get("aggregate")
        curve_rows: list[Any] = []
        if curves and isinstance(raw_agg, dict):
            chunk = read_from(path / CURVES)
            curve_rows = chunk.records
            if chunk.problems:
                problem = f"{CURVES}: {chunk.problems[0]}"
        agg = _aggregate_from(raw_agg, curves=curve_rows)
    except Exception as e:  # a malformed aggregate must not hide the rest of the group
        agg, problem = None, f"the aggregate in {GROUP_JSON} is unreadable: {e}"
    state = derive_state(rec, pid_check=not in_mirror(path.parent))
    return GroupInfo(
        id=gid, path=path, state=state, name=_text(rec.get("name")) or gid,
        method=_text(rec.get("method"), 40) or "", validation=_text(rec.get("validation"), 40)
        or "", repeat=_count(rec.get("repeat")) or 1, parallel=_count(rec.get("parallel")) or 1,
        created_at=_time(rec.get("created_at")), ended_at=_time(rec.get("ended_at")),
        members=members, aggregate=agg,
        sweep=rec.get("sweep") if isinstance(rec.get("sweep"), dict) else None,
        base_config=c if isinstance(c := rec.get("base_config"), dict) else {},
        stop_reason=_text(rec.get("stop_reason"), 2000), problem=problem)


def list_groups(runs_dir: str | Path | None = None, *, curves: bool = False
                ) -> list[GroupInfo]:
    """Every group in the runs directory, newest first (a missing directory is empty). The
    aggregates' per-epoch curves are left empty unless `curves` (use read_group for one)."""
    root = Path(runs_dir) if runs_dir is not None else P.default_runs_dir()
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name, reverse=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [read_group(Path(e.path), curves=curves) for e in entries
            if not e.name.startswith(".") and P.is_run_id(e.name)
            and e.is_dir(follow_symlinks=False) and P.is_group_dir(e.path)]


def aggregate_group(group: GroupInfo, *, live: bool = True) -> GroupAggregate:
    """Compute a group's aggregate now from its members' metrics files (running members
    included when `live`): the same numbers the runner writes when the group ends."""
    states = AGGREGATE_STATES + (("running",) if live else ())
    histories = {}
    for m in group.members:
        if m.run_id and P.is_run_id(m.run_id):
            histories[m.run_id] = HistoryReader(group.path.parent / m.run_id).read()
    members = [{"index": m.index, "run_id": m.run_id, "state": m.state, "setting": m.setting,
                "fold": m.fold, "seed": m.seed} for m in group.members]
    raw = aggregate(members, histories, include_states=states, settings=group.settings)
    out = _aggregate_from(raw, live=live)
    assert out is not None
    return out


def running_members(group: GroupInfo) -> tuple[str, ...]:
    """The ids of the group's member runs that are training now, judged from the runs
    themselves (a live lock, or state running as derive_state gives it from pid and
    heartbeat), never from group.json's member states, which lag: a member started moments
    ago may have no run id in the record yet, so every run whose run.json names the group
    counts too."""
    root = group.path.parent
    ids = {m.run_id for m in group.members if m.run_id}
    ids |= {r.id for r in list_runs(root) if r.group == group.id}
    live = []
    for rid in sorted(ids):
        path = root / rid
        if not path.is_dir() or path.is_symlink():
            continue
        if lock_held(path) or read_run(path).state == "running":
            live.append(rid)
    return tuple(live)


def ranking_entries(ranking: pd.DataFrame) -> list[dict[str, Any]]:
    """GroupAggregate.ranking rows back in `rank_settings`' shape ({params, val_loss: {mean,
    std, n}, ...}), best first, for the words of tracking.aggregate."""
    out = []
    for row in ranking.to_dict("records"):
        entry: dict[str, Any] = {"params": row.get("params") or {}}
        for key in row:
            if isinstance(key, str) and key.endswith("_mean"):
                m = key[:-5]
                entry[m] = {"mean": _real(row.get(key)), "std": _real(row.get(f"{m}_std")),
                            "n": _count(row.get(f"{m}_n")) or 0}
        out.append(entry)
    return out


def group_headline(group: GroupInfo, best_so_far: Mapping[str, float | None] | None = None
                   ) -> str:
    """A group's verdict in one line (tracking.aggregate.headline): a sweep's ranking of
    settings, else the members' mean ± sd. From the recorded aggregate; while a group has
    none yet, from `best_so_far` (member run id -> its best val loss so far, e.g. from
    status.json) when given."""
    agg = group.aggregate
    if agg is not None and agg.scores:
        return headline(group.method, agg.scores, ranking_entries(agg.ranking))
    rows = [{"setting": m.setting, "included": True, "run_id": m.run_id,
             "val_loss": (best_so_far or {}).get(m.run_id)}
            for m in group.members if m.run_id and (best_so_far or {}).get(m.run_id) is not None]
    if not rows:
        return NO_VERDICT
    frame = pd.DataFrame.from_records(rows)
    return headline(group.method, {"val_loss": score_summary(frame["val_loss"].tolist())},
                    rank_settings(frame, group.settings) if group.settings else ())


def read_member_log(group: GroupInfo, index: int, max_bytes: int = 20_000) -> str:
    """The last `max_bytes` of member `index`'s trainer output ('' when there is none)."""
    return read_tail(P.member_log_path(group.path, index), max_bytes, root=group.path) or ""
