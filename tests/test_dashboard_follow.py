"""Pages that follow the state an action started (issue 16 point 7) and offer only the axes a
run has (point 1), as AppTest sees them; tests/test_browser_state.py drives the same in
Chromium."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from curvewatch import tracking
from curvewatch.dashboard import state

VIEWS = "../curvewatch/dashboard/views"


def _page(name: str, root, monkeypatch, **query) -> AppTest:
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    at = AppTest.from_file(f"{VIEWS}/{name}.py", default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def _badges(at: AppTest) -> str:
    return " ".join(str(m.value) for m in at.markdown)


def test_an_own_loop_run_without_steps_offers_no_step_axis(tmp_path, monkeypatch):
    run = tracking.Run.create(tmp_path, name="own", config={}, epochs=3, heartbeat_seconds=0)
    for e in (1, 2, 3):
        run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=1.1 / e)
    run.finish("completed")
    at = _page("run", tmp_path, monkeypatch, run=run.id, x="step")
    assert not at.exception
    assert at.radio(key=state.RUN_X).options == ["epoch", "time"]
    assert at.radio(key=state.RUN_X).value == "epoch"


def test_iterations_per_epoch_give_the_run_page_a_step_axis(tmp_path, monkeypatch):
    run = tracking.Run.create(tmp_path, name="own", config={}, epochs=3, heartbeat_seconds=0,
                              data={"steps_per_epoch": 5})
    for e in (1, 2, 3):
        run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=1.1 / e)
    run.finish("completed")
    at = _page("run", tmp_path, monkeypatch, run=run.id)
    assert at.radio(key=state.RUN_X).options == ["epoch", "step", "time"]
    at.radio(key=state.RUN_X).set_value("step").run()
    assert not at.exception


def test_after_stop_the_run_page_follows_the_run_until_it_has_stopped(tmp_path, monkeypatch):
    # a run trained by this process: `trainer stop` (a real process) writes its STOP file
    run = tracking.Run.create(tmp_path, name="loop", config={}, epochs=10, heartbeat_seconds=0)
    run.log_epoch(epoch=1, train_loss=1.0, val_loss=1.0)
    at = _page("run", tmp_path, monkeypatch, run=run.id)
    assert "running" in _badges(at) and not at.button(key="run-stop").disabled
    at.button(key="run-stop").click().run()
    assert not at.exception and (run.path / "STOP").exists()
    assert f"asked {run.id} to stop" in " ".join(str(s.value) for s in at.success)
    assert "the page follows" in " ".join(str(c.value) for c in at.caption)
    assert at.button(key="run-stop").disabled and at.button(key="run-resume").disabled
    at.run()  # a tick before the run has stopped: still waiting
    assert "running" in _badges(at) and at.button(key="run-stop").disabled
    run.finish("stopped")
    at.run()  # the next tick sees it: the page redraws as stopped, Resume on offer
    assert not at.exception
    assert "stopped" in _badges(at) and "the page follows" not in \
        " ".join(str(c.value) for c in at.caption)
    assert at.button(key="run-stop").disabled and not at.button(key="run-resume").disabled


def test_after_stop_group_the_group_page_follows_the_group(tmp_path, monkeypatch):
    # a group whose runner is this process, with one member training here
    from curvewatch.tracking.groups import GroupWriter
    g = GroupWriter.create(tmp_path, name="grp", method="repeat", validation="holdout",
                           members=[{"index": 0, "name": "grp-0"}])
    run = tracking.Run.create(tmp_path, name="grp-0", config={}, epochs=5, group=g.id,
                              heartbeat_seconds=0)
    run.log_epoch(epoch=1, train_loss=1.0, val_loss=1.0)
    g.update_member(0, state="running", run_id=run.id)
    at = _page("group", tmp_path, monkeypatch, group=g.id)
    assert not at.exception and at.button(key=state.GROUP_RESUME).disabled
    at.button(key=state.GROUP_STOP).click().run()
    assert not at.exception and (run.path / "STOP").exists()
    said = " ".join(str(s.value) for s in at.success)
    assert f"asked group {g.id} and 1 running members to stop" in said
    assert at.button(key=state.GROUP_STOP).disabled  # while the page waits for the change
    run.finish("stopped")
    g.update_member(0, state="stopped")
    g.finish("stopped", aggregate=None, stop_reason="stop requested")
    at.run()
    assert not at.exception
    assert at.button(key=state.GROUP_STOP).disabled
    assert not at.button(key=state.GROUP_RESUME).disabled
    assert "the page follows" not in " ".join(str(c.value) for c in at.caption)
