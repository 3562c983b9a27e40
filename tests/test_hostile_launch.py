"""Issue 15: the dashboard is not a file reader or a code runner for whoever reaches its port.
The Launch form passes on `csv:` paths only for regular .csv files under the data folders (the
working directory or $CURVEWATCH_DATA_ROOT), `module:function` factories only when listed in
$CURVEWATCH_ALLOW_FACTORY, and no more parallel members, seeds or threads than the machine
has; the CLI keeps its powers but never blocks on a FIFO or reads a device."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile as H  # noqa: E402
from curvewatch.dashboard import actions, launch_policy as LP  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LIMITS = LP.Limits(parallel=4, repeat=100, threads=4)


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A working directory with a CSV, a hidden .env, a FIFO and a symlink out of it."""
    cwd = tmp_path / "work"
    (cwd / "data").mkdir(parents=True)
    (cwd / "data" / "train.csv").write_text("a,b,y\n1,2,0\n")
    (cwd / ".env").write_text(f"TOKEN={H.SECRET}\n")
    (cwd / "secrets").mkdir()
    (cwd / "secrets" / "x.csv").write_text("a\n1\n")
    os.mkfifo(cwd / "data" / "pipe.csv")
    (cwd / "data" / "out.csv").symlink_to(H.outside_dir(tmp_path) / "secret.txt")
    (cwd / "data" / "env.csv").symlink_to(cwd / ".env")
    (cwd / "data" / "dir.csv").mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(LP.DATA_ROOT_ENV, raising=False)
    monkeypatch.delenv(LP.ALLOW_FACTORY_ENV, raising=False)
    return cwd


def apply(options, group=None, **kw):
    return LP.apply(options, group, limits=LIMITS, **kw)


@pytest.mark.parametrize("path, why", [
    ("/etc/shadow", "outside the data folders"),
    ("/proc/self/environ", "system file"),
    ("/dev/zero", "system file"),
    ("../outside/secret.txt", "outside the data folders"),
    ("data/out.csv", "outside the data folders"),  # a symlink out of the folder
    (".env", "hidden"),
    ("data/env.csv", "hidden"),  # a symlink to a hidden file inside
    ("data/pipe.csv", "not a regular file"),
    ("data/dir.csv", "not a regular file"),
    ("data/missing.csv", "no such file"),
    ("secrets/../.env", "hidden"),
    ("README", "does not end in .csv"),
])
def test_the_form_refuses_a_csv_path_it_may_not_read_before_opening_it(data, path, why):
    with pytest.raises(LP.Refused) as e:
        apply({"dataset": f"csv:{path}", "target": "y"})
    assert why in str(e.value)
    assert H.SECRET not in str(e.value) and "root:" not in str(e.value)


def test_a_csv_under_the_data_folder_is_passed_on_resolved(data):
    out = apply({"dataset": "csv:data/train.csv", "target": "y"})
    assert out == {"dataset": f"csv:{data / 'data' / 'train.csv'}", "target": "y"}


def test_the_data_root_setting_replaces_the_working_directory(data, tmp_path):
    other = tmp_path / "datasets"
    other.mkdir()
    (other / "d.csv").write_text("a,y\n1,0\n")
    env = {LP.DATA_ROOT_ENV: f"{other}{os.pathsep}{data / 'secrets'}"}
    assert apply({"dataset": f"csv:{other / 'd.csv'}"}, env=env)["dataset"] == \
        f"csv:{other / 'd.csv'}"
    apply({"dataset": "csv:secrets/x.csv"}, env=env)
    with pytest.raises(LP.Refused, match="outside the data folders"):
        apply({"dataset": "csv:data/train.csv"}, env=env)


@pytest.mark.parametrize("option", ["dataset", "model"])
def test_a_factory_runs_only_when_the_user_allowed_it(data, option):
    with pytest.raises(LP.Refused, match=LP.ALLOW_FACTORY_ENV):
        apply({option: "tempfile:mkdtemp"})
    apply({option: "tempfile:mkdtemp"}, env={LP.ALLOW_FACTORY_ENV: "x:y, tempfile:mkdtemp"})
    apply({option: "tempfile:mkdtemp"}, env={LP.ALLOW_FACTORY_ENV: "tempfile:*"})
    with pytest.raises(LP.Refused):
        apply({option: "os:system"}, env={LP.ALLOW_FACTORY_ENV: "tempfile:*"})
    assert apply({"dataset": "digits", "model": "mlp"}) == {"dataset": "digits", "model": "mlp"}


def test_parallel_repeat_and_threads_are_capped_by_the_machine(data):
    apply({}, {"parallel": "4", "repeat": "100"})
    apply({"threads": "4"})
    for opts, group in (({}, {"parallel": "256"}), ({}, {"repeat": "101"}),
                        ({"threads": "64"}, None)):
        with pytest.raises(LP.Refused, match="more than this machine allows"):
            apply(opts, group)
    limits = LP.machine_limits()
    assert 1 <= limits.parallel <= (os.cpu_count() or 1) and limits.threads == os.cpu_count()


def test_launch_run_refuses_before_any_process_starts(data, monkeypatch):
    calls = []
    monkeypatch.setattr(actions, "_cli", lambda *a, **k: calls.append(a))
    res = actions.launch_run(data / "runs", "x", {"dataset": "csv:/etc/shadow", "target": "y"})
    assert not res.ok and res.returncode == 2 and "outside the data folders" in res.message
    res = actions.launch_run(data / "runs", "x", {"model": "tempfile:mkdtemp"})
    assert not res.ok and LP.ALLOW_FACTORY_ENV in res.message
    res = actions.launch_run(data / "runs", "x", {}, group_options={"parallel": 10_000})
    assert not res.ok and "more than this machine allows" in res.message
    assert calls == []


@pytest.mark.parametrize("dataset", ["csv:/etc/shadow", "csv:/proc/self/environ",
                                     "csv:/dev/zero", "tempfile:mkdtemp"])
def test_the_launch_page_refuses_and_shows_no_file_content(dataset, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    runs = tmp_path / "runs"
    monkeypatch.setenv("CURVEWATCH_RUNS", str(runs))
    monkeypatch.delenv(LP.DATA_ROOT_ENV, raising=False)
    monkeypatch.delenv(LP.ALLOW_FACTORY_ENV, raising=False)
    monkeypatch.chdir(ROOT)
    calls = []
    monkeypatch.setattr(actions, "_cli", lambda *a, **k: calls.append(a))
    at = AppTest.from_file(str(ROOT / "curvewatch" / "dashboard" / "views" / "launch.py"),
                           default_timeout=30)
    at.session_state["launch-dataset"] = dataset  # a typed option
    at.run()
    at.text_input(key="launch-target").set_value("nope")
    at.button(key="launch-submit").click().run()
    assert not at.exception, at.exception
    shown = "\n".join(str(e.value) for e in at.error)
    assert f"{actions.SHELL_TRAINER} run: error:" in shown
    assert "outside" in shown or "system file" in shown or LP.ALLOW_FACTORY_ENV in shown
    assert "root:" not in shown and "PATH=" not in shown
    assert calls == [] and not runs.exists()


def test_the_launch_page_caps_parallel_members_by_the_machine(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("CURVEWATCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    calls = []
    monkeypatch.setattr(actions, "_cli", lambda *a, **k: calls.append(a))
    at = AppTest.from_file(str(ROOT / "curvewatch" / "dashboard" / "views" / "launch.py"),
                           default_timeout=30)
    at.run()
    at.text_input(key="launch-repeat").set_value("4")
    at.text_input(key="launch-parallel").set_value("256")
    at.button(key="launch-submit").click().run()
    assert "--parallel 256 is more than this machine allows" in at.error[0].value
    assert calls == []


def _cli_csv(path: Path):
    from curvewatch.trainer.data import _from_csv
    from curvewatch.trainer.errors import ConfigError
    try:
        _from_csv(str(path), "y")
    except ConfigError as e:
        return str(e)
    return "read"


@pytest.mark.parametrize("kind", ["FIFO", "/dev/zero", "directory"])
def test_the_clis_csv_reader_refuses_what_is_not_a_regular_file_without_blocking(kind,
                                                                                 tmp_path):
    path = tmp_path / "d.csv"
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    try:
        how, msg = H.in_child(lambda: _cli_csv(path), timeout=30)
    finally:
        H.release_fifos(tmp_path)
    assert how == "ok", (how, msg)
    assert "not a regular file" in msg, msg


def test_the_cli_still_reads_a_csv_anywhere_including_through_a_symlink(tmp_path):
    (tmp_path / "real.csv").write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    from curvewatch.trainer.data import _from_csv
    x, y = _from_csv(str(tmp_path / "link.csv"), "y")
    assert x.shape == (20, 1) and len(y) == 20


def test_the_chart_cache_folder_is_private_and_never_someone_elses(tmp_path, monkeypatch):
    """The live chart's JavaScript is served from a cache folder; when the user cache cannot
    be made, the fallback under the temp folder must be this user's, private, never a folder
    someone else planted there (it used to be /tmp/curvewatch, used whoever made it)."""
    import tempfile

    from curvewatch.dashboard import live_chart
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the user cache cannot be made
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"curvewatch-{os.getuid()}"
    planted.mkdir()
    os.chmod(planted, 0o777)  # anyone may write into it
    try:
        live_chart._component.cache_clear()
        assert live_chart._component() is None
        os.chmod(planted, 0o755)
        if os.geteuid() == 0:  # a folder another user made
            os.chown(planted, 65534, 65534)
            live_chart._component.cache_clear()
            assert live_chart._component() is None
        os.rmdir(planted)
        planted.symlink_to(tmp_path)  # a symlink planted in its place
        live_chart._component.cache_clear()
        assert live_chart._component() is None
        planted.unlink()
        live_chart._component.cache_clear()
        comp = live_chart._component()  # made by us, private
        assert comp is not None and Path(comp.path).parent == planted
        st_ = os.lstat(planted)
        assert st_.st_uid == os.getuid() and st_.st_mode & 0o777 == 0o700
    finally:
        live_chart._component.cache_clear()
