"""The trainer's help as a newcomer reads it: no internal commands, each default stated once,
the exit codes from the one table the CLI returns from."""
from __future__ import annotations

import re

import pytest

from conftest import run_trainer
from curvewatch.tracking import GroupWriter, Run
from curvewatch.tracking.paths import STOP
from curvewatch.trainer.cli import EXIT_CODES, EXIT_NOT_RUNNING, EXIT_OK, build_parser, main

PUBLIC_COMMANDS = ("run", "sweep", "list", "stop", "resume", "demo", "import")
INTERNAL_COMMANDS = ("_worker", "_group")


def help_text(*command: str) -> str:
    done = run_trainer(*command, "--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


def entries(text: str) -> list[str]:
    """The help's items (an option or a command with its help), each as one line of words: an
    item starts at a line indented by two spaces, its help goes on in deeper-indented lines."""
    items: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if re.match(r"  \S", line):
            current = [line]
            items.append(current)
        elif line.startswith("   ") and current is not None:
            current.append(line)
        else:  # a heading, the usage or a blank line ends the item
            current = None
    return [" ".join(" ".join(item).split()) for item in items]


def exit_code_rows(text: str) -> dict[int, str]:
    """The `exit codes:` section of a help text as {code: meaning}."""
    section = text.split("\nexit codes:\n", 1)[1]
    return {int(row.split()[0]): row.split(None, 1)[1] for row in entries(section)}


def test_top_level_help_lists_the_commands_but_not_the_internal_ones():
    text = help_text()
    for name in PUBLIC_COMMANDS:
        assert re.search(rf"^    {name} ", text, re.M), name
    for name in INTERNAL_COMMANDS:
        assert name not in text
    assert "SUPPRESS" not in text and "{" not in text


def test_internal_commands_still_parse():
    parser = build_parser()
    args = parser.parse_args(["_worker", "/some/run", "--resume"])
    assert args.command == "_worker" and args.run_dir == "/some/run" and args.resume
    assert parser.parse_args(["_group", "/some/group"]).group_dir == "/some/group"


@pytest.mark.parametrize("command", PUBLIC_COMMANDS)
def test_every_default_is_printed_once_and_none_is_none(command):
    text = help_text(command)
    assert "(default: None)" not in text and "default: none" not in text.lower()
    assert "(default: [])" not in text and "(default: False)" not in text
    for item in entries(text):
        assert item.count("default:") <= 1, item


def test_run_help_states_the_meaningful_defaults():
    items = {item.split()[0]: item for item in entries(help_text("run"))}
    assert items["--optimizer"].endswith("(default: adam)")
    assert items["--lr"].endswith("(default: 0.001)")
    assert items["--repeat"].endswith("(default: 1)")
    assert items["--name"].endswith("(default: DATASET-MODEL)")
    assert items["--runs-dir"].endswith("(default: $CURVEWATCH_RUNS or ./runs)")
    for flag in ("--config", "--tag", "--detach", "--target", "--train-size", "--fold",
                 "--early-stop", "--threshold"):
        assert "default:" not in items[flag], items[flag]


def test_top_level_help_lists_every_exit_code_of_the_table():
    rows = exit_code_rows(help_text())
    assert rows == {code: " ".join(meaning.split()) for code, meaning in EXIT_CODES.items()}


@pytest.mark.parametrize("command", ["run", "sweep", "stop", "resume"])
def test_commands_that_scripts_wait_on_list_their_exit_codes(command):
    rows = exit_code_rows(help_text(command))
    assert rows and all(" ".join(EXIT_CODES[code].split()) == text
                        for code, text in rows.items())


def test_main_returns_the_codes_of_the_table(runs_dir, capsys):
    assert main(["list", "--runs-dir", str(runs_dir)]) in EXIT_CODES
    assert main(["run", "--runs-dir", str(runs_dir), "--lr", "-1"]) in EXIT_CODES


def finished_run(runs_dir, name: str = "done", state: str = "completed", **kw) -> Run:
    run = Run.create(runs_dir, name=name, epochs=1, heartbeat_seconds=0, **kw)
    run.log_epoch(train_loss=0.9, val_loss=0.8)
    run.finish(state)
    return run


@pytest.mark.parametrize("state", ["completed", "stopped", "failed"])
def test_stop_of_a_run_that_is_not_running_exits_with_its_own_code(state, runs_dir):
    run = finished_run(runs_dir, state=state)
    done = run_trainer("stop", run.id, runs_dir=runs_dir)
    assert done.returncode == EXIT_NOT_RUNNING != EXIT_OK, done.stderr
    assert EXIT_NOT_RUNNING in exit_code_rows(help_text("stop"))
    assert f"run {run.id} is not running (state {state}); nothing to stop" in done.stderr
    assert not (run.path / STOP).exists()


def test_stop_of_a_group_that_is_not_running_exits_with_the_same_code(runs_dir, capsys):
    group = GroupWriter.create(runs_dir, name="g", method="repeat", validation="holdout",
                               repeat=1, members=[{"index": 0, "name": "g seed 0"}])
    run = finished_run(runs_dir, name="g seed 0", group=group.id)
    group.update_member(0, run_id=run.id, state="completed")
    group.finish("completed", aggregate=None)
    assert main(["stop", group.id, "--runs-dir", str(runs_dir)]) == EXIT_NOT_RUNNING
    assert "is not running (state completed); nothing to stop" in capsys.readouterr().err


def method_column(out: str) -> dict[str, str]:
    """{group name: METHOD} from the groups table that `list` prints after the runs."""
    lines = out[out.index("\nGROUP "):].strip("\n").splitlines()
    start, end = lines[0].index("METHOD"), lines[0].index("STATE")
    name = slice(lines[0].index("NAME"), start)
    return {row[name].strip(): row[start:end].strip() for row in lines[1:]}


def test_list_names_each_group_method_in_one_word(runs_dir, capsys):
    groups = {  # name: (method, validation, repeat), as `run` and `sweep` record them
        "folds": ("kfold", "kfold:3", 1), "resamples": ("bootstrap", "bootstrap:20", 1),
        "seeds": ("repeat", "holdout", 5), "grid": ("sweep", "holdout", 1),
        "cv-grid": ("sweep", "kfold:4", 1), "repeated-folds": ("kfold", "kfold:3", 2)}
    for name, (method, validation, repeat) in groups.items():
        GroupWriter.create(runs_dir, name=name, method=method, validation=validation,
                           repeat=repeat, members=[{"index": 0, "name": f"{name} 1"}])
    # no member has started: the groups are listed all the same
    assert main(["list", "--runs-dir", str(runs_dir)]) == EXIT_OK
    assert method_column(capsys.readouterr().out) == {
        "folds": "3-fold", "resamples": "bootstrap×20", "seeds": "seeds×5", "grid": "sweep",
        "cv-grid": "sweep+4-fold", "repeated-folds": "3-fold+seeds×2"}


@pytest.mark.parametrize("args, bad, near, accepted", [
    (["run", "--schedule", "cosin"], "'cosin'", "cosine",
     "constant, step, exponential, cosine, plateau"),
    (["run", "--threshold", "patiense=3"], "'patiense'", "patience", "patience, window, "),
    (["sweep", "--optimizer", "adamm"], "'adamm'", "adam", "sgd, adam, adamw, rmsprop"),
    (["run", "--validation", "kfodl:3"], "'kfodl:3'", "kfold", "kfold:K"),
    (["rnu"], "'rnu'", "run", "run, sweep, list, stop, resume, demo, import"),
])
def test_a_misspelt_name_gets_the_nearest_one_and_the_accepted_ones(args, bad, near, accepted,
                                                                    runs_dir):
    done = run_trainer(*args, runs_dir=runs_dir)
    assert done.returncode == 2
    assert bad in done.stderr and f"did you mean {near!r}?" in done.stderr
    assert accepted in done.stderr
    assert "_worker" not in done.stderr and not any(runs_dir.iterdir())


def test_a_name_near_no_accepted_one_gets_no_suggestion(runs_dir, capsys):
    assert main(["run", "--runs-dir", str(runs_dir), "--optimizer", "lbfgs"]) == 2
    assert "did you mean" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["xyz"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'xyz' (choose from run, sweep," in err and "did you mean" not in err
