"""The project is installed into the venv (`make setup`: `pip install --no-deps -e .`), so its
packages import from any folder with no PYTHONPATH, a user's own loop runs as a script, and the
`curvewatch` command is the trainer's command line plus `ui`. (tests/test_wheel.py installs
the built wheel into a fresh venv instead.)

Every subprocess here starts in a temporary folder outside the repository with PYTHONPATH
removed from its environment: only the editable install can make `tracking` importable."""
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, only_run, wait_for
from curvewatch.cli import streamlit_command
from curvewatch.tracking import Run, read_history, read_run, read_steps


def outside_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.pop("CURVEWATCH_RUNS", None)
    return env


def test_packages_import_from_another_folder(tmp_path):
    code = ("import curvewatch.tracking as tracking, curvewatch.diagnosis, "
            "curvewatch.trainer.config, curvewatch.dashboard.figures\n"
            "from curvewatch.tracking import Run\n"
            "print(tracking.__file__)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=outside_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"{done.stderr}\nthe project is not installed in this venv: run `make setup` or "
        f"`{sys.executable} -m pip install --no-deps -e {ROOT}`")
    where = Path(done.stdout.strip().splitlines()[-1]).resolve()
    assert where == ROOT / "curvewatch" / "tracking" / "__init__.py", \
        "an editable install of this checkout"


def test_trainer_console_script_is_installed(tmp_path):
    script = Path(sys.executable).parent / "curvewatch-trainer"
    assert script.exists(), "pyproject.toml's [project.scripts] is not installed"
    done = subprocess.run([str(script), "--help"], cwd=tmp_path, env=outside_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout and "import" in done.stdout


@pytest.mark.slow
def test_own_loop_runs_as_a_script_from_another_folder(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "own_loop.py")],
                          cwd=tmp_path, env=outside_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path / "runs")
    info = read_run(run)
    assert info.state == "completed" and info.epoch == 20
    assert read_history(run)["epoch"].tolist() == list(range(1, 21))


def test_curvewatch_imports_from_another_folder_without_torch_streamlit_or_integrations(
        tmp_path):
    code = ("import sys, curvewatch\n"
            "print(curvewatch.__file__)\n"
            "print(' '.join(m for m in ('torch', 'streamlit', 'lightning', 'pytorch_lightning',"
            " 'transformers', 'curvewatch.lightning', 'curvewatch.transformers')"
            " if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=outside_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    where, loaded = (done.stdout.splitlines() + [""])[:2]
    assert Path(where).resolve() == ROOT / "curvewatch" / "__init__.py"
    assert loaded == "", f"import curvewatch loads {loaded}: a user pays for what they use"


def curvewatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "curvewatch"
    assert script.exists(), "pyproject.toml's [project.scripts] curvewatch is not installed"
    return subprocess.run([str(script), *args], cwd=cwd, env=outside_env(),
                          capture_output=True, text=True, timeout=120)


def test_the_curvewatch_command_is_the_trainers_command_line_plus_ui(tmp_path):
    done = curvewatch("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    commands = re.search(r"commands:\n  COMMAND\n((?:    .*\n)+)", done.stdout).group(1)
    names = [line.split()[0] for line in commands.splitlines() if line[4] != " "]
    assert names == ["run", "sweep", "list", "stop", "resume", "demo", "import", "ui"]
    trainer_help = subprocess.run([sys.executable, "-m", "curvewatch.trainer", "--help"],
                                  cwd=tmp_path,
                                  env=outside_env(), capture_output=True, text=True, timeout=120)
    assert trainer_help.returncode == 0 and " ui " not in trainer_help.stdout
    as_module = subprocess.run([sys.executable, "-m", "curvewatch", "--help"], cwd=tmp_path,
                               env=outside_env(), capture_output=True, text=True, timeout=120)
    assert as_module.returncode == 0 and as_module.stdout == done.stdout

    with Run.create(tmp_path / "runs", name="listed") as run:
        run.log_epoch(1, train_loss=1.0, val_loss=1.0)
    listing = curvewatch("list", "--runs-dir", "runs", cwd=tmp_path)
    assert listing.returncode == 0 and "listed" in listing.stdout


@pytest.mark.parametrize("args, message", [
    (["ui", "--runs-dir", "no-such-folder"],
     "curvewatch ui: error: runs directory 'no-such-folder' does not exist"),
    (["ui", "--port", "http"], "--port must be an integer from 1 to 65535, got 'http'"),
    (["uii"], "invalid choice: 'uii'; did you mean 'ui'?"),
    (["run", "--lr", "-1"], "curvewatch run: error: lr must be > 0 and <= 10, got -1.0"),
])
def test_bad_input_to_the_curvewatch_command_exits_2_naming_it(tmp_path, args, message):
    done = curvewatch(*args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()


def test_curvewatch_run_detach_prints_a_stop_command_that_works_where_it_was_typed(tmp_path):
    """The hints name the `curvewatch` command the user typed (not the checkout's `python -m
    trainer`), with the --runs-dir as given: run where it was typed, the printed line stops
    the run."""
    done = curvewatch("run", "--detach", "--runs-dir", "runs", "--epochs", "100000",
                      "--hidden", "16", "--threads", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path / "runs")
    (hint,) = [ln.split("stop:", 1)[1].strip() for ln in done.stdout.splitlines()
               if ln.strip().startswith("stop:")]
    assert hint == f"curvewatch stop {run.name} --runs-dir runs"
    wait_for(lambda: read_run(run).epoch >= 1, what="the detached run's first epoch")
    stopped = curvewatch(*hint.split()[1:], "--wait", "60", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert read_run(run).state == "stopped"


def test_curvewatch_ui_serves_with_the_checkouts_streamlit_settings_and_no_forced_theme(
        tmp_path):
    """`curvewatch ui` and `make run` (the checkout's .streamlit/config.toml) serve alike: the
    same settings, and no theme, so the page follows the browser's light or dark choice."""
    argv, env = streamlit_command(tmp_path, 8600, "127.0.0.1")
    flags = {a[2:]: b for a, b in zip(argv, argv[1:], strict=False) if a.startswith("--")}
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    # the addresses are `ui --host`'s to set
    wanted = {f"{section}.{key}": str(value).lower() for section, keys in config.items()
              for key, value in keys.items() if not key.lower().endswith("address")}
    assert {k: flags.get(k) for k in wanted} == wanted
    assert not [k for k in flags if k.startswith("theme.")] and "theme" not in config
    assert flags["server.port"] == "8600" and env["CURVEWATCH_RUNS"] == str(tmp_path.resolve())


def readme_block(starting: str) -> str:
    """The README's ```python block whose first line starts with `starting`."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [b for b in blocks if b.startswith(starting)]
    assert len(found) == 1, f"README.md has {len(found)} python blocks starting {starting!r}"
    return found[0]


@pytest.mark.slow
def test_the_readme_wandb_quick_start_runs_from_another_folder(tmp_path):
    (tmp_path / "train.py").write_text(readme_block("import curvewatch as wandb"))
    done = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=outside_env(),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path / "runs")
    info = read_run(run)
    assert info.state == "completed" and info.config == {"lr": 0.05, "epochs": 30}
    history = read_history(run)
    assert history["epoch"].tolist() == list(range(1, 31))
    assert history[["train_loss", "val_loss"]].notna().all().all()
    assert len(read_steps(run)) == 30 * 7, "a step line per batch: 426 rows, 64 a batch"
