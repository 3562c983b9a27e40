"""`python -m trainer run | sweep | list | stop | resume | demo | import`: the command line of
Curvewatch's trainer.

Exit codes: EXIT_CODES below, the one table that the commands return from and that `--help`
prints.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from curvewatch.commands import SHELL_TRAINER, Invocation
from curvewatch.tracking import (
    Run,
    RunNotFound,
    default_runs_dir,
    is_group_dir,
    list_groups,
    list_runs,
    read_group,
    read_run,
    run_path,
)
from curvewatch.tracking.annotate import check_notes
from curvewatch.tracking.paths import (
    RESUMING,
    RESUMING_FRESH_SECONDS,
    RUNS_ENV,
    STOP,
    check_name,
    is_run_id,
)
from curvewatch.tracking.procinfo import lock_held
from curvewatch.tracking.remote_read import local_runs_dir, push_stop

from .config import DEFAULTS, FIELDS, TrainConfig, load_config_file, validate
from .errors import ConfigError, did_you_mean

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE
EXIT_CODES = {
    EXIT_OK: "success: the run ended completed, early-stopped or stopped (a group: not every "
             "member failed); a detached start, stop, list, demo or import did what was asked",
    EXIT_FAILED: "the run failed (a group: every member failed); stop --wait: the run was "
                 "still running when the wait ran out",
    EXIT_USAGE: "bad input: nothing was started and no run folder was left behind",
    EXIT_NOT_RUNNING: "stop: the run or group is not running (it has ended or never "
                      "started); nothing was changed",
    EXIT_BROKEN_PIPE: "the reader of the output went away (e.g. list | head -1)",
}
"""Every exit status of the trainer's command line, with its meaning (printed by --help)."""


class UsageError(Exception):
    """Bad input on the command line: reported with exit code 2."""


def exit_codes_text(*codes: int) -> str:
    """The exit-code table (the rows for `codes`, default all of EXIT_CODES) as help text."""
    width = max(len(str(c)) for c in EXIT_CODES)
    rows = [f"  {c:<{width}}  {EXIT_CODES[c]}" for c in (codes or EXIT_CODES)]
    return "exit codes:\n" + "\n".join(rows)


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default once: the one its help text states, or else
    `(default: X)` for a default worth stating (not None, False, empty or suppressed). Lines
    of a description or epilog are kept; an indented line (a table row) wraps under its
    text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default:" in text or "%(default)" in text or default is argparse.SUPPRESS or \
                default is None or default is False or default in ([], (), ""):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            row = re.match(r"(\s+\S+\s+)(.*)", line)
            if row:
                lead = indent + row.group(1)
                lines.append(textwrap.fill(row.group(2), width, initial_indent=lead,
                                           subsequent_indent=" " * len(lead)))
            else:
                lines.append(super()._fill_text(line, width, indent) if line.strip() else "")
        return "\n".join(lines)


class Parser(argparse.ArgumentParser):
    """argparse with HelpFormatter for the parser and its subcommands, and a misspelt choice
    (a command) answered with the nearest one and the accepted ones, internal commands left
    out."""

    def __init__(self, *args: Any, formatter_class: Any = HelpFormatter, **kwargs: Any):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is None or value in action.choices:
            return
        accepted = [str(c) for c in action.choices if not str(c).startswith("_")]
        raise argparse.ArgumentError(action, f"invalid choice: {value!r}"
                                             f"{did_you_mean(value, accepted)} (choose from "
                                             f"{', '.join(accepted)})")


def _default_text(name: str) -> str | None:
    """The default of a training option as help text; None where there is none to state."""
    value = getattr(DEFAULTS, name)
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    return None if value in (None, "") else str(value)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training options (also accepted as keys of --config)")
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        if name == "thresholds":  # the help names docs/diagnosis.md for names and defaults
            g.add_argument("--threshold", dest="thresholds", action="append",
                           default=argparse.SUPPRESS, metavar="NAME=VALUE",
                           help=f.metadata["help"])
            continue
        default = _default_text(name)
        g.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=name.upper(),
                       help=f.metadata["help"] + (f" (default: {default})" if default else ""))


RUNS_HELP = "runs directory (default: $CURVEWATCH_RUNS or ./runs)"


def _add_launch_options(p: argparse.ArgumentParser, *, config: str, name: str, tag: str,
                        detach: str) -> None:
    """The options shared by the commands that start training (`run`, `sweep`), each with
    its own help text."""
    p.add_argument("--config", metavar="FILE",
                   help=f"TOML, JSON or YAML file of {config}; flags override it")
    p.add_argument("--runs-dir", metavar="DIR", help=RUNS_HELP)
    p.add_argument("--name", help=name)
    p.add_argument("--tag", dest="tags", action="append", default=[], metavar="TAG", help=tag)
    p.add_argument("--detach", action="store_true", help=detach)


#: A command another front end adds to this parser (`curvewatch ui`): a function that adds its
#: subparser to the subparsers action, and the function that runs it.
ExtraCommand = tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]


def build_parser(prog: str = SHELL_TRAINER,
                 extra: Sequence[Callable[[Any], None]] = ()) -> argparse.ArgumentParser:
    """The parser of every command; `prog` is how the user called it (kept in the parsed
    arguments as `prog`: the commands print hints in the same words, see invocation)."""
    parser = Parser(prog=prog,
                    description="Train PyTorch models into Curvewatch run folders, and list, "
                                f"stop and resume runs. `{prog} COMMAND --help` shows a "
                                "command's options.",
                    epilog=exit_codes_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")

    run = sub.add_parser("run", help="start a training run",
                         epilog=exit_codes_text(EXIT_OK, EXIT_FAILED, EXIT_USAGE))
    _add_launch_options(run, config="options", name="display name (default: DATASET-MODEL)",
                        tag="label for filtering runs (repeatable)",
                        detach="run in the background; print the run id and folder at once")
    run.add_argument("--group", help=argparse.SUPPRESS)  # set by a group for its members
    run.add_argument("--notes", default="", metavar="TEXT",
                     help="free text kept in run.json (shown and editable on the Run page)")
    _add_group_options(run)
    _add_train_options(run)

    sw = sub.add_parser("sweep", help="train a grid or a random search of settings as a group",
                        epilog=exit_codes_text(EXIT_OK, EXIT_FAILED, EXIT_USAGE),
                        description="Train one run per setting (times folds and repeats) and "
                                    "rank the settings by validation loss. Combine with "
                                    "--validation kfold:K to score each setting by "
                                    "cross-validation.")
    _add_launch_options(sw, config="base options",
                        name="group name (default: DATASET-MODEL-sweep)",
                        tag="label for every member run (repeatable)",
                        detach="run the sweep in the background; print the group id at once")
    sw.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                    help="a grid axis, repeatable: every combination is trained (values with "
                         "commas: separate them with ';', e.g. hidden=128,64;256)")
    sw.add_argument("--random", type=_positive_int("--random"), metavar="N",
                    help="draw N random settings from the --range axes (and --grid axes as "
                         "choices) instead of the full grid")
    sw.add_argument("--range", dest="ranges", action="append", default=[],
                    metavar="NAME=LOW:HIGH[:log]",
                    help="a random-search axis, repeatable: uniform, or log-uniform with :log")
    _add_optuna_options(sw)
    _add_group_options(sw)
    _add_train_options(sw)

    ls = sub.add_parser("list", help="list runs with their state and best validation loss")
    ls.add_argument("--runs-dir", metavar="DIR", help=RUNS_HELP)

    stop = sub.add_parser("stop", help="ask a running run to stop after its current epoch",
                          epilog=exit_codes_text(EXIT_OK, EXIT_FAILED, EXIT_USAGE,
                                                 EXIT_NOT_RUNNING))
    stop.add_argument("run", help="run or group id (folder name) or unique name; stopping a "
                                  "group stops its members")
    stop.add_argument("--runs-dir", metavar="DIR", help=RUNS_HELP)
    stop.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                      help="wait up to this long for the run to stop (default: 0, don't wait)")

    res = sub.add_parser("resume", help="continue a stopped or crashed run from last.pt, or a "
                                        "stopped or crashed group",
                         epilog=exit_codes_text(EXIT_OK, EXIT_FAILED, EXIT_USAGE))
    res.add_argument("run", help="run or group id (folder name) or unique name; a group "
                                 "resumes its stopped and crashed members and starts the ones "
                                 "that never started (with --epochs, its completed members "
                                 "train on too)")
    res.add_argument("--runs-dir", metavar="DIR", help=RUNS_HELP)
    res.add_argument("--detach", action="store_true", help="resume in the background")
    res.add_argument("--epochs", help="train up to this many epochs in all; a group's "
                                      "members too, completed ones included (default: as "
                                      "planned)")

    demo = sub.add_parser("demo", help="start the three demo runs in the background")
    demo.add_argument("--runs-dir", metavar="DIR", help=RUNS_HELP)
    demo.add_argument("--if-empty", action="store_true",
                      help="only when the runs directory holds no runs yet")
    demo.add_argument("--seconds", type=float, default=None, metavar="SECONDS",
                      help="pace each demo run to last about this long, so its curves can be "
                           "watched filling (default: 60; 0: train at full speed)")

    imp = sub.add_parser("import", help="import TensorBoard or CSV logs as runs (curves, "
                                        "flags and comparisons for runs logged elsewhere)")
    imp.add_argument("logdir", metavar="PATH",
                     help="TensorBoard's --logdir or one run's folder of events.out.tfevents.* "
                          "files; a folder of Lightning CSVLogger metrics.csv files; or one "
                          "CSV log (Lightning's or Keras' CSVLogger, or any CSV with --map)")
    imp.add_argument("--runs-dir", metavar="DIR", help=RUNS_HELP)
    imp.add_argument("--map", dest="tag_map", action="append", default=[],
                     metavar="TAG=COLUMN", help="fill COLUMN (train_loss, val_loss, train_acc, "
                     "val_acc, lr, grad_norm, epoch or a name of your own) from TAG (a CSV "
                     "log: its column), repeatable; TAG= leaves the tag out (default: tags "
                     "are mapped by their words: loss/train, val_loss, "
                     "validation/epoch_accuracy ...)")
    imp.add_argument("--tag", dest="tags", action="append", default=[], metavar="TAG",
                     help="a tag for the imported runs, repeatable (they are tagged "
                          "tensorboard or csv too)")
    imp.add_argument("--update", action="store_true",
                     help="bring runs imported before up to date with a log that has grown "
                          "(default: they are skipped)")
    imp.add_argument("--chance-loss", type=float, default=None, metavar="FLOAT",
                     help="the loss of a model that has learned nothing (ln K for K classes), "
                          "for the diagnosis (default: not known)")
    imp.add_argument("--dry-run", action="store_true",
                     help="show what would be imported, and from which tags, writing nothing")

    # Internal entry points of detached runs and groups: without help= argparse lists them
    # nowhere (metavar COMMAND keeps them out of the usage line), yet they parse as usual.
    worker = sub.add_parser("_worker")
    worker.add_argument("run_dir")
    worker.add_argument("--resume", action="store_true")
    gworker = sub.add_parser("_group")
    gworker.add_argument("group_dir")
    for add in extra:
        add(sub)
    parser.set_defaults(prog=prog)
    return parser


def invocation(args: argparse.Namespace) -> Invocation:
    """How the user called this command: its prog and --runs-dir, for the commands it prints."""
    return Invocation(args.prog, getattr(args, "runs_dir", None))


def _positive_int(flag: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer >= 1, got {text!r}")
        return value
    return parse


def _add_optuna_options(p: argparse.ArgumentParser) -> None:
    from .optuna_sweep import PRUNERS

    g = p.add_argument_group("sweeps across machines on Optuna (README: Scaling out)")
    g.add_argument("--optuna", metavar="STORAGE",
                   help="take trials from a shared Optuna study: a journal file on a shared "
                        "filesystem, or a sqlite:///, postgresql:// or mysql:// URL; start the "
                        "same command on several machines to share the work. --grid axes "
                        "become categorical, --range axes float or int ranges")
    g.add_argument("--study", metavar="NAME", help="the study's name (with --optuna)")
    g.add_argument("--trials", type=_positive_int("--trials"), metavar="N",
                   help="finish when the study has N complete or pruned trials (with --optuna)")
    g.add_argument("--pruner", choices=PRUNERS, default=None,
                   help="Optuna's pruner from each epoch's val loss (default: median)")


def _add_group_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run groups (see also --validation)")
    g.add_argument("--repeat", type=_positive_int("--repeat"), default=1, metavar="N",
                   help="train each configuration with N seeds (seed, seed+1, ...) as a group")
    g.add_argument("--parallel", type=_positive_int("--parallel"), default=1, metavar="K",
                   help="members of a group training at once on this machine; each gets "
                        "cores/K torch threads unless --threads is given")


def _runs_dir(args: argparse.Namespace) -> Path:
    """--runs-dir, else $CURVEWATCH_RUNS, else ./runs; a URL is this machine's spool (or, for
    `list` and `stop`, its refreshed mirror) of that bucket (tracking.remote_read)."""
    text = getattr(args, "runs_dir", None) or os.environ.get(RUNS_ENV) or str(default_runs_dir())
    try:
        return local_runs_dir(text, reading=args.command in ("list", "stop"))
    except ValueError as e:
        raise ConfigError(f"--runs-dir: {e}") from None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the --config file, then flags: validated as one TrainConfig."""
    raw: dict[str, Any] = load_config_file(args.config) if args.config else {}
    raw.update({name: getattr(args, name) for name in FIELDS if hasattr(args, name)})
    return validate(raw)


def _pulled(args: argparse.Namespace) -> Path:
    """The runs directory of `resume`: for a bucket, this machine's spool, into which a run
    another machine wrote is first brought down with its checkpoints (tracking.remote_read)."""
    from curvewatch.tracking.object_store import is_url, parse_url
    from curvewatch.tracking.remote_read import NotResumable, pull_run

    runs_dir = _runs_dir(args)
    text = getattr(args, "runs_dir", None) or os.environ.get(RUNS_ENV)
    if is_url(text):
        try:
            pull_run(parse_url(str(text)), args.run)
        except NotResumable as e:
            raise UsageError(str(e)) from None
    return runs_dir


def resolve_run(runs_dir: Path, ref: str) -> Path:
    """A run (or group) folder from its id, or from a name that exactly one run has."""
    try:
        return run_path(runs_dir, ref)
    except RunNotFound as by_id:
        matches = [r for r in list_runs(runs_dir) if r.name == ref] + \
            [g for g in list_groups(runs_dir) if g.name == ref]
        if len(matches) == 1:
            return run_path(runs_dir, matches[0].id)
        if len(matches) > 1:
            raise UsageError(f"{len(matches)} runs or groups are named {ref!r}; use one of "
                             "their ids: "
                             f"{', '.join(m.id for m in matches)}") from None
        raise UsageError(str(by_id)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from .distributed import launched_by_torchrun
    from .runner import within_job
    from .validation import parse_validation

    cfg = config_from_args(args)
    folds = parse_validation(cfg.validation).is_group and cfg.fold is None
    if launched_by_torchrun() and (folds or args.repeat > 1 or args.detach):
        raise UsageError("under torchrun, run trains one run in the foreground: --validation "
                         f"{cfg.validation}, --repeat {args.repeat} and --detach do not apply")
    if folds or args.repeat > 1:
        if args.group is not None:
            raise UsageError("--group is set by a group for its members; a member trains "
                             "one fold (--fold) and one seed")
        if args.notes:
            raise UsageError("--notes applies to a single run; a group's member runs take "
                             "notes on their Run pages")
        kind = cfg.validation.replace(":", "") if folds else f"seeds{args.repeat}"
        return _start_group(args, cfg, default_name=f"{cfg.dataset}-{cfg.model}-{kind}")
    if args.parallel > 1:
        raise UsageError(f"--parallel {args.parallel} needs a group: --validation kfold:K or "
                         f"bootstrap:B, --repeat N, or {args.prog} sweep")
    if args.group is not None and not is_run_id(args.group):
        raise UsageError(f"--group must be a group id, got {args.group!r}")
    name = args.name if args.name is not None else f"{cfg.dataset}-{cfg.model}"
    try:
        check_name(name)
        check_notes(args.notes)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if launched_by_torchrun():
        return within_job(lambda job: _train_one(args, cfg, name, job))
    return _train_one(args, cfg, name, None)


def _train_one(args: argparse.Namespace, cfg: TrainConfig, name: str, job: Any) -> int:
    """Train one new run (under torchrun as its rank 0: one run for the whole job, resumed
    from last.pt when torchrun restarts the job)."""
    from .launch import lock_run, spawn_worker
    from .runner import describe, plan_of, prepare, run_epochs

    if job is not None and job.restart and (earlier := job.find_run(_runs_dir(args))):
        lock = lock_run(earlier, wait=5.0)  # the attempt before has ended: its lock is free
        try:
            return _resume_here(earlier, None, job=job)
        finally:
            lock.close()
    trainer = prepare(cfg, job)
    data, model = describe(trainer)
    run = Run.create(_runs_dir(args), name=name, config=cfg.to_dict(), data=data, model=model,
                     tags=args.tags, notes=args.notes, epochs=cfg.epochs, group=args.group,
                     pid=0 if args.detach else None, heartbeat_seconds=0 if args.detach else 5.0)
    if args.detach:
        run.close()
        pid = spawn_worker(run.path, resume=False)
        print(f"started {run.id} (pid {pid}) in {run.path}")
        print(f"  follow: tail -f {run.path / 'trainer.log'}")
        print(f"  stop:   {invocation(args).command('stop', run.id)}")
        return EXIT_OK
    lock = lock_run(run.path)
    print(f"run {run.id} in {run.path}", flush=True)
    if job is not None:
        job.send_plan(plan_of(cfg))
    try:
        state = run_epochs(trainer, run, progress=sys.stderr.isatty(), job=job)
    finally:
        lock.close()
    return EXIT_FAILED if state == "failed" else EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import settings_from_args

    cfg = config_from_args(args)
    if args.optuna is not None or args.study or args.trials or args.pruner:
        return _optuna_sweep(args, cfg)
    settings = settings_from_args(args.grid, args.ranges, args.random, cfg.seed)
    spec = {"mode": "random" if args.random else "grid", "grid": args.grid,
            "ranges": args.ranges, "random": args.random}
    return _start_group(args, cfg, default_name=f"{cfg.dataset}-{cfg.model}-sweep",
                        settings=settings, sweep=spec)


def _optuna_sweep(args: argparse.Namespace, cfg: TrainConfig) -> int:
    from .optuna_sweep import run_study

    missing = [f for f, v in (("--optuna STORAGE", args.optuna), ("--study NAME", args.study),
                              ("--trials N", args.trials)) if not v]
    if missing:
        raise UsageError(f"a sweep on Optuna needs --optuna, --study and --trials; missing "
                         f"{', '.join(missing)}")
    for flag, bad in (("--random", args.random), ("--detach", args.detach),
                      ("--repeat", args.repeat > 1), ("--parallel", args.parallel > 1)):
        if bad:
            raise UsageError(f"{flag} does not apply to --optuna: --trials N sets how many "
                             "trials, and each worker trains one at a time (start more "
                             "workers, in the background with nohup ... &, to run more at once)")
    state = run_study(args.optuna, args.study, args.trials, args.pruner or "median",
                      args.grid, args.ranges, cfg, _runs_dir(args), name=args.name,
                      tags=args.tags, argv=sys.argv, echo=lambda line: print(line, flush=True))
    return EXIT_FAILED if state == "failed" else EXIT_OK


def _start_group(args: argparse.Namespace, cfg: TrainConfig, *, default_name: str,
                 settings: list[dict[str, str]] | None = None,
                 sweep: dict[str, Any] | None = None) -> int:
    """Plan and check every member, create the group, then run it here or detached."""
    from .groups import check_plan, create_group, plan_group, run_group
    from .launch import spawn_group

    name = args.name if args.name is not None else default_name
    plan = plan_group(cfg, name=name, repeat=args.repeat, parallel=args.parallel,
                      settings=settings or (), sweep=sweep, tags=args.tags)
    check_plan(plan)
    writer = create_group(plan, _runs_dir(args), argv=sys.argv, detached=args.detach)
    what = f"group of {len(plan.members)} runs ({plan.method}, {plan.parallel} at a time" + \
        (f", torch threads {plan.threads} each)" if plan.threads else ")")
    if args.detach:
        pid = spawn_group(writer.path)
        print(f"started {writer.id} (pid {pid}): {what} in {writer.path}")
        print(f"  follow: {invocation(args).command('list')}   "
              f"(log: {writer.path / 'group.log'})")
        print(f"  stop:   {invocation(args).command('stop', writer.id)}")
        return EXIT_OK
    print(f"group {writer.id}: {what} in {writer.path}", flush=True)
    state = run_group(writer, echo=lambda line: print(line, flush=True))
    return EXIT_FAILED if state == "failed" else EXIT_OK


def cmd_group_worker(args: argparse.Namespace) -> int:
    """The process behind a detached group: take over its record and run the members."""
    from curvewatch.tracking import GroupWriter

    from .groups import run_group
    from .launch import lock_run

    lock = lock_run(Path(args.group_dir))  # one runner per group, resumes included
    try:
        writer = GroupWriter.take_over(Path(args.group_dir))
        state = run_group(writer, echo=lambda line: print(line, flush=True))
        return EXIT_FAILED if state == "failed" else EXIT_OK
    finally:
        lock.close()


def cmd_worker(args: argparse.Namespace) -> int:
    """The process behind a detached run (or resume): attach to the folder and train."""
    from .launch import lock_run
    from .runner import prepare, run_epochs

    run_dir = Path(args.run_dir)
    lock = lock_run(run_dir, wait=1.0)
    try:
        if args.resume:
            # a STOP written after `resume --detach` cleared the old one is for this run
            pending = _resume_pending(run_dir)
            try:
                return _resume_here(run_dir, None, keep_stop=pending)
            finally:
                (run_dir / RESUMING).unlink(missing_ok=True)
        info = read_run(run_dir)
        cfg = validate(info.config)
        run = Run.reopen(run_dir, epochs=cfg.epochs, resumed=False)
        try:
            trainer = prepare(cfg)
        except Exception as e:
            run.finish("failed", error=f"{type(e).__name__}: {e}")
            return EXIT_FAILED
        state = run_epochs(trainer, run)
        return EXIT_FAILED if state == "failed" else EXIT_OK
    finally:
        lock.close()


def _resume_plan(run_dir: Path, epochs: Any) -> TrainConfig:
    """Validate a resume before anything changes: the run exists, is not live, has epochs left."""
    info = read_run(run_dir)
    if info.problem:
        raise UsageError(f"run {info.id} cannot be resumed: {info.problem}")
    if info.state == "running":
        raise UsageError(f"run {info.id} is still running (pid {info.status.get('pid')}); "
                         "stop it first")
    raw = dict(info.config)
    if epochs is not None:
        raw["epochs"] = epochs
    cfg = validate(raw)
    if info.epoch >= cfg.epochs and info.state != "crashed":
        # A crashed run with every epoch written died before recording its end: resuming it
        # finishes it (and rewrites any checkpoint the crash cut short).
        raise UsageError(f"run {info.id} has already trained {info.epoch} of {cfg.epochs} "
                         "epochs; pass --epochs N (N > "
                         f"{info.epoch}) to train longer")
    return cfg


def _resume_pending(run_dir: Path) -> bool:
    """A `resume --detach` started a worker for this run moments ago (its marker is fresh)."""
    try:
        age = time.time() - (run_dir / RESUMING).stat().st_mtime
    except OSError:
        return False
    return 0 <= age < RESUMING_FRESH_SECONDS


def _load_last(run_dir: Path, trainer: Any = None) -> dict[str, Any] | None:
    """last.pt (None when there is none), loaded into `trainer` when given; a checkpoint
    that cannot be loaded safely or does not fit the run is a one-line UsageError."""
    from curvewatch.tracking import LAST, load_checkpoint
    from curvewatch.tracking.checkpoints import CheckpointError

    if not os.path.lexists(run_dir / "checkpoints" / LAST):
        return None
    try:
        state = load_checkpoint(run_dir, LAST,
                                map_location=trainer.device if trainer is not None else "cpu")
        epoch = state["epoch"]
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise ValueError("its epoch is not a positive integer")
        if trainer is not None:
            trainer.load_state(state)
    except CheckpointError as e:
        raise UsageError(f"run {run_dir.name} cannot be resumed: {e}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise UsageError(f"run {run_dir.name} cannot be resumed: checkpoints/{LAST} does not "
                         f"fit this run ({type(e).__name__})") from None
    return state


def _resume_here(run_dir: Path, epochs: Any, *, keep_stop: bool = False, job: Any = None
                 ) -> int:
    from curvewatch.tracking import read_history

    from .runner import plan_of, prepare, run_epochs

    cfg = _resume_plan(run_dir, epochs)
    trainer = prepare(cfg, job)
    start, best = 1, None
    written = read_history(run_dir)
    last_written = int(written["epoch"].max()) if len(written) else 0
    state = _load_last(run_dir, trainer)
    if state is not None:
        start, best = int(state["epoch"]) + 1, state.get("best_val_loss")
    run = Run.reopen(run_dir, epochs=cfg.epochs, clear_stop=not keep_stop)
    (run_dir / RESUMING).unlink(missing_ok=True)  # running now: status.json says so
    if state is not None and last_written < state["epoch"]:
        # killed between writing last.pt and its metrics line: the checkpoint holds the record
        run.log_epoch(**state["record"])
    if epochs is not None:
        _update_config_epochs(run_dir, cfg.epochs)
    replay = max(0, last_written - start + 1)
    print(f"resuming {run.id} at epoch {start} of {cfg.epochs}"
          + (f" (replaying {replay} logged epochs since the last checkpoint)" if replay else ""),
          flush=True)
    if job is not None:  # the other processes of a torchrun job take last.pt from rank 0
        job.send_plan(plan_of(cfg, start, state))
    final = run_epochs(trainer, run, start_epoch=start, best_val_loss=best,
                       replay_until=last_written, progress=sys.stderr.isatty(), job=job)
    return EXIT_FAILED if final == "failed" else EXIT_OK


def _update_config_epochs(run_dir: Path, epochs: int) -> None:
    from curvewatch.tracking.jsonio import update_json

    def change(info: dict[str, Any]) -> dict[str, Any]:
        info["config"]["epochs"] = epochs
        return info
    # the same locked read-modify-write as a note edited in the dashboard meanwhile
    update_json(run_dir / "run.json", change)


def _resume_group(group_dir: Path, args: argparse.Namespace) -> int:
    """Resume a group: its stopped and crashed members from their last.pt, the members that
    never started afresh; then the aggregate over all members, as if never interrupted."""
    from .groups import plan_resume, reopen_group, run_group
    from .launch import RunLocked, lock_run, spawn_group

    epochs = None
    if args.epochs is not None:  # the rule and message of `run --epochs`
        epochs = validate({**read_group(group_dir, curves=False).base_config,
                           "epochs": args.epochs}).epochs
    if (read_group(group_dir, curves=False).sweep or {}).get("mode") == "optuna":
        raise UsageError(f"group {group_dir.name} holds an Optuna study's trials, and Optuna "
                         f"decides which trial runs next: start a worker again ({args.prog} "
                         "sweep --optuna ...) to go on with the study")
    try:
        lock = lock_run(group_dir)
    except RunLocked:
        raise UsageError(f"group {group_dir.name} is being resumed by another process") \
            from None
    try:
        group = read_group(group_dir, curves=False)
        plan = plan_resume(group, epochs, invocation(args))
        writer = reopen_group(group, plan, detached=args.detach, epochs=epochs)
        fresh = sum(rid is None for rid in plan.values())
        what = (f"{len(plan) - fresh} to resume, {fresh} to start"
                + (f", each up to {epochs} epochs" if epochs is not None else ""))
        if args.detach:
            lock.close()  # the runner takes the lock over
            pid = spawn_group(writer.path)
            print(f"resuming group {writer.id} (pid {pid}): {what}; log: "
                  f"{writer.path / 'group.log'}")
            return EXIT_OK
        print(f"resuming group {writer.id}: {what}", flush=True)
        state = run_group(writer, echo=lambda line: print(line, flush=True))
        return EXIT_FAILED if state == "failed" else EXIT_OK
    finally:
        lock.close()


def cmd_resume(args: argparse.Namespace, job: Any = None) -> int:
    from .distributed import launched_by_torchrun
    from .launch import RunLocked, lock_run, spawn_worker
    from .runner import within_job

    if job is None and launched_by_torchrun():
        if args.detach:
            raise UsageError("under torchrun, resume trains in the foreground: --detach does "
                             "not apply")
        return within_job(lambda job: cmd_resume(args, job))
    run_dir = resolve_run(_pulled(args), args.run)
    if is_group_dir(run_dir):
        if job is not None:
            raise UsageError(f"{run_dir.name} is a group; under torchrun resume one run")
        return _resume_group(run_dir, args)
    try:  # the lock, not the displayed state, says whether a process still trains it
        lock = lock_run(run_dir)
    except RunLocked:
        raise UsageError(f"run {run_dir.name} is still held by a live process (its lock is "
                         f"taken) although it shows {read_run(run_dir).state}; stop it or "
                         "wait for it to end") from None
    try:
        if not args.detach:
            return _resume_here(run_dir, args.epochs, job=job)
        cfg = _resume_plan(run_dir, args.epochs)
        _load_last(run_dir)  # a last.pt that cannot be resumed is refused here, in one line
        if args.epochs is not None:
            _update_config_epochs(run_dir, cfg.epochs)
        # from here a `stop` is for the resumed run: clear the old STOP, mark the start
        (run_dir / STOP).unlink(missing_ok=True)
        (run_dir / RESUMING).touch()
        lock.close()  # the worker takes it over
        pid = spawn_worker(run_dir, resume=True)
        print(f"resuming {run_dir.name} (pid {pid}) in {run_dir}")
        return EXIT_OK
    finally:
        lock.close()


def cmd_list(args: argparse.Namespace) -> int:
    runs = list_runs(_runs_dir(args))
    if not runs:  # a group whose members have not started yet is still listed
        print(f"no runs in {_runs_dir(args)}; start one with: "
              f"{invocation(args).command('run')}")
        _list_groups(_runs_dir(args))
        return EXIT_OK
    rows = [("ID", "NAME", "STATE", "EPOCH", "BEST VAL LOSS")]
    for r in runs:
        best = f"{r.best_val_loss:.4f} @ {r.best_epoch}" if r.best_val_loss is not None else "-"
        state = r.state if not r.problem else f"unreadable: {r.problem}"
        rows.append((r.id, r.name[:30], state, f"{r.epoch}/{r.epochs or '?'}", best))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4])
    _list_groups(_runs_dir(args))
    return EXIT_OK


def method_word(method: str, validation: str, repeat: int) -> str:
    """How a group's members were formed, as one word for the METHOD column of `list`:
    `3-fold` (--validation kfold:3), `bootstrap×20` (bootstrap:20), `seeds×5` (--repeat 5),
    `sweep`; a sweep or repeats over folds or resamples join their words with '+', e.g.
    `sweep+3-fold`. The group record's method, validation and repeat say which."""
    scheme, _, k = validation.partition(":")
    parts = ["sweep"] if method == "sweep" else []
    if method != "repeat" and scheme == "kfold":
        parts.append(f"{k}-fold")
    elif method != "repeat" and scheme == "bootstrap":
        parts.append(f"bootstrap×{k}")
    if repeat > 1:
        parts.append(f"seeds×{repeat}")
    return "+".join(parts) or method or "-"


def _list_groups(runs_dir: Path) -> None:
    from curvewatch.tracking.groups import group_headline, group_progress

    groups = list_groups(runs_dir)
    if not groups:
        return
    rows = [("GROUP", "NAME", "METHOD", "STATE", "MEMBERS", "SCORE")]
    for g in groups:
        members = group_progress([(m.state, None, None) for m in g.members]).text
        score = group_headline(g) if g.aggregate else "-"
        state = g.state if not g.problem else f"unreadable: {g.problem}"
        rows.append((g.id, g.name[:30], method_word(g.method, g.validation, g.repeat), state,
                     members, score))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    print()
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[5])


def cmd_stop(args: argparse.Namespace) -> int:
    run_dir = resolve_run(_runs_dir(args), args.run)
    if is_group_dir(run_dir):
        return _stop_group(args, run_dir)
    info = read_run(run_dir)
    # live: it says running, or a process holds its lock (paused for over 30 s it shows
    # crashed), or a `resume --detach` is starting it (the worker keeps this STOP)
    pending = _resume_pending(run_dir)
    if info.state != "running" and not lock_held(run_dir) and not pending:
        print(f"run {info.id} is not running (state {info.state}); nothing to stop",
              file=sys.stderr)
        return EXIT_NOT_RUNNING
    (run_dir / STOP).touch()
    push_stop(run_dir)  # a run read from a bucket: its writer's syncer fetches the STOP object
    print(f"asked {info.id} to stop after its current epoch"
          + (" (its resume is starting)" if pending and info.state != "running" else ""))

    def state() -> str:
        _runs_dir(args)  # a bucket's mirror is refreshed (at most once per poll interval)
        return "running" if _resume_pending(run_dir) or lock_held(run_dir) \
            else read_run(run_dir).state

    return _wait_until_stopped(state, f"run {info.id}", args.wait)


def _wait_until_stopped(state: Callable[[], str], what: str, wait: float) -> int:
    """Poll `state()` for up to `wait` seconds (0: don't wait) until it is not `running`."""
    deadline = time.monotonic() + max(0.0, wait)
    while wait and time.monotonic() < deadline:
        now = state()
        if now != "running":
            print(f"{what} is {now}")
            return EXIT_OK
        time.sleep(0.2)
    if wait:
        print(f"{what} is still running after {wait:g}s", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _stop_group(args: argparse.Namespace, group_dir: Path) -> int:
    from .groups import stop_group

    group = read_group(group_dir)
    if group.state != "running":
        print(f"group {group.id} is not running (state {group.state}); nothing to stop",
              file=sys.stderr)
        return EXIT_NOT_RUNNING
    asked = stop_group(group_dir.parent, group_dir)
    for path in (group_dir, *(group_dir.parent / rid for rid in asked)):
        push_stop(path)  # a group read from a bucket: its writers fetch the STOP objects
    print(f"asked group {group.id} and {len(asked)} running members to stop after their "
          "current epoch; members not started yet will not start")
    return _wait_until_stopped(lambda: read_group(group_dir).state, f"group {group.id}",
                               args.wait)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_SECONDS, has_runs, launch_demo, max_demo_seconds

    seconds, most = DEMO_SECONDS if args.seconds is None else args.seconds, max_demo_seconds()
    if not 0 <= seconds <= most:
        raise UsageError(f"--seconds must be between 0 and {most:g} "
                         f"(0: full speed), got {seconds:g}")
    runs_dir = _runs_dir(args)
    if args.if_empty and has_runs(runs_dir):
        print(f"{runs_dir} already has runs; not starting the demo")
        return EXIT_OK
    for line in launch_demo(runs_dir, seconds):
        print(line)
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from curvewatch.tracking.import_runs import ImportInputError, parse_map
    from curvewatch.tracking.log_import import plan_import
    from curvewatch.tracking.writer import checked_chance_loss

    runs_dir = _runs_dir(args)
    try:
        if args.chance_loss is not None:
            checked_chance_loss(args.chance_loss)
        plans = plan_import(args.logdir, runs_dir, parse_map(args.tag_map))
    except ImportInputError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        raise UsageError(f"--chance-loss: {e}") from None
    for plan in plans:
        print(_import_one(plan, runs_dir, args))
    return EXIT_OK


def _import_one(plan: Any, runs_dir: Path, args: argparse.Namespace) -> str:
    """Import (or update, or skip) one planned run; the line saying what was done, then the
    notes on points in no row."""
    from curvewatch.tracking.import_runs import update_run, write_run

    tags = ", ".join(f"{col} <- {tag}" for tag, col in plan.mapping.items())
    new, was = len(plan.new_rows), plan.imported_as
    if not plan.rows:
        return f"skipped {plan.name}: no scalars to import"
    if was and not new:
        return f"skipped {plan.name}: imported before as {was}, up to date"
    if was and not args.update:
        return (f"skipped {plan.name}: imported before as {was} ({plan.imported_epochs} "
                f"epochs); the log has {new} more: --update brings it up to date")
    if args.dry_run:
        line = (f"would update {was}: {new} more epochs" if was else
                f"would import {plan.name}: {len(plan.rows)} epochs; {tags}")
    elif was:
        line = f"updated {plan.name} ({was}): {update_run(runs_dir, plan)} more epochs"
    else:
        run_id = write_run(runs_dir, plan, args.tags, args.chance_loss)
        line = f"imported {plan.name} as {run_id}: {len(plan.rows)} epochs; {tags}"
    return "\n".join([line, *(f"  note: {n}" for n in plan.assembly.notes)])


COMMANDS = {"demo": cmd_demo, "import": cmd_import, "run": cmd_run, "sweep": cmd_sweep,
            "list": cmd_list, "stop": cmd_stop, "resume": cmd_resume, "_worker": cmd_worker,
            "_group": cmd_group_worker}


def main(argv: Sequence[str] | None = None, *, prog: str = SHELL_TRAINER,
         extra: Mapping[str, ExtraCommand] | None = None) -> int:
    """Parse and run one command; `prog` is how the user called it (`python -m trainer` from
    the checkout's shim, `curvewatch`), and `extra` lets another front end (the `curvewatch`
    command) add commands of its own."""
    extra = extra or {}
    parser = build_parser(prog, [add for add, _ in extra.values()])
    args = parser.parse_args(argv)
    commands = {**COMMANDS, **{name: run for name, (_, run) in extra.items()}}
    try:
        code = commands[args.command](args)
        sys.stdout.flush()  # a broken pipe surfaces here, not in the interpreter's exit
        return code
    except (ConfigError, UsageError) as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # the reader went away (`list | head -1`): stop quietly, as `ls | head` does; stdout
        # is pointed at /dev/null so that the interpreter's final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
