"""Sweeps across machines on Optuna: `python -m trainer sweep --optuna STORAGE --study NAME
--trials N`. Every worker started on the same storage and study takes trials from it until the
study has N finished (complete or pruned) or running trials; each trial trains one ordinary
run, in this process, into the study's one Curvewatch group (trainer.study_group).

Optuna is imported only here, and only when a sweep asks for it.
"""
from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from curvewatch.tracking import Run, read_run
from curvewatch.tracking.annotate import check_tags
from curvewatch.tracking.paths import check_name

from .config import TrainConfig, validate
from .errors import ConfigError, did_you_mean, shown
from .sweep import parse_grid, parse_range, refuse_repeats

PRUNERS = ("median", "hyperband", "none")
#: URL schemes handed to Optuna's RDBStorage (SQLAlchemy), a driver after '+' allowed.
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
#: RDB heartbeat: a worker beats every HEARTBEAT_SECONDS ($CURVEWATCH_OPTUNA_HEARTBEAT);
#: a RUNNING trial whose worker has been silent for GRACE_BEATS beats is failed.
HEARTBEAT_SECONDS, GRACE_BEATS = 10, 6
HEARTBEAT_ENV = "CURVEWATCH_OPTUNA_HEARTBEAT"
#: A worker gives up after this many failed trials in a row (a setting that cannot train).
MAX_FAILURES_IN_A_ROW = 3
#: Trial user attributes: the run of a trial, and why the trial ended.
RUN_ATTR, END_ATTR = "curvewatch_run", "curvewatch_end"
#: Set on a trial a worker was given beyond --trials (another worker took the last one in
#: the same instant): it is told FAIL without being run, so it counts nowhere.
SURPLUS_ATTR = "curvewatch_surplus"
#: Trial states that count towards --trials.
TAKEN = ("COMPLETE", "PRUNED", "RUNNING")


@dataclass(frozen=True)
class Axis:
    """One searched option and its Optuna distribution: a --grid axis is categorical (its
    values as the CLI's text), a --range a float or int range, log-scaled with :log."""

    name: str
    distribution: Any


@dataclass(frozen=True)
class Outcome:
    """How a finished trial run ends its Optuna trial: `complete` with `value`, `pruned` or
    `failed`; `why` is the sentence kept on the trial and printed."""

    kind: str
    value: float | None
    why: str


def check_storage(spec: str) -> str:
    """`spec` if Optuna can be pointed at it: a journal file path (its folder must exist) or
    an sqlite/postgresql/mysql URL; ConfigError naming it otherwise."""
    if "://" in spec:
        scheme = spec.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in RDB_SCHEMES:
            raise ConfigError(f"--optuna must be a journal file path or a database URL "
                              f"({', '.join(s + '://' for s in RDB_SCHEMES)}), got "
                              f"{shown(public_url(spec))}")
        return spec
    path = Path(spec)
    if not spec.strip() or path.is_dir():
        raise ConfigError(f"--optuna {shown(spec)} is a folder or empty; give the path of a "
                          "journal file (created if missing), e.g. /shared/study.log")
    if not path.parent.is_dir():
        raise ConfigError(f"--optuna {shown(spec)}: the folder {shown(str(path.parent))} does "
                          "not exist")
    return spec


def public_url(spec: str) -> str:
    """The storage as it may be printed and recorded: a URL's password masked."""
    if "://" not in spec:
        return spec
    try:
        from sqlalchemy.engine import make_url
        return make_url(spec).render_as_string(hide_password=True)
    except Exception:
        return spec.split("://", 1)[0] + "://***"


def _rdb_storage(url: str, beat: int, tries: int = 3) -> Any:
    """RDBStorage, retried when another worker creates the schema in the same instant: two
    workers starting on a fresh PostgreSQL database race in CREATE TABLE and the loser gets an
    IntegrityError (duplicate pg_type entry) although the schema is then complete."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=beat,
                                              grace_period=beat * GRACE_BEATS)
        except (IntegrityError, ProgrammingError):  # duplicate type or table
            if attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))  # let the winner's transaction commit
    raise AssertionError("unreachable")


def open_storage(spec: str) -> Any:
    """Optuna's storage for `spec`: JournalStorage on a file (its symlink lock works on NFS),
    RDBStorage with heartbeats for a URL. ConfigError when it cannot be opened."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    check_storage(spec)
    beat = _heartbeat_seconds()
    try:
        if "://" not in spec:
            return JournalStorage(JournalFileBackend(spec))
        return _rdb_storage(spec, beat)
    except Exception as e:
        raise ConfigError(f"--optuna {shown(public_url(spec))}: cannot open the storage: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                          ) from None


def _heartbeat_seconds() -> int:
    raw = os.environ.get(HEARTBEAT_ENV) or str(HEARTBEAT_SECONDS)
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{HEARTBEAT_ENV} must be a whole number of seconds >= 1, got "
                          f"{shown(raw)}")
    return int(raw)


def make_pruner(name: str, epochs: int) -> Any:
    """Optuna's pruner for --pruner: median (MedianPruner's defaults: 5 startup trials),
    hyperband (rungs from epoch 1 to `epochs`) or none."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got {shown(name)}"
                      f"{did_you_mean(name, PRUNERS)}")


def axes_from_args(grid_specs: list[str], range_specs: list[str],
                   base: TrainConfig) -> tuple[Axis, ...]:
    """The search space: every --grid value and each --range's ends checked by
    `config.validate` with the CLI's messages, so no trial can be refused later."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    axes: list[Axis] = []
    for name, values in map(parse_grid, grid_specs):
        _check_values(base, name, values)
        axes.append(Axis(name, CategoricalDistribution(values)))
    for r in map(parse_range, range_specs):
        if r.integer:
            low, high = math.ceil(r.low), math.floor(r.high)
            if low >= high:
                raise ConfigError(f"--range {r.name}: no two whole numbers between "
                                  f"{r.low:g} and {r.high:g}")
            dist: Any = IntDistribution(low, high, log=r.log)
        else:
            low, high = r.low, r.high
            dist = FloatDistribution(low, high, log=r.log)
        _check_values(base, r.name, (str(low), str(high)))
        axes.append(Axis(r.name, dist))
    refuse_repeats([a.name for a in axes], "--grid/--range")
    if not axes:
        raise ConfigError("--optuna needs at least one --grid NAME=V1,V2 or --range "
                          "NAME=LOW:HIGH[:log] to search")
    return tuple(axes)


def _check_values(base: TrainConfig, name: str, values: tuple[str, ...]) -> None:
    for v in values:
        try:
            validate({**base.to_dict(), name: v})
        except ConfigError as e:
            raise ConfigError(f"{name}={v}: {e}") from None


def suggest(trial: Any, axes: tuple[Axis, ...]) -> dict[str, str]:
    """The trial's setting, option name -> value text as the CLI takes it."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out = {}
    for a in axes:
        d = a.distribution
        if isinstance(d, CategoricalDistribution):
            out[a.name] = str(trial.suggest_categorical(a.name, d.choices))
        elif isinstance(d, FloatDistribution):
            out[a.name] = repr(trial.suggest_float(a.name, d.low, d.high, log=d.log))
        else:
            out[a.name] = str(trial.suggest_int(a.name, d.low, d.high, log=d.log))
    return out


def trial_outcome(state: str, status: dict[str, Any], pruned_why: str | None) -> Outcome:
    """What a trial's run says about the trial (pure). Curvewatch's judgement first: a run
    that completed or was stopped for overfitting or a plateau completes the trial with its
    best validation loss (the best weights are kept); a divergence prunes it; a stop asked by
    the pruner prunes it; any other stop or failure fails it."""
    best = status.get("best_val_loss")
    reason = status.get("stop_reason") or ""
    if state == "failed" and reason == "divergence":
        return Outcome("pruned", None, f"diverged: {status.get('error') or reason}".strip())
    if state == "stopped" and pruned_why is not None:
        return Outcome("pruned", None, pruned_why)
    if state in ("completed", "early_stopped"):
        if not isinstance(best, float) or not math.isfinite(best):
            return Outcome("failed", None, "no finite validation loss was logged")
        why = "trained every epoch" if state == "completed" else \
            f"early-stopped: {reason.rstrip('.')}"
        return Outcome("complete", best, f"{why}; best val_loss {best:.4g} at epoch "
                                         f"{status.get('best_epoch')}")
    return Outcome("failed", None, f"{state}: {reason or status.get('error') or 'no reason'}")


class TrialFailed(Exception):
    """A trial's run failed or was stopped by hand: the trial is recorded FAIL."""


def fail_crashed_trials(study: Any, runs_dir: Path) -> list[int]:
    """Mark FAIL the RUNNING trials whose Curvewatch run (found in `runs_dir`) has crashed:
    its process is gone, or its heartbeat is stale on another host. This is how a worker
    killed mid-trial is noticed on a JournalStorage, which has no heartbeat of its own in
    Optuna 5.1 (an RDBStorage also fails them by Optuna's heartbeat). Returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():  # Optuna calls it experimental; optimize() calls it too
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # RDB: trials silent past the grace period
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        rid = t.user_attrs.get(RUN_ATTR)
        if not isinstance(rid, str) or not (runs_dir / rid).is_dir():
            continue  # started elsewhere, or not yet as far as its run
        if read_run(runs_dir / rid).state == "crashed":
            try:
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker failed it at the same moment
            failed.append(t.number)
    return failed


def trials_taken(study: Any, before: int | None = None) -> int:
    """Trials that count towards --trials: finished (complete, pruned) or running, not
    surplus; with `before`, only those numbered lower."""
    return taken_count([(t.number, t.state.name, SURPLUS_ATTR in t.user_attrs)
                        for t in study.get_trials(deepcopy=False)], before)


def taken_count(trials: list[tuple[int, str, bool]], before: int | None = None) -> int:
    """How many of (number, state name, surplus) count towards --trials (pure). Storages
    number trials atomically in the order they were asked, so trial k is beyond --trials N
    exactly when N counting trials are numbered below k: of two workers that both saw N-1
    and asked at once, the later number gives way."""
    return sum(state in TAKEN and not surplus and (before is None or number < before)
               for number, state, surplus in trials)


class Worker:
    """One worker of a study: each trial one run, in the study's one Curvewatch group (joined
    with this worker's first trial, so a worker that finds nothing left to do leaves no
    folder)."""

    def __init__(self, study: Any, pruner: str, axes: tuple[Axis, ...], base: TrainConfig,
                 runs_dir: Path, *, name: str, tags: list[str], sweep: dict[str, Any],
                 argv: list[str], echo: Callable[[str], None], group_id: str):
        self.study, self.pruner, self.axes, self.base = study, pruner, axes, base
        self.runs_dir, self.name, self.tags, self.sweep = runs_dir, name, tags, sweep
        self.argv, self.echo, self.group_id = argv, echo, group_id
        self.trials, self.surplus = 0, False
        self.group: Any = None
        self.outcomes: list[Outcome] = []
        self.stop_reason: str | None = None

    def run(self, trials: int) -> str:
        """Take trials until the study has `trials` of them; returns the group's final state,
        "running" while other workers go on with it, "" when this worker trained none."""
        failures, self.trials = 0, trials
        # Optuna logs a FAIL with its traceback: a surplus trial is no failure to report
        logging.getLogger("optuna.study._optimize").addFilter(lambda _: not self.surplus)
        while self.stop_reason is None and failures < MAX_FAILURES_IN_A_ROW:
            for n in fail_crashed_trials(self.study, self.runs_dir):
                self.echo(f"trial {n}: its run crashed (worker gone); marked failed")
                self._group().update_member(n, outcome="failed", ended_at=time.time(),
                                            error="its run crashed (worker gone)")
            if trials_taken(self.study) >= trials:
                break
            if self.group is not None and self.group.stop_requested():
                self.stop_reason = "stop requested (STOP file)"
                break
            ran, self.surplus = len(self.outcomes), False
            self.study.optimize(self.objective, n_trials=1, catch=(TrialFailed,))
            if len(self.outcomes) > ran:  # a surplus trial ran nothing and counts nowhere
                failures = failures + 1 if self.outcomes[-1].kind == "failed" else 0
        return self._finish()

    def objective(self, trial: Any) -> float:
        from .launch import lock_run
        from .runner import describe, prepare, run_epochs

        if trials_taken(self.study, before=trial.number) >= self.trials:
            why = (f"not run: lower-numbered trials already make the study's --trials "
                   f"{self.trials} (another worker asked in the same instant)")
            trial.set_user_attr(SURPLUS_ATTR, why)
            self.surplus = True
            self.echo(f"trial {trial.number} {why}")
            raise TrialFailed(why)
        params = suggest(trial, self.axes)
        cfg = validate({**self.base.to_dict(), **params})
        trainer = prepare(cfg)
        data, model = describe(trainer)
        run = Run.create(self.runs_dir, name=f"{self.name} trial {trial.number}",
                         config=cfg.to_dict(), data=data, model=model, epochs=cfg.epochs,
                         tags=[*self.tags, f"optuna:{self.study.study_name}",
                               f"trial:{trial.number}"], group=self._group().id)
        trial.set_user_attr(RUN_ATTR, run.id)
        self.group.add_member(trial.number, f"{self.name} trial {trial.number}", params,
                              run.id, self.base.seed)
        self.echo(f"trial {trial.number} started: {' '.join(f'{k}={v}' for k, v in params.items())}"
                  f" (run {run.id})")
        pruned: list[str] = []
        lock = lock_run(run.path)
        try:
            state = run_epochs(trainer, run, quiet=True,
                               on_epoch=lambda record: self._judge(trial, record, pruned))
        finally:
            lock.close()
        return self._end_trial(trial, state, run, pruned[0] if pruned else None)

    def _judge(self, trial: Any, record: dict[str, Any], pruned: list[str]) -> str | None:
        """Per epoch: report the val loss to Optuna; the pruner's word to stop, if any."""
        self.group.beat()
        epoch, vl = record["epoch"], record["val_loss"]
        if math.isfinite(vl):
            trial.report(vl, epoch)
        if not trial.should_prune():
            return None
        pruned.append(f"pruned by Optuna's {self.pruner} pruner at epoch {epoch}: val_loss "
                      f"{vl:.4g} is worse than the study's other trials at that epoch")
        return pruned[0]

    def _end_trial(self, trial: Any, state: str, run: Run, pruned_why: str | None) -> float:
        import optuna

        info = read_run(run.path)
        out = trial_outcome(state, dict(info.status), pruned_why)
        self.outcomes.append(out)
        trial.set_user_attr(END_ATTR, out.why)
        self.group.update_member(trial.number, state=info.state, ended_at=time.time(),
                                 best_val_loss=info.best_val_loss, best_epoch=info.best_epoch,
                                 outcome=out.kind,
                                 error=out.why if out.kind == "failed" else None)
        self.echo(f"trial {trial.number} {out.kind}: {out.why}")
        if state == "stopped" and pruned_why is None:
            self.stop_reason = info.status.get("stop_reason") or "stopped"
        if out.kind == "complete":
            assert out.value is not None
            return out.value
        if out.kind == "pruned":
            raise optuna.TrialPruned(out.why)
        raise TrialFailed(out.why)

    def _group(self) -> Any:
        if self.group is None:
            from .study_group import StudyGroup
            self.group = StudyGroup.join(
                self.runs_dir, self.group_id, name=self.name, base_config=self.base.to_dict(),
                validation=self.base.validation, sweep=self.sweep, argv=self.argv)
            self.echo(f"group {self.group.id}: the trials of study {self.study.study_name} "
                      f"in {self.group.path}")
        return self.group

    def _finish(self) -> str:
        """Leave the study's group; the last worker to leave ends it. Returns its final
        state, "running" while other workers go on, "" when this worker trained nothing."""
        from .groups import group_aggregate, summary_lines

        if self.group is None:
            return ""
        state = self.group.leave(self.stop_reason, group_aggregate)
        if state is None:
            self.echo(f"group {self.group.id}: other workers are still on the study; the "
                      "last one to end finishes the group")
            return "running"
        for line in summary_lines(self.group.record):
            self.echo(line)
        return state


def study_lines(study: Any) -> list[str]:
    """The study's outcome across every worker: counts by state and the best trial."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    surplus = sum(SURPLUS_ATTR in t.user_attrs for t in trials)
    counts = {s.name.lower(): sum(t.state == s and SURPLUS_ATTR not in t.user_attrs
                                  for t in trials) for s in TrialState}
    counts["surplus (not run)"] = surplus
    lines = [f"study {study.study_name}: {len(trials) - surplus} trials, " + ", ".join(
        f"{n} {k}" for k, n in counts.items() if n)]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if done:
        best = min(done, key=lambda t: t.value)
        lines.append(f"  best: trial {best.number} val_loss {best.value:.4f} (run "
                     f"{best.user_attrs.get(RUN_ATTR)}) "
                     + " ".join(f"{k}={v}" for k, v in best.params.items()))
    return lines


def run_study(storage: str, study_name: str, trials: int, pruner: str,
              grid_specs: list[str], range_specs: list[str], base: TrainConfig,
              runs_dir: Path, *, name: str | None, tags: list[str], argv: list[str],
              echo: Callable[[str], None] = print) -> str:
    """Check everything, then work on the study until it has `trials` trials; returns
    "failed" when every trial this worker ran failed (a pruned trial did not), else "ok".
    ConfigError for bad input."""
    import optuna

    check_storage(storage)
    _check_study_name(study_name)
    name = name if name is not None else study_name
    try:
        check_name(name)
        tags = check_tags(tags)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if base.fold is not None or base.validation.split(":")[0] not in ("holdout",):
        raise ConfigError(f"--optuna trains one hold-out run per trial; got --validation "
                          f"{shown(base.validation)}")
    axes = axes_from_args(grid_specs, range_specs, base)
    from .runner import prepare
    prepare(base)  # data and model errors are usage errors, before any trial
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=open_storage(storage),
                                direction="minimize", load_if_exists=True,
                                pruner=make_pruner(pruner, base.epochs))
    sweep = {"mode": "optuna", "storage": public_url(storage), "study": study_name,
             "trials": trials, "pruner": pruner, "grid": grid_specs, "ranges": range_specs}
    from .study_group import study_group_id
    worker = Worker(study, pruner, axes, base, runs_dir, name=name, tags=tags, sweep=sweep,
                    argv=argv, echo=echo, group_id=study_group_id(storage, study_name))
    state = worker.run(trials)
    if not state:
        echo(f"study {study_name} already has {trials_taken(study)} of {trials} trials "
             "finished or running: nothing to do")
    for line in study_lines(study):
        echo(line)
    failed = worker.outcomes and all(o.kind == "failed" for o in worker.outcomes)
    return "failed" if failed else "ok"


def _check_study_name(name: str) -> None:
    # the name goes into a run tag (optuna:NAME): no commas, at most 64 characters in all
    if not name.strip() or "," in name or len(name) > 57:
        raise ConfigError(f"--study must be a name of 1 to 57 characters without commas, got "
                          f"{shown(name)}")
