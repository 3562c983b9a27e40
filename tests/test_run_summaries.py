"""Summaries of own-loop runs (no flags in status.json) for the Runs page (issue 17): kept in
`.summary.json` only while they match metrics.jsonl, and made off the page's thread for large
runs. A gate held in a wrapper of data._summarise stands for a slow diagnosis of a huge history
(a timing dependency: the real diagnosis runs behind it)."""
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curvewatch import tracking
from curvewatch.dashboard import data, summaries
from curvewatch.tracking import jsonio
from curvewatch.tracking.history_cache import CACHE_MIN_BYTES

RUNS_PAGE = Path(__file__).resolve().parent.parent / "curvewatch/dashboard/views/runs.py"
DEADLINE = 30.0


def own_loop_run(root: Path, min_bytes: int = 0) -> tracking.RunInfo:
    """A finished tracking.Run that overfits (val loss turns up), its metrics.jsonl at least
    `min_bytes` long."""
    run = tracking.Run.create(root, name="own-loop", config={}, epochs=0, heartbeat_seconds=0)
    epoch = 0
    while epoch < 60 or (run.path / "metrics.jsonl").stat().st_size < min_bytes:
        epoch += 1
        run.log_epoch(epoch=epoch, train_loss=1.0 / epoch,
                      val_loss=0.5 + abs(epoch - 30) / 60, val_acc=0.5 + epoch / 1e4)
    run.finish("completed")
    return tracking.read_run(run.path)


def grow(info: tracking.RunInfo) -> tracking.RunInfo:
    with open(info.path / "metrics.jsonl", "a") as f:
        f.write(jsonio.dumps({"epoch": 10**6, "train_loss": 0.01, "val_loss": 2.0}) + "\n")
    return tracking.read_run(info.path)


def test_a_stored_summary_is_used_only_while_current_and_remade_when_stale_or_damaged(tmp_path):
    info = own_loop_run(tmp_path, CACHE_MIN_BYTES)
    made = data.run_summary(info)
    stored = jsonio.loads((info.path / summaries.SUMMARY_NAME).read_text())
    assert [tuple(f) for f in stored["flags"]] == list(made["flags"]) and made["flags"]
    planted = stored | {"flags": [["planted", "info"]]}  # under the current basis: trusted
    (info.path / summaries.SUMMARY_NAME).write_text(jsonio.dumps(planted))
    data._summary_cached.clear()
    assert data.run_summary(info)["flags"] == (("planted", "info"),)
    info = grow(info)  # metrics.jsonl changed: the planted summary is stale
    assert data.run_summary(info)["flags"] != (("planted", "info"),)
    remade = jsonio.loads((info.path / summaries.SUMMARY_NAME).read_text())
    for damage in (b"{not json", b"", b'{"basis": ' + remade["basis"].encode() + b"}"):
        (info.path / summaries.SUMMARY_NAME).write_bytes(damage)
        data._summary_cached.clear()
        assert data.run_summary(info)["flags"] == tuple(map(tuple, remade["flags"]))
        assert jsonio.loads((info.path / summaries.SUMMARY_NAME).read_text()) == remade


@pytest.fixture
def slow_diagnosis(monkeypatch):
    """Every run is 'large', and its summary waits for the gate: (gate, calls)."""
    gate, calls = threading.Event(), []
    real = data._summarise

    def gated(*args):
        calls.append(threading.current_thread().name)
        gate.wait(DEADLINE)
        return real(*args)

    monkeypatch.setattr(summaries, "BACKGROUND_BYTES", 0)
    monkeypatch.setattr(data, "_summarise", gated)
    yield gate, calls
    gate.set()


def poll(check):
    deadline = time.monotonic() + DEADLINE
    while not (found := check()):
        assert time.monotonic() < deadline, "not done by the deadline"
        time.sleep(0.02)
    return found


def test_a_large_run_is_pending_at_once_then_flagged_made_once_across_sessions(
        tmp_path, slow_diagnosis):
    gate, calls = slow_diagnosis
    info = own_loop_run(tmp_path)
    assert data.run_summary(info, wait=False) is data.PENDING
    assert data.run_summary(info, wait=False) is data.PENDING  # another session asks too
    poll(lambda: calls)
    assert len(calls) == 1
    info = grow(info)  # a live run: at most one job a run, the new state's after it
    assert data.run_summary(info, wait=False) is data.PENDING and len(calls) == 1
    gate.set()
    done = poll(lambda: (s := data.run_summary(info, wait=False)) is not data.PENDING and s)
    th = data.thresholds_for({"patience": None, "thresholds": {}})
    direct = data.findings_for(tracking.read_history(info.path), None, th, info.path)
    assert done["flags"] == tuple((f.kind, f.severity) for f in direct)
    assert "overfitting" in dict(done["flags"]) and done["source"] == "metrics"
    assert len(calls) == 2 and all(c.startswith("curvewatch-summary") for c in calls)
    assert (info.path / summaries.SUMMARY_NAME).exists()


def flags_cell(at: AppTest, run_id: str) -> str:
    table = at.dataframe[0].value.set_index("id")
    return str(table.loc[run_id, "flags"])


def test_the_runs_page_renders_a_large_run_without_waiting_for_its_diagnosis(
        tmp_path, monkeypatch, slow_diagnosis):
    gate, calls = slow_diagnosis
    info = own_loop_run(tmp_path)
    monkeypatch.setenv("CURVEWATCH_RUNS", str(tmp_path))
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=DEADLINE).run()
    assert not at.exception
    assert flags_cell(at, info.id) == "diagnosing…"
    assert calls and all(name.startswith("curvewatch-summary") for name in calls)
    gate.set()
    poll(lambda: "overfitting" in flags_cell(at.run(), info.id))
    assert not at.exception
