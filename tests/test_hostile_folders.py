"""Issue 15, named cases: one hostile run folder (wrong field types, deep nesting, numbers out
of float range, FIFOs, directories, devices and symlinks where files belong) never makes a
reader raise, hang or read outside the run folder; `list_runs` and `trainer list` show it as
one row (unreadable with its reason, or readable with the bad fields left out), and the Runs,
Run, Group and Compare pages keep working.

Every reader call on a damaged folder runs in a forked child with a deadline and a memory cap
(tests/hostile.py `in_child`), so a regression that blocks on a FIFO or reads /dev/zero
without bound fails the test instead of hanging or exhausting the machine."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile as H  # noqa: E402
from curvewatch import tracking  # noqa: E402
from curvewatch.tracking import list_groups, list_runs, read_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASES = list(H.DAMAGES)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    runs, goods, victims = H.build_hostile_dir(tmp)
    yield runs, goods, victims
    H.release_fifos(tmp)


def _read_all(runs: Path, run: Path):
    h = tracking.HistoryReader(run)
    hist = h.read()
    layers = tracking.read_layers(run)
    steps = tracking.read_steps(run)
    log = tracking.read_log_tail(run)
    return (list_runs(runs), read_run(run), hist, list(h.problems), layers, steps, log)


@pytest.mark.parametrize("case", CASES)
def test_a_hostile_folder_is_one_row_and_every_reader_returns_reading_nothing_outside(
        case, tmp_path):
    """list_runs shows the damaged folder as one row (unreadable with its reason, or readable
    with the bad fields left out) and the good run as before; read_run, the history, layers
    and steps readers and the log tail return, in a forked child under a deadline and a
    memory cap, with nothing from outside the run folder."""
    runs = tmp_path / "runs"
    out = H.outside_dir(tmp_path)
    good = H.good_run(runs, "good")
    victim = H.good_run(runs, "victim")
    damage, expect = H.DAMAGES[case]
    damage(victim, out)
    try:
        how, got = H.in_child(lambda: _read_all(runs, victim), timeout=15)
    finally:
        H.release_fifos(tmp_path)
    assert how == "ok", (how, got)
    infos, info, hist, problems, layers, steps, log = got
    by_id = {i.id: i for i in infos}
    assert set(by_id) == {good.name, victim.name}
    assert by_id[good.name].state == "completed" and by_id[good.name].best_epoch == 3
    for i in (*infos, info):
        H.check_info(i)
    bad = by_id[victim.name]
    if expect == "unreadable":
        assert bad.state == "unreadable", bad
    else:
        assert bad.state != "unreadable", bad.problem
    for frame in (hist, layers, steps):
        assert H.SECRET not in " ".join(map(str, frame.columns))
        assert H.SECRET not in frame.to_string()
    assert isinstance(log, str) and len(log) <= 20_000
    assert H.SECRET not in log and "root:*" not in log
    assert all(isinstance(p, str) and len(p) < 400 for p in problems)
    if case in ("metrics line nested 3000 deep", "metrics line with 10**400"):
        assert hist["epoch"].tolist() == [1, 2, 3, 5]
        assert len(problems) == 1, problems
    if case in ("metrics.jsonl a directory", "metrics.jsonl a FIFO"):
        assert hist.empty and problems and "regular file" in problems[0]
    if case.startswith("trainer.log"):
        assert log == ""


def test_a_symlinked_member_log_folder_is_not_followed(tmp_path):
    """A group's logs/ folder replaced by a symlink to a folder outside: the member's Log tab
    stays empty instead of showing the outside file."""
    runs = tmp_path / "runs"
    out = H.outside_dir(tmp_path)
    (out / "0.log").write_text(H.SECRET)
    g = tracking.GroupWriter.create(runs, name="g", method="repeat", validation="holdout",
                                    members=[{"index": 0, "name": "m0"}], pid=0)
    member = H.good_run(runs, "m0", log=False)
    j = json.loads((member / "run.json").read_text())
    j["group"] = g.id
    (member / "run.json").write_text(json.dumps(j))
    g.update_member(0, run_id=member.name, state="completed")
    (g.path / "logs").rmdir()
    (g.path / "logs").symlink_to(out)
    how, got = H.in_child(lambda: (tracking.read_log_tail(member),
                                   tracking.read_member_log(tracking.read_group(g.path), 0)))
    assert how == "ok", got
    assert got == ("", "")


@pytest.mark.parametrize("kind", ["FIFO", "directory", "symlink out", "nested 100000 deep",
                                  "character device"])
def test_a_hostile_group_json_is_an_unreadable_group_and_lists_return(kind, tmp_path):
    runs = tmp_path / "runs"
    out = H.outside_dir(tmp_path)
    (out / "group.json").write_text(json.dumps({"kind": "group", "name": H.SECRET,
                                                "members": []}))
    g = tracking.GroupWriter.create(runs, name="g", method="repeat", validation="holdout",
                                    members=[{"index": 0, "name": "m0"}], pid=0)
    H.good_run(runs, "good")
    f = g.path / "group.json"
    if kind == "FIFO":
        H._fifo(f)
    elif kind == "directory":
        H._replace_with_dir(f)
    elif kind == "symlink out":
        H._symlink(f, out / "group.json")
    elif kind == "character device":
        H._zero_device(f)
    else:
        f.write_text("[" * 100_000)
    try:
        how, got = H.in_child(lambda: (list_runs(runs), list_groups(runs)), timeout=15)
    finally:
        H.release_fifos(tmp_path)
    assert how == "ok", got
    infos, groups = got
    assert [i.state for i in infos] == ["completed"]
    if kind == "directory":  # a folder named group.json marks no group: nothing to list
        assert len(groups) <= 1
    else:
        [grp] = groups
        assert grp.state == "unreadable" and grp.problem and H.SECRET not in repr(grp)


def test_a_run_folder_unreadable_to_its_reader_is_listed_as_unreadable(request):
    """Permissions: as a non-root user (the tests run as root, so a forked child drops to
    nobody), a run.json, a run folder or a metrics.jsonl it may not read is one unreadable row
    or an empty history with a reason, never a traceback."""
    if os.geteuid() != 0 and os.getuid() != 0:
        pytest.skip("needs root to create files another user cannot read")
    base = Path(tempfile.mkdtemp(prefix="curvewatch-perm-"))  # pytest's tmp is root-only
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    os.chmod(base, 0o755)
    runs = base / "runs"
    good = H.good_run(runs, "good")
    a = H.good_run(runs, "no-run-json")
    b = H.good_run(runs, "no-folder")
    c = H.good_run(runs, "no-metrics")
    for p in (runs, good, a, b, c):
        os.chmod(p, 0o755)
        for f in p.iterdir():
            os.chmod(f, 0o644)
    os.chmod(a / "run.json", 0o600)
    os.chmod(b, 0o700)
    os.chmod(c / "metrics.jsonl", 0o600)
    (c / "layers.jsonl").unlink()
    (c / "layers.jsonl").mkdir(mode=0o700)

    def as_nobody():
        os.setgid(65534)
        os.setuid(65534)
        infos = list_runs(runs)
        h = tracking.HistoryReader(c)
        return infos, h.read(), h.problems, tracking.read_layers(c), tracking.read_log_tail(b)

    how, got = H.in_child(as_nobody)
    assert how == "ok", got
    infos, hist, problems, layers, log = got
    by = {i.id: i for i in infos}
    assert by[good.name].state == "completed"
    assert by[a.name].state == "unreadable" and "run.json" in by[a.name].problem
    assert by[b.name].state == "unreadable"
    assert by[c.name].state == "completed"
    assert hist.empty and problems and "metrics.jsonl" in problems[0]
    assert layers.empty and log == ""


def test_trainer_list_shows_every_hostile_folder_as_one_row_without_a_traceback(hostile):
    runs, goods, victims = hostile
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "curvewatch.trainer", "list", "--runs-dir",
                           str(runs)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    for case, path in victims.items():
        rows = [ln for ln in lines if ln.startswith(path.name)]
        assert len(rows) == 1, (case, rows)
        if H.DAMAGES[case][1] == "unreadable":
            assert "unreadable: " in rows[0], (case, rows[0])
    assert H.SECRET not in proc.stdout


# ------------------------------------------------------------------ pages (AppTest)
def _page(name: str, **query):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "curvewatch" / "dashboard" / "views" / f"{name}.py"),
                           default_timeout=30)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def _shown(at) -> str:
    parts = []
    for kind in ("markdown", "title", "caption", "code", "error", "warning", "info", "json",
                 "text", "metric"):
        try:
            parts += [str(getattr(e, "value", "")) for e in getattr(at, kind)]
        except Exception:  # noqa: BLE001 - an element type this Streamlit lacks
            pass
    return "\n".join(parts)


@pytest.fixture
def hostile_env(hostile, monkeypatch):
    runs, goods, victims = hostile
    monkeypatch.setenv("CURVEWATCH_RUNS", str(runs))
    monkeypatch.chdir(ROOT)
    return runs, goods, victims


def test_runs_page_lists_every_hostile_folder(hostile_env):
    runs, goods, victims = hostile_env
    at = _page("runs").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("id")
    for case, path in victims.items():
        assert path.name in table.index, case
        if H.DAMAGES[case][1] == "unreadable":
            assert "unreadable" in table.loc[path.name, "state"], case
            assert table.loc[path.name, "problem"], case
    for g in goods:
        assert "completed" in table.loc[g.name, "state"]
    assert H.SECRET not in _shown(at) and H.SECRET not in table.to_string()


@pytest.mark.parametrize("case", CASES)
def test_run_page_renders_for_a_hostile_run(case, hostile_env):
    runs, goods, victims = hostile_env
    at = _page("run", run=victims[case].name).run()
    assert not at.exception, (case, at.exception)
    shown = _shown(at)
    assert H.SECRET not in shown and "root:*" not in shown
    if H.DAMAGES[case][1] == "unreadable":
        assert any("cannot be read" in str(e.value) for e in at.error), case


def test_an_unreadable_run_can_be_deleted_from_its_run_page(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    H.good_run(runs, "good")
    victim = H.good_run(runs, "victim")
    H._fifo(victim / "status.json")
    (victim / "run.json").write_text("[" * 100_000)
    monkeypatch.setenv("CURVEWATCH_RUNS", str(runs))
    monkeypatch.chdir(ROOT)
    at = _page("run", run=victim.name).run()
    assert not at.exception and "cannot be read" in at.error[0].value
    at.checkbox(key="run-delete-confirm").check().run()
    at.button(key="run-delete").click().run()
    assert not at.exception, at.exception
    assert not victim.exists()


def test_runs_table_shows_no_time_for_a_created_at_pandas_cannot_hold():
    from curvewatch.dashboard import tables
    from curvewatch.tracking import RunInfo
    runs = [RunInfo(id=f"r{i}", path=Path("r"), state="completed", name="r", created_at=v)
            for i, v in enumerate([1e300, float("inf"), float("nan"), 1.7e9])]
    created = tables.runs_frame(runs)["created"]
    assert created.isna().tolist() == [True, True, True, False]


def test_compare_page_renders_with_hostile_runs_selected(hostile_env):
    runs, goods, victims = hostile_env
    readable = [p.name for c, p in victims.items() if H.DAMAGES[c][1] == "readable"]
    picked = [g.name for g in goods] + readable[: 20 - len(goods)]
    at = _page("compare", runs=",".join(picked)).run()
    assert not at.exception, at.exception
    assert H.SECRET not in _shown(at)


def test_group_page_and_runs_page_survive_a_fifo_group_json(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    good = tracking.GroupWriter.create(runs, name="fine", method="repeat",
                                       validation="holdout", members=[{"index": 0}], pid=0)
    bad = tracking.GroupWriter.create(runs, name="fifo", method="repeat",
                                      validation="holdout", members=[{"index": 0}], pid=0)
    H.good_run(runs, "a")
    H.good_run(runs, "b")
    H._fifo(bad.path / "group.json")
    monkeypatch.setenv("CURVEWATCH_RUNS", str(runs))
    monkeypatch.chdir(ROOT)
    try:
        for at in (_page("runs"), _page("group", group=good.id), _page("group", group=bad.id),
                   _page("compare", group=bad.id)):
            at.run()
            assert not at.exception, at.exception
    finally:
        H.release_fifos(tmp_path)


def test_strict_reading_refuses_what_a_float_cannot_hold_and_deep_nesting():
    from curvewatch.tracking.safeio import loads_bounded
    assert loads_bounded(b'{"a": [1, "NaN", 2.5]}')["a"][1] != loads_bounded(b'{"a": [1]}')
    assert math.isnan(loads_bounded(b'{"a": "NaN"}')["a"])
    for bad in (b"1" + b"0" * 400, b"[" * 100_000, b"[" * 65 + b"]" * 65, b"\xff",
                b'{"a": -1' + b"0" * 400 + b"}"):
        with pytest.raises(ValueError):
            loads_bounded(bad)
    assert loads_bounded(b"[" * 64 + b"]" * 64) is not None


def test_a_follower_of_an_unreadable_jsonl_reports_its_reason_once(tmp_path):
    run = H.good_run(tmp_path / "runs", "v")
    H._fifo(run / "metrics.jsonl")
    h = tracking.HistoryReader(run)
    for _ in range(5):  # live ticks
        assert h.read().empty
    assert len(h.problems) == 1 and "FIFO" in h.problems[0]


def test_a_live_looking_run_with_a_pid_no_process_can_have_reads_as_crashed(tmp_path):
    runs = tmp_path / "runs"
    run = H.good_run(runs, "v")
    H.DAMAGES["pid 10**30 of a live-looking run"][0](run, tmp_path)
    info = read_run(run)
    assert info.state == "crashed" and "pid" not in info.status
