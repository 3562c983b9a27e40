"""Bad input at the edges of the CLI: wrong types, out-of-range values, empty and huge strings
each get a message naming the option, exit code 2, and nothing is started or written; run
names cannot escape the runs directory or inject into a command."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_trainer
from curvewatch.tracking import list_runs
from curvewatch.trainer.cli import main

HUGE = "9" * 100_000
NUMBER_OPTIONS = ["lr", "momentum", "weight_decay", "l1", "dropout", "label_noise",
                  "val_fraction", "test_fraction", "clip_grad_norm", "min_epoch_seconds"]
INT_OPTIONS = ["epochs", "batch_size", "warmup_epochs", "seed", "patience", "log_every_steps"]
CHOICE_OPTIONS = ["optimizer", "activation", "schedule", "device", "dataset", "model"]
BAD = {
    "number": ["abc", "", "1e400", "-1e400", "nan", HUGE + "x", "0x10"],
    "int": ["abc", "", "1.5", "1e400", "x1", HUGE + "x"],
    "choice": ["", "x" * 100_000, "a\x00b", "../../etc/passwd", "$(touch pwned)"],
}


def _cases():
    for kind, names in (("number", NUMBER_OPTIONS), ("int", INT_OPTIONS),
                        ("choice", CHOICE_OPTIONS)):
        for name in names:
            for value in BAD[kind]:
                yield pytest.param(name, value, id=f"{name}={value[:12]!r}")


@pytest.mark.parametrize("name, value", list(_cases()))
def test_each_option_rejects_bad_values_by_name_and_writes_nothing(name, value, runs_dir,
                                                                  capsys):
    flag = "--" + name.replace("_", "-")
    code = main(["run", "--runs-dir", str(runs_dir), "--epochs", "2", f"{flag}={value}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {name}" in err or f"error: {name.split('_')[0]}" in err, err[:300]
    assert len(err) < 2000  # the message quotes a bad value, it does not echo 100 KB
    assert list(runs_dir.iterdir()) == []


@pytest.mark.parametrize("value, message", [
    ("-1", "lr must be > 0 and <= 10"), ("11", "lr must be > 0 and <= 10"),
])
def test_out_of_range_values_say_what_is_accepted(value, message, runs_dir, capsys):
    assert main(["run", "--runs-dir", str(runs_dir), f"--lr={value}"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/b/c", "..", "$(touch pwned)",
                                  "`touch pwned`; rm -rf ~", "ＡＢＣ fullwidth",
                                  "naïve café", "名前"])
def test_run_names_never_escape_the_runs_directory_or_run_commands(name, tmp_path):
    runs = tmp_path / "runs"
    done = run_trainer("run", "--epochs", "1", "--hidden", "8", "--name", name,
                       runs_dir=runs, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [info] = list_runs(runs)
    assert info.name == name and info.path.parent == runs
    assert "/" not in info.id and ".." not in info.id
    everything = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    assert all(p.parts[0] == "runs" for p in everything), everything
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize("name, why", [
    ("bad\x00name", "control or invisible"), ("\u202eexe.txt", "control or invisible"),
    ("", "non-empty"), ("   ", "non-empty"), ("x" * 201, "at most 200"),
    ("zero\u200bwidth", "control or invisible"), ("tab\tname", "control or invisible"),
])
def test_unusable_run_names_are_refused(name, why, runs_dir, capsys):
    assert main(["run", "--runs-dir", str(runs_dir), "--name", name]) == 2
    assert why in capsys.readouterr().err
    assert list(runs_dir.iterdir()) == []


def _form_cases():
    for name, value in (p.values for p in _cases()):
        if value != "":  # an empty form field means "the default", as a flag left out
            yield pytest.param(name, value, id=f"{name}={value[:12]!r}")


@pytest.mark.parametrize("name, value", list(_form_cases()))
def test_the_launch_form_rejects_each_bad_value_with_the_clis_message(name, value, runs_dir,
                                                                      capsys):
    from curvewatch.dashboard import launch_form
    values = {**launch_form.defaults(), name: value}
    cfg, form_message = launch_form.validate(values)
    assert cfg is None and form_message
    flag = "--" + name.replace("_", "-")
    assert main(["run", "--runs-dir", str(runs_dir), f"{flag}={value}"]) == 2
    assert capsys.readouterr().err.strip().endswith(form_message)
    assert list(runs_dir.iterdir()) == []
