"""Run groups: plan the members of a K-fold / bootstrap validation, a repeat over seeds or a
sweep; check them all before anything starts; run them as `python -m curvewatch.trainer run`
processes, K at a time; stop them together; and write the group's aggregate when they end.

Each member is a normal run (its own folder, curves, checkpoints and findings) whose run.json
names the group. The group record (tracking.GroupWriter) is written by this runner only.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

from curvewatch.commands import ANY_SHELL, Invocation
from curvewatch.tracking import GroupWriter, read_history, read_run, request_stop
from curvewatch.tracking.aggregate import aggregate, headline, score_words, setting_words
from curvewatch.tracking.groups import (
    AGGREGATE_STATES,
    MEMBER_NOT_STARTED,
    MEMBER_PENDING,
    GroupInfo,
)
from curvewatch.tracking.paths import RESUMABLE_STATES, check_name, is_run_id, member_log_path
from curvewatch.tracking.reader import read_tail

from .config import TrainConfig, to_args, validate
from .errors import ConfigError
from .launch import SigtermStop
from .sweep import describe
from .validation import parse_validation

#: Seconds between looks at the members while they run.
POLL_SECONDS = 0.2
SUCCESS = ("completed", "early_stopped")
#: The first line a foreground `python -m trainer run` prints: how the runner learns the id.
_RUN_LINE = re.compile(rb"^run (\S+) in ", re.M)


@dataclass(frozen=True)
class MemberPlan:
    """One run of a group: its full config and what it stands for in the group."""

    index: int
    name: str
    config: TrainConfig
    seed: int
    repeat: int = 0
    fold: int | None = None
    setting: int | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupPlan:
    """Every member of a group, decided and validated before anything starts."""

    name: str
    method: str  # kfold | bootstrap | repeat | sweep
    validation: str
    repeat: int
    parallel: int
    threads: int
    base: TrainConfig
    members: tuple[MemberPlan, ...]
    settings: tuple[dict[str, str], ...] = ()
    sweep: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def member_threads(requested: int, parallel: int, cores: int | None = None) -> int:
    """torch threads per member: the user's --threads, else cores // parallel when several
    members run at once (so K runs don't oversubscribe the cores), else torch's default (0)."""
    if requested > 0:
        return requested
    if parallel <= 1:
        return 0
    return max(1, (cores or available_cores()) // parallel)


def plan_group(base: TrainConfig, *, name: str, repeat: int = 1, parallel: int = 1,
               settings: Sequence[Mapping[str, str]] = (), sweep: Mapping[str, Any] | None = None,
               tags: Sequence[str] = ()) -> GroupPlan:
    """The members: for each sweep setting (or the base config alone), for each of `repeat`
    seeds (base seed, +1, ...), for each fold or resample of the validation scheme. Raises
    ConfigError naming the setting and the value when a member's config is not accepted."""
    if not 1 <= repeat <= 1000:
        raise ConfigError(f"repeat must be between 1 and 1000, got {repeat}")
    if not 1 <= parallel <= 256:
        raise ConfigError(f"parallel must be between 1 and 256, got {parallel}")
    try:
        check_name(name)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    plan = parse_validation(base.validation)
    folds: list[int | None] = list(range(1, plan.k + 1)) if plan.is_group and \
        base.fold is None else [base.fold]
    points: list[tuple[int | None, dict[str, str]]] = \
        [(i, dict(s)) for i, s in enumerate(settings)] or [(None, {})]
    n = len(points) * repeat * len(folds)
    if n > 10_000:
        raise ConfigError(f"the group would have {n} runs; at most 10000")
    parallel = min(parallel, n)
    threads = member_threads(base.threads, parallel)
    raw_base = base.to_dict()
    members: list[MemberPlan] = []
    for setting, params in points:
        try:
            point = validate({**raw_base, **params})
        except ConfigError as e:
            raise ConfigError(f"setting {describe(params)}: {e}") from None
        for r in range(repeat):
            for fold in folds:
                seed = point.seed + r
                cfg = validate({**point.to_dict(), "seed": seed, "fold": fold,
                                "threads": threads})
                label = " ".join(x for x in (
                    describe(params), f"seed {seed}" if repeat > 1 else "",
                    f"{plan.member_word} {fold}/{plan.k}" if fold is not None else "") if x)
                members.append(MemberPlan(len(members), f"{name} {label}".strip()[:200], cfg,
                                          seed, r, fold, setting, params))
    method = "sweep" if settings else (plan.method if plan.is_group and base.fold is None
                                       else "repeat")
    return GroupPlan(name=name, method=method, validation=str(plan), repeat=repeat,
                     parallel=parallel, threads=threads, base=base, members=tuple(members),
                     settings=tuple(dict(s) for s in settings),
                     sweep=dict(sweep) if sweep else None, tags=tuple(tags))


def check_plan(plan: GroupPlan) -> None:
    """Load the data and build the model of the first member of each setting, so that data
    and model errors are usage errors before anything starts (ConfigError)."""
    from .runner import prepare

    seen: set[int | None] = set()
    for m in plan.members:
        if m.setting in seen:
            continue
        seen.add(m.setting)
        try:
            prepare(m.config)
        except ConfigError as e:
            prefix = f"setting {describe(m.params)}: " if m.params else ""
            raise ConfigError(f"{prefix}{e}") from None


def member_args(plan: GroupPlan, m: MemberPlan, runs_dir: Path, group_id: str) -> list[str]:
    """`python -m trainer` arguments that start member `m` as a foreground run."""
    args = ["run", "--runs-dir", str(runs_dir), "--name", m.name, "--group", group_id]
    for t in plan.tags:
        args += ["--tag", t]
    return args + to_args(m.config)


def create_group(plan: GroupPlan, runs_dir: Path, *, argv: Sequence[str] = (),
                 detached: bool = False) -> GroupWriter:
    """The group folder and its record, every member pending (nothing runs yet)."""
    runs_dir = Path(runs_dir).resolve()
    writer = GroupWriter.create(
        runs_dir, name=plan.name, method=plan.method, validation=plan.validation,
        repeat=plan.repeat, parallel=plan.parallel, threads=plan.threads,
        base_config=plan.base.to_dict(), argv=argv, pid=0 if detached else None,
        sweep={**(plan.sweep or {}), "settings": list(plan.settings)} if plan.settings else None,
        members=[{"index": m.index, "name": m.name, "fold": m.fold, "seed": m.seed,
                  "repeat": m.repeat, "setting": m.setting, "params": m.params, "args": []}
                 for m in plan.members])
    for m in plan.members:
        writer.record["members"][m.index]["args"] = member_args(plan, m, runs_dir, writer.id)
    writer.save()
    return writer


# --------------------------------------------------------------------------- running
@dataclass
class _Live:
    proc: subprocess.Popen
    log: IO[bytes]
    run_id: str | None = None
    stop_sent: bool = False


def _start(writer: GroupWriter, index: int) -> _Live:
    """Start member `index`: its planned `run`, or `resume` of the run it already has (a group
    being resumed)."""
    m = writer.record["members"][index]
    rid = m.get("run_id")
    args = ["resume", rid, "--runs-dir", str(writer.path.parent)] if rid else list(m["args"])
    if m.get("epochs"):  # set by `resume GROUP --epochs N`; the last --epochs given counts
        args += ["--epochs", str(m["epochs"])]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    threads = writer.record.get("threads") or 0
    if threads > 0:  # BLAS/OpenMP pools too, not only torch's
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = open(writer.member_log(index), "ab")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "curvewatch.trainer", *args],
                                stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, close_fds=True)
    except OSError:
        log.close()
        raise
    writer.update_member(index, state="running", started_at=time.time())
    return _Live(proc, log, run_id=rid)


def plan_resume(group: GroupInfo, epochs: int | None = None,
                how: Invocation = ANY_SHELL) -> dict[int, str | None]:
    """The members that resuming `group` trains: index -> the run id to resume (a run that
    stopped or crashed; with `epochs`, also one that completed), or None to start the member
    afresh (it never created its run). With `epochs` a member whose run has trained that many
    epochs already is left as it is. Raises ConfigError naming why when the group cannot be
    resumed now (a command to stop it in `how`'s words)."""
    if group.problem or group.state == "unreadable":
        raise ConfigError(f"group {group.id} cannot be read: {group.problem}")
    if group.state == "running":
        raise ConfigError(f"group {group.id} is still running (its runner is alive); wait for "
                          f"it, or stop it first: {how.command('stop', group.id)}")
    plan: dict[int, str | None] = {}
    states = []
    for m in group.members:
        rid, state = m.run_id, m.state
        if rid is None and state == "running":  # the runner died before noting the run id
            rid = _run_id_in(member_log_path(group.path, m.index))
            state = read_run(group.path.parent / rid).state if rid else MEMBER_PENDING
        if state == "running":
            raise ConfigError(f"member {m.name} ({rid}) of group {group.id} is still "
                              "training; wait for it, or stop it first: "
                              f"{how.command('stop', str(rid))}")
        longer = (*RESUMABLE_STATES, "completed") if epochs is not None else RESUMABLE_STATES
        if rid and state in longer and (
                epochs is None or read_run(group.path.parent / rid).epoch < epochs):
            plan[m.index] = rid
        elif not rid and state in (MEMBER_PENDING, MEMBER_NOT_STARTED):
            plan[m.index] = None
        states.append(state)
    if not plan:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(states).items()))
        raise ConfigError(
            f"group {group.id} has nothing to resume: every member has ended ({counts}); "
            + ("only members that stopped, crashed or never started are resumed (--epochs N "
               "trains completed ones longer too)" if epochs is None else
               f"with --epochs {epochs}, only members that stopped, crashed, completed with "
               f"fewer than {epochs} epochs or never started are resumed"))
    return plan


def reopen_group(group: GroupInfo, plan: Mapping[int, str | None], *,
                 detached: bool, epochs: int | None = None) -> GroupWriter:
    """Take over a group's record to resume it: the planned members back to pending (a
    resumed one keeps its run id, so it is resumed rather than started again), the group back
    to running. `detached`: a runner process is about to take over (only the heartbeat
    judges it until then). `epochs`: the planned members train up to that many epochs in all
    (their `epochs` in the record, which _start passes on)."""
    writer = GroupWriter.take_over(group.path)
    rec = writer.record
    for i, rid in plan.items():
        rec["members"][i].update(state=MEMBER_PENDING, run_id=rid, exit_code=None, error=None,
                                 ended_at=None)
        if epochs is not None:
            rec["members"][i]["epochs"] = epochs
    resumes = rec.get("resumes") if isinstance(rec.get("resumes"), int) else 0
    rec.update(state="running", ended_at=None, stop_reason=None, aggregate=None,
               resumes=resumes + 1, resumed_at=time.time())
    if detached:
        rec.update(pid=None, pid_start=None)
    writer.save()
    return writer


def _run_id_in(log: Path) -> str | None:
    """The run id a member's output announced in its first lines, or None."""
    try:
        with open(log, "rb") as f:
            head = f.read(65536)
    except OSError:
        return None
    m = _RUN_LINE.search(head)
    rid = m.group(1).decode("ascii", "replace") if m else None
    return rid if rid and is_run_id(rid) else None


def _log_tail(writer: GroupWriter, index: int, lines: int = 15) -> str:
    text = read_tail(writer.member_log(index), 8000) or ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _finish_member(writer: GroupWriter, index: int, live: _Live, code: int) -> dict[str, Any]:
    live.log.close()
    rid = live.run_id or _run_id_in(writer.member_log(index))
    fields: dict[str, Any] = {"exit_code": code, "ended_at": time.time(), "run_id": rid}
    if rid:
        info = read_run(writer.path.parent / rid)
        fields["state"] = info.state if not info.problem else "failed"
        err = info.status.get("error") or info.problem
        fields["error"] = err if fields["state"] == "failed" else None
        fields["best_val_loss"], fields["best_epoch"] = info.best_val_loss, info.best_epoch
    else:  # it never got as far as its run folder
        fields["state"] = "failed"
        fields["error"] = _log_tail(writer, index) or f"exited with code {code}"
    writer.update_member(index, **fields)
    return writer.record["members"][index]


def run_group(writer: GroupWriter, *, echo: Callable[[str], None] = print) -> str:
    """Run the pending members, `parallel` at a time, until all have ended or the group is
    asked to stop (STOP file, SIGTERM, Ctrl-C); then write the aggregate and the final state.
    A member that fails does not stop the others. Returns the group's final state."""
    rec = writer.record
    members = rec["members"]
    total = len(members)
    parallel = max(1, int(rec.get("parallel") or 1))
    pending = deque(i for i, m in enumerate(members) if m["state"] == "pending")
    live: dict[int, _Live] = {}
    signals = SigtermStop()
    stop_reason: str | None = None
    done = total - len(pending)
    while pending or live:
        try:
            if stop_reason is None and (writer.stop_requested() or signals.reason):
                stop_reason = signals.reason or "stop requested (STOP file)"
            if stop_reason is not None and pending:
                for i in pending:
                    writer.update_member(i, state=MEMBER_NOT_STARTED)
                echo(f"stopping: {len(pending)} members not started, {len(live)} asked to stop")
                pending.clear()
            while pending and len(live) < parallel:
                i = pending.popleft()
                live[i] = _start(writer, i)
                echo(f"[{i + 1}/{total}] started {members[i]['name']}")
            for i, lv in list(live.items()):
                if lv.run_id is None:
                    lv.run_id = _run_id_in(writer.member_log(i))
                    if lv.run_id:
                        writer.update_member(i, run_id=lv.run_id)
                code = lv.proc.poll()
                if stop_reason is not None and lv.run_id and not lv.stop_sent and code is None:
                    request_stop(writer.path.parent / lv.run_id)
                    lv.stop_sent = True
                if code is not None:
                    del live[i]
                    done += 1
                    # numbered like its "started" line; the count says how many have ended
                    echo(f"[{i + 1}/{total}] {_member_line(_finish_member(writer, i, lv, code))}"
                         f" ({done} of {total} ended)")
            writer.beat()
            if pending or live:
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:  # the members got the same SIGINT and stop on their own
            stop_reason = "interrupted (Ctrl-C)"
    state = _group_state([m["state"] for m in members], stop_reason)
    agg = group_aggregate(writer)
    writer.finish(state, aggregate=agg, stop_reason=stop_reason)
    for line in summary_lines(writer.record):
        echo(line)
    return state


def _group_state(states: list[str], stop_reason: str | None) -> str:
    if stop_reason is not None:
        return "stopped"
    ok = sum(s in SUCCESS for s in states)
    if ok == len(states):
        return "completed"
    return "failed" if ok == 0 and not any(s == "stopped" for s in states) else "partial"


def group_aggregate(writer: GroupWriter) -> dict[str, Any]:
    rec = writer.record
    histories = {m["run_id"]: read_history(writer.path.parent / m["run_id"])
                 for m in rec["members"] if m.get("run_id") and is_run_id(m["run_id"])}
    settings = (rec.get("sweep") or {}).get("settings") or []
    return aggregate(rec["members"], histories, include_states=AGGREGATE_STATES,
                     settings=settings)


def _fmt(x: Any, spec: str = ".4f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "-"


def _member_line(m: Mapping[str, Any]) -> str:
    line = f"{m['name']}: {m['state']}"
    if m.get("best_val_loss") is not None:
        line += f", best val_loss {_fmt(m['best_val_loss'])} at epoch {m.get('best_epoch')}"
    if m.get("run_id"):
        line += f" ({m['run_id']})"
    if m["state"] == "failed" and m.get("error"):
        line += f": {str(m['error']).strip().splitlines()[-1]}"
    return line


def summary_lines(rec: Mapping[str, Any]) -> list[str]:
    """The group's result in a few lines: state, members by state, the verdict (a sweep's
    ranking of settings, else mean ± sd over the members), and a sweep's full ranking."""
    agg = rec.get("aggregate") or {}
    counts: dict[str, int] = {}
    for m in rec["members"]:
        counts[m["state"]] = counts.get(m["state"], 0) + 1
    n = len((agg.get("members") or []))
    ranking = agg.get("ranking") or []
    lines = [f"group {rec['id']} {rec['state']}: "
             + ", ".join(f"{c} {s}" for s, c in counts.items())]
    what = {"kfold": "cross-validated", "bootstrap": "cross-validated",
            "sweep": "by setting"}.get(rec["method"], "over seeds")
    lines.append(f"{what} (best epoch of {n} members): "
                 f"{headline(rec['method'], agg.get('scores') or {}, ranking)}")
    if ranking:
        lines.append("ranking by validation loss (each setting's runs; ± sd where several):")
        acc = next((m for m in ("val_acc", "val_r2") if m in ranking[0]), None)
        for r in ranking:
            line = f"  {r['rank']:>3}. {setting_words(r['params']):<40} val_loss " \
                   f"{score_words(r.get('val_loss'))}"
            if acc:
                line += f"  {acc} {score_words(r.get(acc))}"
            if r.get("failed"):
                line += f"  ({r['failed']} failed)"
            lines.append(line)
    return lines


def stop_group(runs_root: Path, group_dir: Path) -> list[str]:
    """Ask a group and its running members to stop (STOP files); works even when the group
    runner is gone. Returns the ids of the members asked."""
    from curvewatch.tracking import read_group
    from curvewatch.tracking.groups import running_members

    request_stop(group_dir)
    asked = list(running_members(read_group(group_dir)))
    for rid in asked:
        request_stop(runs_root / rid)
    return asked
