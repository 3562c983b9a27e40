"""Run page notes and tags, the Runs page search over config values and its table, the Launch
answer by its button (issue 16 points 9, 13 and 14), with AppTest over runs written by
tracking.Run (no training: fast)."""
import json
import os
import sys
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curvewatch.dashboard import tables
from curvewatch.tracking import Run, read_run
from curvewatch.tracking.annotate import annotate_run
from curvewatch.tracking.jsonio import read_json, update_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard_fixtures as dfx  # noqa: E402

VIEWS = dfx.ROOT / "curvewatch" / "dashboard" / "views"


def _run(root: Path, name: str, *, lr: float, state: str = "completed", notes: str = "",
         epochs: int = 4, **finish) -> str:
    run = Run.create(root, name=name, config=dfx.base_config(lr=lr, epochs=epochs),
                     epochs=epochs, tags=["base"], notes=notes, heartbeat_seconds=0)
    for e in range(1, epochs + 1):
        run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=1.1 / e, lr=lr)
    if state != "running":
        run.finish(state, **finish)
    else:
        run.close()
    return run.id


@pytest.fixture
def runs(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    ids = {"slow": _run(root, "slow", lr=0.001, notes="baseline"),
           "fast": _run(root, "fast", lr=0.01),
           "half": _run(root, "half", lr=0.1, state="stopped", epochs=4)}
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    monkeypatch.chdir(dfx.ROOT)
    return root, ids


def page(name: str, **query) -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def test_run_page_shows_the_runs_notes_and_saves_edited_notes_and_tags(runs):
    root, ids = runs
    rid = ids["slow"]
    at = page("run", run=rid).run()
    assert not at.exception
    assert "baseline" in [c.value for c in at.caption]
    assert at.text_area(key=f"run-notes-{rid}").value == "baseline"
    at.text_area(key=f"run-notes-{rid}").set_value("lr too small?\nsee the fast run")
    at.text_input(key=f"run-tags-{rid}").set_value("base, lr-sweep, base")
    at.button(key="run-save-notes").click().run()
    assert not at.exception and not at.error
    saved = read_json(root / rid / "run.json")
    assert saved["notes"] == "lr too small?\nsee the fast run"
    assert saved["tags"] == ["base", "lr-sweep"]
    assert saved["config"]["lr"] == 0.001  # the rest of run.json is kept
    assert "lr-sweep" in at.markdown[0].value  # the header shows the new tags


def test_run_page_refuses_a_tag_it_cannot_keep_naming_it(runs):
    root, ids = runs
    rid = ids["fast"]
    at = page("run", run=rid).run()
    at.text_input(key=f"run-tags-{rid}").set_value("ok, " + "x" * 70)
    at.button(key="run-save-notes").click().run()
    assert "Not saved" in at.error[0].value and "at most 64 characters" in at.error[0].value
    assert read_json(root / rid / "run.json")["tags"] == ["base"]


def test_a_note_saved_while_another_process_rewrites_run_json_waits_and_both_changes_stay(runs):
    """annotate_run and every other rewrite of run.json (a resume's epochs, Run.update_config)
    are read-modify-writes under one lock: a note saved in the middle of another rewrite waits
    for it, then applies to what it wrote, so neither change is lost."""
    root, ids = runs
    run_dir = root / ids["half"]
    saver = threading.Thread(target=annotate_run, args=(run_dir,), kwargs={"notes": "kept"})

    def resume_rewrite(info):  # what trainer.cli does for resume --epochs, lock held
        info["config"]["epochs"] = 40
        saver.start()
        dfx.wait_for(lambda: _waits_for_flock(run_dir), timeout=30, every=0.01,
                     what="the note's save to wait for the run folder's lock")
        assert saver.is_alive()
        return info

    update_json(run_dir / "run.json", resume_rewrite)
    saver.join(timeout=30)
    final = read_json(run_dir / "run.json")
    assert final["notes"] == "kept" and final["config"]["epochs"] == 40


def _waits_for_flock(folder: Path) -> bool:
    """This process has a flock request on `folder` blocked behind another (/proc/locks marks
    a waiter with '->'; a flock entry names the tgid and the folder's inode)."""
    me, inode = str(os.getpid()), str(os.stat(folder).st_ino)
    return any(f[1] == "->" and me in f and f[-3].rsplit(":", 1)[-1] == inode
               for f in (line.split() for line in Path("/proc/locks").read_text().splitlines()))


def test_runs_search_matches_config_values_and_notes(runs):
    root, ids = runs
    at = page("runs").run()
    at.text_input(key="runs-text").set_value("lr=0.01").run()
    assert list(at.dataframe[0].value["id"]) == [ids["fast"]]
    at.text_input(key="runs-text").set_value("lr=1e-1").run()  # the same number spelled apart
    assert list(at.dataframe[0].value["id"]) == [ids["half"]]
    at.text_input(key="runs-text").set_value("optimizer=adam baseline").run()
    assert list(at.dataframe[0].value["id"]) == [ids["slow"]]
    at.text_input(key="runs-text").set_value("lr=0.5").run()
    assert at.dataframe[0].value.empty


def test_runs_table_shows_whole_percent_in_a_neutral_bar_and_flags_by_severity(runs):
    root, ids = runs
    at = page("runs").run()
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[ids["fast"], "progress"] == 100 and table.loc[ids["half"], "progress"] == 100
    columns = json.loads(at.dataframe[0].proto.columns)
    progress = columns["progress"]["type_config"]
    assert progress["format"] == "%d%%" and progress["max_value"] == 100
    assert progress.get("color") not in (None, "red", "primary")  # a finished run is not red
    assert "✖ critical" in columns["flags"]["help"]
    # the columns a user scans (their fit in 1,400 px is measured in the browser test)
    shown = list(at.dataframe[0].proto.column_order)
    assert shown == ["open", "state", "progress", "flags", "best val loss", "best epoch",
                     "lr", "optimizer", "hidden"]
    assert columns["open"]["label"] == "run"  # the name, linking to the Run page
    assert table.loc[ids["fast"], "open"] == f"/run?run={ids['fast']}#fast"


def test_a_flags_cell_takes_the_colour_of_its_worst_severity():
    frame = tables.runs_frame([], {})
    frame.loc[0, ["id", "flags", "severity"]] = ["r", "⚠ overfitting · ✖ divergence",
                                                 "critical"]
    frame.loc[1, ["id", "flags", "severity"]] = ["s", "", None]
    html = tables.styled_runs(frame).to_html()
    assert html.count(f"color: {tables.SEVERITY_TEXT['critical']}") == 1
    assert tables.worst_severity([("plateau", "info"), ("overfitting", "warning")]) == "warning"


def test_trainer_run_notes_option_writes_the_notes_and_refuses_a_control_character(tmp_path):
    done = dfx.trainer("run", "--runs-dir", str(tmp_path), "--dataset", "blobs", "--epochs", "1",
                       "--hidden", "8", "--notes", "first try", "--name", "noted")
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert read_run(run_dir).notes == "first try"
    # a trainer's run has best.pt: the Run page offers it, read as a regular file
    from curvewatch.dashboard import data
    best = data.tracking.checkpoints.checkpoint_path(run_dir, "best.pt")
    assert data.read_best_checkpoint(run_dir) == best.read_bytes()
    bad = dfx.trainer("run", "--runs-dir", str(tmp_path), "--dataset", "blobs", "--epochs", "1",
                      "--notes", "a\x07b")
    assert bad.returncode == 2 and "notes must not contain control characters" in bad.stderr


def test_launch_answers_right_under_its_button_not_below_the_form(runs):
    at = page("launch").run()
    at.text_input(key="launch-lr").set_value("abc")
    at.button(key="launch-submit").click().run()
    form = at.get("form")[0]
    last_two = [child.type for child in form.children.values()][-2:]
    assert last_two == ["button", "error"], last_two  # the answer follows the Launch button
    assert "lr must be a number, got 'abc'" in form.error[0].value


def test_a_scripts_config_update_keeps_the_notes_edited_since(tmp_path):
    """Run.update_config (curvewatch.config) rewrites run.json from the file, under the same
    lock, not from the copy it held since creation: a note saved meanwhile stays."""
    run = Run.create(tmp_path, name="script", config={"lr": 0.1}, heartbeat_seconds=0)
    annotate_run(run.path, notes="compare with lr=0.01", tags=["sweep"])
    run.update_config({"batch_size": 32})
    saved = read_json(run.path / "run.json")
    assert saved["notes"] == "compare with lr=0.01" and saved["tags"] == ["sweep"]
    assert saved["config"] == {"lr": 0.1, "batch_size": 32}
    run.finish("completed")


def test_run_page_draws_every_logged_scalar_in_a_section_per_prefix_with_the_urls_view(
        tmp_path, monkeypatch):
    run = Run.create(tmp_path, name="own", config={"lr": 0.1}, epochs=3, heartbeat_seconds=0)
    for e in range(1, 4):
        run.log_epoch(epoch=e, train_loss=1 / e, val_loss=1.2 / e, train_acc=0.5, val_acc=0.4,
                      custom_temperature=300.0 + e, custom_pressure=2.0 / e, my_metric=e / 10)
    run.finish("completed")
    monkeypatch.setenv("CURVEWATCH_RUNS", str(tmp_path))
    monkeypatch.chdir(dfx.ROOT)
    at = page("run", run=run.id, logy="true", smoothing="0.5").run()
    assert not at.exception
    assert [h.value for h in at.subheader if h.value != "Diagnosis"] == ["custom",
                                                                         "Other scalars"]
    charts = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
              for c in at.get("plotly_chart")}
    assert {"custom_temperature", "custom_pressure", "my_metric", "Loss", "Accuracy"} <= set(
        charts)
    assert charts["Loss"]["layout"]["yaxis"]["type"] == "log"  # ?logy=true
    assert charts["my_metric"]["layout"]["yaxis"]["type"] == "log"
    assert charts["Accuracy"]["layout"]["yaxis"]["type"] == "linear"  # a bounded score
    assert at.slider(key="smoothing").value == 0.5
    assert "val_loss" not in charts and "train_acc" not in charts  # drawn once, as pairs


def test_scalar_sections_group_by_prefix_as_tensorboard_does():
    import pandas as pd

    from curvewatch.dashboard import figures
    h = pd.DataFrame({"epoch": [1], "step": [5], "time": [0.0], "train_loss": [1.0],
                      "val_loss": [1.0], "grad_norm": [1.0], "lr": [0.1],
                      "custom_temperature": [1.0], "custom_pressure": [1.0],
                      "eval/bleu": [0.3], "my_metric": [0.1], "note": ["text"]})
    assert figures.scalar_sections(h) == {"custom": ["custom_temperature", "custom_pressure"],
                                          "eval": ["eval/bleu"], "other": ["my_metric"]}


def _in_page_order(node) -> list:
    out = []
    for child in getattr(node, "children", {}).values():
        out.append(child)
        out.extend(_in_page_order(child))
    return out


def test_run_page_actions_sit_under_the_title_before_any_chart(runs):
    root, ids = runs
    at = page("run", run=ids["half"]).run()  # a stopped run: Resume applies
    keys = [getattr(e, "key", None) or e.type for e in _in_page_order(at.main)]
    actions = ["run-stop", "run-resume", "run-clone", "run-download-best", "run-download",
               "run-delete"]
    assert [k for k in keys if k in actions] == actions
    first_metric = keys.index("metric")
    assert keys.index("title") < keys.index("run-stop") < keys.index("run-delete") < first_metric
    assert "Actions" not in [t.label for t in at.tabs]
    assert at.button(key="run-stop").disabled and not at.button(key="run-resume").disabled
    best = at.get("download_button")[0]
    assert best.proto.label == "best.pt" and best.proto.disabled  # none: nothing to download
