"""The wheel, as a user's project gets it: built with `pip wheel . --no-deps
--no-build-isolation`, installed with `pip install --no-deps` into a fresh venv outside the
repository; a user's loop in another folder logs a run with `import curvewatch`, and
`curvewatch ui --runs-dir` serves the dashboard over it.

Nothing may download here, so the fresh venv gets its dependencies (torch, streamlit, pandas
...) from this project's .venv through a .pth file naming .venv's site-packages: a .pth line
only appends that folder to sys.path (the .pth files inside it, among them the editable
install's finder, are not run), so `curvewatch`, `tracking`, `dashboard` ... are imported from
the wheel's copies in the fresh venv, which come first; the test checks that they do."""
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, only_run
from curvewatch.dashboard import state
from curvewatch.tracking import read_run
from servers import answers, free_port, serving

pytestmark = pytest.mark.slow


def packaged_sources(dest: Path) -> Path:
    """A copy of what the build reads (pyproject.toml, its readme, the packages it includes):
    the wheel is built from the copy, so the build's own folders (build/, *.egg-info) never
    land in the shared checkout."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shutil.copy(ROOT / "pyproject.toml", dest)
    shutil.copy(ROOT / meta["project"]["readme"], dest)
    tops = {p.split(".")[0] for p in meta["tool"]["setuptools"]["packages"]["find"]["include"]}
    for top in tops:
        shutil.copytree(ROOT / top, dest / top,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=user_env())
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout}\n{done.stderr}"
    return done


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "CURVEWATCH_RUNS", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = packaged_sources(tmp_path_factory.mktemp("src"))
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
         "-w", str(dist)], cwd=src)
    (whl,) = dist.glob("curvewatch-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv outside the repository with the wheel installed (bin/ returned)."""
    root = tmp_path_factory.mktemp("fresh") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                   "['purelib'])"], cwd=root.parent).stdout.strip()
    Path(purelib, "curvewatch-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         str(wheel)], cwd=root.parent)
    return root / "bin"


def test_the_wheel_holds_the_packages_the_dashboard_app_and_its_pages(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names if not n.startswith("curvewatch-0")}
    assert tops == {"curvewatch"}
    assert "curvewatch/ui/app.py" in names, "curvewatch ui serves this file"
    assert {f"curvewatch/dashboard/views/{page}.py" for page in state.PAGES} <= names
    assert "curvewatch/dashboard/chart_component/index.html" in names
    entry_points = zipfile.ZipFile(wheel).read("curvewatch-0.1.0.dist-info/entry_points.txt")
    assert b"curvewatch = curvewatch.cli:main" in entry_points


def test_a_users_loop_logs_with_the_installed_package(venv, tmp_path):
    code = textwrap.dedent("""
        import curvewatch, curvewatch.tracking as tracking
        print(curvewatch.__file__, tracking.__file__)
        with curvewatch.Run.create(name="user-loop", epochs=3) as run:
            for epoch in range(1, 4):
                run.log_epoch(epoch, train_loss=1 / epoch, val_loss=1.1 / epoch)
        """)
    done = run([str(venv / "python"), "-c", code], cwd=tmp_path)
    for module in done.stdout.split():
        assert Path(module).is_relative_to(venv.parent), f"{module} is not the wheel's copy"
    info = read_run(only_run(tmp_path / "runs"))
    assert info.state == "completed" and info.epoch == 3


def test_curvewatch_ui_serves_the_dashboard_over_the_users_runs(venv, tmp_path):
    runs = tmp_path / "runs"
    run([str(venv / "python"), "-c", "import curvewatch as wandb\n"
         "wandb.init(name='served')\n"
         "for e in range(3): wandb.log({'epoch': e, 'train_loss': 1, 'val_loss': 1})\n"],
        cwd=tmp_path)
    # the app itself runs from the installed package and lists the run (Streamlit's AppTest)
    listing = run([str(venv / "python"), "-c", textwrap.dedent(f"""
        import os
        os.environ["CURVEWATCH_RUNS"] = {str(runs)!r}
        from streamlit.testing.v1 import AppTest
        from curvewatch.ui import APP
        at = AppTest.from_file(str(APP), default_timeout=120).run()
        assert not at.exception, at.exception
        print(APP)
        print(at.dataframe[0].value["name"].tolist())
        """)], cwd=tmp_path).stdout.splitlines()
    assert Path(listing[-2]).is_relative_to(venv.parent) and listing[-1] == "['served']"

    port = free_port()
    with serving([str(venv / "curvewatch"), "ui", "--runs-dir", str(runs), "--port", str(port)],
                 port, cwd=tmp_path, env=user_env(), log=tmp_path / "ui.log") as server:
        page = answers(f"{server.url}/")
        assert page is not None and b"<div id=\"root\">" in page
    assert f"over {runs.resolve()}" in (tmp_path / "ui.log").read_text()
