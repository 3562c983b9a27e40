"""The project is installed into the venv (`make setup`: `pip install --no-deps -e .`), so its
packages import from any folder with no PYTHONPATH, and a user's own loop runs as a script.

Every subprocess here starts in a temporary folder outside the repository with PYTHONPATH
removed from its environment: only the editable install can make `tracking` importable."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, only_run
from tracking import read_history, read_run


def outside_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.pop("CURVEWATCH_RUNS", None)
    return env


def test_packages_import_from_another_folder(tmp_path):
    code = ("import tracking, diagnosis, trainer.config, dashboard.figures\n"
            "from tracking import Run\n"
            "print(tracking.__file__)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=outside_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"{done.stderr}\nthe project is not installed in this venv: run `make setup` or "
        f"`{sys.executable} -m pip install --no-deps -e {ROOT}`")
    where = Path(done.stdout.strip().splitlines()[-1]).resolve()
    assert where == ROOT / "tracking" / "__init__.py", "an editable install of this checkout"


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
