"""AppTest per page against fixture run folders (writer runs + real short trainings).

Each page file runs on its own (`AppTest.from_file("curvewatch/dashboard/views/<page>.py")`); app.py
runs the default page. Widgets are found by key, charts read back from their plotly spec."""
import base64
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from curvewatch.dashboard import tables
from curvewatch.dashboard.actions import SHELL_TRAINER

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard_fixtures as dfx  # noqa: E402

# the fixture runs are real trainings, built once per worker: one worker takes both files
pytestmark = pytest.mark.xdist_group("fixture_runs")

ROOT = dfx.ROOT
VIEWS = ROOT / "curvewatch" / "dashboard" / "views"
TIMEOUT = 60


@pytest.fixture(scope="module")
def fx():
    return dfx.fixture_runs(real=True)


@pytest.fixture
def runs_env(fx, monkeypatch):
    monkeypatch.setenv("CURVEWATCH_RUNS", str(fx.root))
    monkeypatch.chdir(ROOT)
    return fx


def page(name: str, **query) -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def chart(at: AppTest, key_part: str) -> dict:
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        if key_part in el.proto.id or key_part in json.dumps(spec.get("layout", {}).get("title")):
            return spec
    raise AssertionError(f"no chart {key_part!r}")


def arr(v) -> np.ndarray:
    """A plotly JSON array: a list, or plotly 6's typed array {'dtype', 'bdata'}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.array([np.nan if x is None else x for x in v], dtype=float)


def frame_with(at: AppTest, *columns: str):
    """The first st.dataframe whose frame has all these columns (AppTest keeps no keys)."""
    for el in at.dataframe:
        if set(columns) <= set(el.value.columns):
            return el.value
    raise AssertionError(f"no dataframe with columns {columns}")


def shape_names(spec: dict) -> set:
    return {s.get("name") for s in spec["layout"].get("shapes", [])}


# ------------------------------------------------------------------ app / Runs
def test_app_entry_runs_the_runs_page_listing_every_run_with_its_state(runs_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "Runs"
    table = at.dataframe[0].value.set_index("id")
    fx = runs_env
    expected = {"healthy": "completed", "overfit": "early stopped", "diverged": "failed",
                "running": "running", "real_overfit": "early stopped",
                "real_healthy": "completed", "regression": "completed"}
    group_members = set(dfx.tracking.read_group(fx.root / fx.ids["real_group"]).run_ids)
    assert len(group_members) == 3 and group_members <= set(table.index)
    for role, state in expected.items():
        assert state in table.loc[fx.ids[role], "state"], role
    assert "unreadable" in table.loc[fx.broken, "state"]
    assert "run.json is unreadable" in table.loc[fx.broken, "problem"]
    # its missing numbers read as a dash, not as Streamlit's default word "None"
    assert pd.isna(table.loc[fx.broken, "best val loss"])
    assert at.dataframe[0].proto.placeholder == tables.MISSING
    assert fx.broken in texts(at.warning)
    assert "overfitting" in table.loc[fx.ids["overfit"], "flags"]
    assert table.loc[fx.ids["running"], "progress"] == 5  # whole percent
    assert at.toggle(key="runs-live").value is True  # a run is training: the table follows it


def test_runs_filters_by_state_and_text(runs_env):
    at = page("runs").run()
    at.multiselect(key="runs-state").set_value(["failed", "running"]).run()
    ids = set(at.dataframe[0].value["id"])
    assert ids == {runs_env.ids["diverged"], runs_env.ids["running"]}
    at.multiselect(key="runs-state").set_value([]).run()
    at.text_input(key="runs-text").set_value("seed1").run()
    assert list(at.dataframe[0].value["id"]) == [runs_env.ids["healthy_seed1"]]
    at.text_input(key="runs-text").set_value("").run()
    at.multiselect(key="runs-tags").set_value(["baseline"]).run()
    assert set(at.dataframe[0].value["id"]) == {runs_env.ids["healthy"],
                                                runs_env.ids["healthy_seed1"]}


def test_runs_selection_comes_from_and_goes_to_the_url(runs_env):
    """The selection is ticked in the table itself (no second picker) and kept in the URL."""
    a, b = runs_env.ids["healthy"], runs_env.ids["overfit"]
    at = page("runs", runs=f"{a},{b},not-a-run").run()
    assert not [w for w in at.multiselect if w.key == "runs-select"]
    assert at.query_params["runs"] == f"{a},{b}"  # the unknown id is dropped
    assert not at.button(key="runs-compare").disabled
    assert at.button(key="runs-open").disabled
    one = page("runs", runs=a).run()
    assert not one.button(key="runs-open").disabled and one.button(key="runs-compare").disabled


def test_empty_runs_dir_shows_how_to_start(monkeypatch):
    """With the command Launch names (one that works installed too), on every page."""
    monkeypatch.setenv("CURVEWATCH_RUNS", str(dfx.empty_runs_dir()))
    for name in ("runs", "run", "compare"):
        at = page(name).run()
        assert not at.exception, name
        assert f"{SHELL_TRAINER} demo" in texts(at.info) + texts(at.code), name
    at = page("group").run()
    assert f"{SHELL_TRAINER} sweep" in texts(at.code)
    at = page("runs").run()
    assert at.button(key="runs-demo").label == "Start the demo runs"
    assert f"{SHELL_TRAINER} import" in texts(at.code)  # bring TensorBoard runs over
    assert "python -m trainer " not in texts(at.code)


# ------------------------------------------------------------------ Run
def test_run_page_overfitting_run_shows_flag_on_curve_and_advice(runs_env):
    at = page("run", run=runs_env.ids["real_overfit"]).run()
    assert not at.exception
    assert at.title[0].value == "real-overfit"
    loss = chart(at, "run-chart-loss")
    assert {"flag-overfitting", "flag-best", "flag-stop"} <= shape_names(loss)
    assert [t["name"] for t in loss["data"]][:2] == ["train", "val"]
    cards = texts(at.warning) + texts(at.error) + texts(at.info)
    assert "Overfitting" in cards and "overfitting" in cards
    assert "What to try" in texts(at.markdown)
    assert "weight decay" in texts(at.markdown).lower() or "checkpoint" in texts(at.markdown)
    for key in ("run-chart-acc", "run-chart-grad", "run-chart-lr", "run-chart-layers"):
        chart(at, key)
    assert chart(at, "run-chart-grad")["layout"]["yaxis"]["type"] == "log"
    metric_labels = [m.label for m in at.metric]
    assert metric_labels[:4] == ["Epoch", "Best val loss", "Learning rate", "Grad norm"]


def test_run_page_says_what_its_config_heatmap_and_evidence_figures_mean(runs_env):
    """For a newcomer: an unset option reads "not set" (never Python's None), the per-layer
    heatmap says what a cell is, and a finding's evidence is a table of plain meanings."""
    at = page("run", run=runs_env.ids["real_overfit"]).run()
    assert not at.exception
    config = frame_with(at, "option", "value")
    values = dict(zip(config["option"], config["value"], strict=True))
    assert values["target"] == "not set" and "None" not in set(config["value"])
    assert any("gradient L2 norm" in c.value and "log10" in c.value for c in at.caption)
    evidence = next(t.value for t in at.table if "meaning" in t.value.columns)
    assert "rise_needed" in evidence.index and "sigma" in evidence.index
    assert evidence["meaning"].str.len().min() > 0  # every figure of the finding explained


def test_run_page_diverged_run_shows_error_divergence_and_nan_gap(runs_env):
    at = page("run", run=runs_env.ids["diverged"]).run()
    assert not at.exception
    assert "loss is NaN" in texts(at.code)
    assert "Divergence" in texts(at.error)
    loss = chart(at, "run-chart-loss")
    assert "flag-divergence" in shape_names(loss)
    y = arr(loss["data"][0]["y"])
    assert len(y) == 14 and np.isnan(y[-1])  # NaN drawn as a gap, not dropped


def test_run_page_regression_run_draws_r2(runs_env):
    at = page("run", run=runs_env.ids["regression"]).run()
    assert not at.exception
    assert chart(at, "run-chart-r2")["layout"]["title"]["text"] == "R²"


def test_run_page_unknown_or_traversal_id_falls_back_with_a_warning(runs_env):
    for bad in ("../../etc", "no-such-run", runs_env.broken):
        at = page("run", run=bad).run()
        assert not at.exception, bad
        if bad == runs_env.broken:
            assert "cannot be read" in texts(at.error)
        else:
            assert "There is no run" in texts(at.warning)


def test_run_page_running_run_is_live_and_can_be_stopped(runs_env):
    rid = runs_env.ids["running"]
    at = page("run", run=rid).run()
    assert not at.exception
    assert at.toggle(key="run-live").value is True
    assert at.button(key="run-delete").disabled
    at.button(key="run-stop").click().run()
    assert (runs_env.root / rid / "STOP").exists()
    assert "asked" in texts(at.success)
    (runs_env.root / rid / "STOP").unlink()


def test_run_page_clone_prefills_launch(runs_env):
    at = page("run", run=runs_env.ids["real_overfit"]).run()
    at.button(key="run-clone").click().run()
    prefill = at.session_state["launch-prefill"]
    assert prefill["config"]["hidden"] == [512, 512] and prefill["name"] == "real-overfit-clone"
    la = page("launch")
    la.session_state["launch-prefill"] = prefill
    la.run()
    assert not la.exception
    assert la.text_input(key="launch-hidden").value == "512,512"
    assert la.text_input(key="launch-train-size").value == "300"
    assert la.multiselect(key="launch-early-stop").value == ["overfitting"]
    assert la.text_input(key="launch-name").value == "real-overfit-clone"


def test_run_page_delete_needs_confirmation_and_removes_only_that_folder(runs_env):
    rid = dfx._write(runs_env.root, "to-delete", 3, dfx.healthy(3))
    at = page("run", run=rid).run()
    assert at.button(key="run-delete").disabled
    at.checkbox(key="run-delete-confirm").check().run()
    at.button(key="run-delete").click().run()
    assert not (runs_env.root / rid).exists()
    assert (runs_env.root / runs_env.ids["healthy"]).exists()


def test_run_page_download_csv(runs_env):
    at = page("run", run=runs_env.ids["healthy"]).run()
    assert at.get("download_button")


def test_run_page_draws_the_per_step_log_when_there_is_one(runs_env):
    at = page("run", run=runs_env.ids["real_healthy"]).run()
    steps = chart(at, "run-chart-steps")
    assert steps["layout"]["xaxis"]["title"]["text"] == "step"
    assert len(arr(steps["data"][0]["x"])) == len(dfx.tracking.read_steps(
        runs_env.root / runs_env.ids["real_healthy"]))
    at = page("run", run=runs_env.ids["real_overfit"]).run()  # no steps.jsonl: no chart
    with pytest.raises(AssertionError):
        chart(at, "run-chart-steps")


# ------------------------------------------------------------------ Compare
def test_compare_shows_differing_hyperparameters_and_summary(runs_env):
    ids = [runs_env.ids["real_overfit"], runs_env.ids["real_healthy"]]
    at = page("compare", runs=",".join(ids)).run()
    assert not at.exception
    diff = at.dataframe[0].value
    for col in ("hidden", "label_noise", "train_size", "batch_size", "early_stop", "seed"):
        assert col in diff.columns, col
    assert "lr" not in diff.columns and "optimizer" not in diff.columns
    assert list(diff["hidden"]) == ["512,512", "128,64"]
    summary = at.dataframe[1].value
    assert list(summary["run"]) == ["real-overfit", "real-healthy"]
    assert "overfitting" in summary["flags"].iloc[0]
    overlay = chart(at, "compare-chart-overlay")
    colors = [t["line"]["color"] for t in overlay["data"] if t.get("showlegend") is not False]
    multiples = chart(at, "compare-chart-multiples")
    assert {t["line"]["color"] for t in multiples["data"]} == set(colors)


def test_compare_controls_metric_log_axis_and_groups(runs_env):
    ids = [runs_env.ids["healthy"], runs_env.ids["healthy_seed1"], runs_env.ids["overfit"]]
    at = page("compare", runs=",".join(ids), metric="val_acc").run()
    assert at.selectbox(key="compare-metric").value == "val_acc"
    at.toggle(key="logy").set_value(True).run()
    at.radio(key="x").set_value("step").run()
    overlay = chart(at, "compare-chart-overlay")
    assert overlay["layout"]["yaxis"]["type"] == "log"
    assert overlay["layout"]["xaxis"]["title"]["text"] == "step"
    groups = chart(at, "compare-chart-groups")
    assert any(t.get("name") == "seeds (n=2)" for t in groups["data"])


def test_compare_small_multiples_follow_a_metric_without_train_val_pairs(runs_env):
    """metric=grad_norm (no train_/val_ pair, like an imported custom/temperature): the small
    multiples draw grad_norm per run, not "Loss: train and val"."""
    ids = [runs_env.ids["healthy"], runs_env.ids["overfit"]]
    at = page("compare", runs=",".join(ids), metric="grad_norm").run()
    assert not at.exception
    multiples = chart(at, "compare-chart-multiples")
    assert multiples["layout"]["title"]["text"] == "Gradient norm"
    assert len(multiples["data"]) == 2
    h = dfx.tracking.read_history(runs_env.root / ids[1])
    assert arr(multiples["data"][1]["y"]) == pytest.approx(h["grad_norm"].to_numpy())


def test_compare_needs_two_runs(runs_env):
    at = page("compare", runs=runs_env.ids["healthy"]).run()
    assert "at least two runs" in texts(at.error)


def test_runs_lists_each_group_as_one_expandable_row(runs_env):
    gid, sid = runs_env.ids["real_group"], runs_env.ids["real_sweep"]
    at = page("runs").run()
    assert not at.exception
    labels = [e.label for e in at.expander]
    folds = next(lb for lb in labels if "real-folds" in lb)
    assert "kfold (kfold:3)" in folds and "3 ✓ completed" in folds and "100% done" in folds
    group = dfx.tracking.read_group(runs_env.root / gid)
    vl = group.aggregate.scores["val_loss"]
    acc = group.aggregate.scores["val_acc"]
    assert tables.md(f"val_loss {vl['mean']:.4f} ± {vl['std']:.4f}, val_acc {acc['mean']:.4f} "
                     f"± {acc['std']:.4f} (3 runs)") in folds
    sweep = next(lb for lb in labels if "real-sweep" in lb)
    assert "sweep" in sweep and "2 ✓ completed" in sweep
    # a sweep is judged per setting: its ranking, no mean ± sd across different settings
    assert "best lr=" in sweep and "±" not in sweep
    exp = next(e for e in at.expander if "real-folds" in e.label)
    members = exp.dataframe[0].value
    assert sorted(members["run id"]) == sorted(group.run_ids)
    assert list(members["open"]) == [f"/run?run={rid}" for rid in members["run id"]]
    assert f"/group?group={gid}" in texts(exp.markdown)
    assert sid in texts(next(e for e in at.expander if "real-sweep" in e.label).markdown)


def _member_best(root, group) -> tuple[list[float], list[float]]:
    """Each member's lowest val loss and its val accuracy there, from its own files."""
    losses, accs = [], []
    for rid in group.run_ids:
        h = dfx.tracking.read_history(root / rid)
        i = h["val_loss"].idxmin()
        losses.append(float(h.loc[i, "val_loss"]))
        accs.append(float(h.loc[i, "val_acc"]))
    return losses, accs


def test_group_page_kfold_mean_band_members_and_cross_validated_score(runs_env):
    gid = runs_env.ids["real_group"]
    at = page("group", group=gid).run()
    assert not at.exception
    group = dfx.tracking.read_group(runs_env.root / gid)
    assert at.header[0].value == "real-folds"
    losses, accs = _member_best(runs_env.root, group)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["best val loss, mean ± sd"] == \
        f"{np.mean(losses):.4f} ± {np.std(losses):.4f}"
    assert metrics["val_acc at the best epoch, mean ± sd"] == \
        f"{np.mean(accs):.4f} ± {np.std(accs):.4f}"
    assert metrics["members counted"] == "3 of 3"
    assert "Cross-validated score" in [s.value for s in at.subheader]
    spec = chart(at, "group-chart-val_loss")
    thin = [t for t in spec["data"] if t.get("legendgroup") == "members"]
    assert sorted(t["name"] for t in thin) == ["fold 1", "fold 2", "fold 3"]
    band = next(t for t in spec["data"] if t.get("fill") == "toself")
    mean = next(t for t in spec["data"] if str(t.get("name", "")).startswith("mean"))
    hists = [dfx.tracking.read_history(runs_env.root / rid) for rid in group.run_ids]
    expect = np.mean([h["val_loss"].to_numpy() for h in hists], axis=0)
    sd = np.std([h["val_loss"].to_numpy() for h in hists], axis=0)
    assert arr(mean["y"]) == pytest.approx(expect, rel=1e-6)
    assert arr(band["y"])[:4] == pytest.approx(expect + sd, rel=1e-6)
    for metric in ("train_loss", "val_acc", "train_acc"):
        chart(at, f"group-chart-{metric}")
    table = frame_with(at, "member", "best epoch")
    assert list(table["fold"]) == [1, 2, 3] and set(table["state"]) == {"✓ completed"}
    assert sorted(table["best val loss"]) == pytest.approx(sorted(losses))
    assert "flags" in table.columns and list(table["best epoch"]) == \
        [dfx.tracking.read_run(runs_env.root / rid).best_epoch for rid in table["run_id"]]
    at.button(key="group-compare").click().run()
    assert at.query_params["group"] == gid
    assert sorted(at.query_params["runs"].split(",")) == sorted(group.run_ids)


def test_group_page_trains_a_completed_group_longer_with_epochs_in_all(runs_env, monkeypatch):
    """Resume group on a completed group: refused as planned (nothing to resume), offered
    once Epochs in all is set, and then it asks the CLI for `resume GROUP --epochs N`."""
    from curvewatch.dashboard import actions
    gid = runs_env.ids["real_group"]
    real_resume, calls = actions.resume, []
    monkeypatch.setattr(actions, "resume", lambda root, rid, epochs=None: calls.append(
        (rid, epochs)) or actions.CliResult(False, None, "", "refused here", 2))
    at = page("group", group=gid).run()
    assert at.button(key="group-resume").disabled
    at.number_input(key="group-resume-epochs").set_value(60).run()
    assert not at.button(key="group-resume").disabled
    at.button(key="group-resume").click().run()
    assert not at.exception and calls == [(gid, 60)] and "refused here" in texts(at.error)
    # the CLI takes the epochs: each member already has 1, so this one is refused, by its rule
    res = real_resume(runs_env.root, gid, epochs=1)
    assert res.returncode == 2 and "with --epochs 1, only members" in res.message, res.stderr


def test_group_page_counts_stopped_and_never_started_members_as_such(monkeypatch):
    """A stopped group: one member completed, one stopped at 10/30, one never started. The
    page says 1 of 3 finished (not 3 of 3), its bar agrees, and no raw `not_started` shows;
    the Runs page's group row uses the same progress."""
    root = dfx.empty_runs_dir()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    g = dfx.tracking.GroupWriter.create(
        root, name="part", method="kfold", validation="kfold:3",
        members=[{"index": i, "name": f"part fold {i + 1}/3", "fold": i + 1} for i in range(3)])
    done = dfx._write(root, "part fold 1/3", 30, dfx.healthy(0), group=g.id)
    run = dfx.Run.create(root, name="part fold 2/3", config=dfx.base_config(epochs=30),
                         epochs=30, group=g.id, heartbeat_seconds=0)
    for e in range(1, 11):
        run.log_epoch(epoch=e, **dfx.healthy(1)(e))
    run.finish("stopped", stop_reason="stop requested")
    stopped = run.id
    g.update_member(0, state="completed", run_id=done)
    g.update_member(1, state="stopped", run_id=stopped)
    g.update_member(2, state="not_started")
    g.finish("stopped", aggregate=None, stop_reason="stop requested")
    at = page("group", group=g.id).run()
    assert not at.exception
    bar = at.get("progress")[0]
    assert bar.proto.text == "1 of 3 members finished · 1 stopped · 1 not started"
    assert bar.proto.value == int(100 * 40 / 61)  # 40 of 61 epochs (1 for the unstarted)
    shown = texts(at.markdown) + "".join(frame_with(at, "member", "state")["state"])
    assert "not_started" not in shown and "not started" in shown
    runs = page("runs").run()
    label = next(e.label for e in runs.expander if "part" in e.label)
    assert f"{40 / 61:.0%} done" in label and "not_started" not in label


def test_group_page_sweep_ranking_parallel_coordinates_and_launch_best(runs_env):
    sid = runs_env.ids["real_sweep"]
    at = page("group", group=sid).run()
    assert not at.exception
    group = dfx.tracking.read_group(runs_env.root / sid)
    assert group.method == "sweep" and len(group.run_ids) == 2
    ranking = frame_with(at, "rank", "val_loss_mean")
    best = {}
    for m in group.members:
        best[m.params["lr"]] = dfx.tracking.read_run(runs_env.root / m.run_id).best_val_loss
    order = sorted(best, key=best.get)
    assert list(ranking["params"]) == [f"lr={lr}" for lr in order]
    assert list(ranking["rank"]) == [1, 2]
    assert list(ranking["val_loss_mean"]) == pytest.approx([best[lr] for lr in order])
    pc = chart(at, "group-chart-parallel")["data"][0]
    assert pc["type"] == "parcoords"
    assert [d["label"] for d in pc["dimensions"]] == ["log10 lr", "val_loss (mean)"]
    at.button(key="group-launch-best").click().run()
    assert not at.exception
    prefill = at.session_state["launch-prefill"]
    assert prefill["config"]["lr"] == order[0] and prefill["config"]["hidden"] == [16]
    launch = page("launch")
    launch.session_state["launch-prefill"] = prefill
    launch.run()
    assert not launch.exception
    assert float(launch.session_state["launch-lr"]) == float(order[0])
    assert launch.session_state["launch-hidden"] == "16"
    assert "the best setting of sweep" in texts(launch.info)


def test_group_page_unknown_group_warns_and_shows_the_newest(runs_env):
    at = page("group", group="../x").run()
    assert not at.exception
    assert "There is no run group" in texts(at.warning)


def test_compare_opens_a_group_as_its_members_and_mean(runs_env):
    gid = runs_env.ids["real_group"]
    cmp_ = page("compare", group=gid).run()
    assert not cmp_.exception
    assert "Group real-folds" in [s.value for s in cmp_.subheader]
    members = list(dfx.tracking.read_group(runs_env.root / gid).run_ids)
    assert sorted(cmp_.multiselect(key="compare-runs").value) == sorted(members)
    labels = [m.label for m in cmp_.metric]
    assert "val_loss (best epoch), mean ± sd" in labels
    chart(cmp_, "compare-chart-group-aggregate")
    run_page = page("run", run=members[0]).run()
    assert not run_page.exception


def test_compare_unknown_group_warns(runs_env):
    at = page("compare", group="../x").run()
    assert "There is no run group" in texts(at.warning)


# ------------------------------------------------------------------ Launch
def test_launch_rejects_bad_input_with_the_clis_message(runs_env):
    cli = dfx.trainer("run", "--runs-dir", str(runs_env.root), "--lr", "abc")
    assert cli.returncode == 2
    at = page("launch").run()
    at.text_input(key="launch-lr").set_value("abc")
    at.button(key="launch-submit").click().run()
    assert texts(at.error) == cli.stderr.strip()
    at.text_input(key="launch-lr").set_value("0.001")
    at.text_input(key="launch-warmup-epochs").set_value("50")
    at.button(key="launch-submit").click().run()
    assert "warmup_epochs must be >= 0 and < epochs (30)" in texts(at.error)


def test_launch_caption_and_shell_expander_name_one_command_that_works_when_installed(
        runs_env, tmp_path):
    """The caption and "The same run from a shell" name the same command, with the tags the
    form sends, and that command runs outside the checkout (`python -m trainer` would not)."""
    at = page("launch").run()
    at.text_input(key="launch-tags").set_value("first, second")
    at.text_input(key="launch-lr").set_value("abc")  # a form applies on submit: refused here
    at.button(key="launch-submit").click().run()
    assert "lr" in texts(at.error)
    command = re.search(r"Starts `(.+?) --detach`", texts(at.caption)).group(1)
    shell = at.expander[0].code[0].value
    assert shell.startswith(f"{command} --detach --runs-dir {runs_env.root}")
    assert "--tag first --tag second" in shell
    python, *module = shlex.split(command.removesuffix(" run"))
    assert python == "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, *module, "run", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_launch_shows_the_clis_own_rejection(runs_env, tmp_path, monkeypatch):
    # a CSV the form may use (under the data root) that passes its pre-validation, rejected by
    # the CLI when it loads the data: the target column is not in it
    monkeypatch.setenv("CURVEWATCH_DATA_ROOT", str(tmp_path))
    (tmp_path / "no-target.csv").write_text("a,b\n1,2\n3,4\n")
    at = page("launch")
    at.session_state["launch-dataset"] = f"csv:{tmp_path / 'no-target.csv'}"  # a typed option
    at.run()
    at.text_input(key="launch-target").set_value("y")
    at.button(key="launch-submit").click().run()
    assert f"{SHELL_TRAINER} run: error:" in texts(at.error)
    assert "'y'" in texts(at.error), texts(at.error)


@pytest.mark.slow
def test_launch_starts_a_real_run_and_opens_it(runs_env):
    before = {p.name for p in runs_env.root.iterdir()}
    at = page("launch").run()
    at.text_input(key="launch-name").set_value("from-the-form")
    at.text_input(key="launch-epochs").set_value("2")
    at.text_input(key="launch-hidden").set_value("16")
    at.text_input(key="launch-threads").set_value("1")
    at.button(key="launch-submit").click().run()
    assert not at.exception
    new = {p.name for p in runs_env.root.iterdir()} - before
    assert len(new) == 1
    rid = new.pop()
    assert at.session_state["launch-result"] == rid
    assert at.query_params["run"] == rid
    info = dfx.tracking.read_run(runs_env.root / rid)
    assert info.name == "from-the-form" and info.config["hidden"] == [16]
    dfx.wait_for(lambda: dfx.tracking.read_run(runs_env.root / rid).state != "running",
                 timeout=120, every=0.2, what="the launched run to finish")
    assert dfx.tracking.read_run(runs_env.root / rid).state == "completed"


@pytest.mark.slow
def test_empty_runs_dir_demo_button_starts_the_three_demo_runs_paced_to_be_watched(
        monkeypatch):
    from curvewatch.trainer.demo import DEMO_RUNS, DEMO_SECONDS, demo_epochs
    root = dfx.empty_runs_dir()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    at = page("runs").run()
    try:
        at.button(key="runs-demo").click().run()
        assert not at.exception
        runs = dfx.tracking.list_runs(root)
        names = sorted(r.name for r in runs)
        assert names == sorted(DEMO_RUNS)
        for r in runs:  # each lasts about DEMO_SECONDS, so its curves can be watched filling
            paced = r.config["min_epoch_seconds"] * demo_epochs(DEMO_RUNS[r.name])
            assert paced == pytest.approx(DEMO_SECONDS, rel=1e-3), r.name
        listed = page("runs").run().dataframe[0].value
        assert sorted(listed["name"]) == names
    finally:
        for r in dfx.tracking.list_runs(root):
            dfx.trainer("stop", r.id, "--runs-dir", str(root))
        dfx.wait_for(lambda: all(r.state != "running" for r in dfx.tracking.list_runs(root)),
                     timeout=120, every=0.2, what="the demo runs to stop")


@pytest.mark.slow
def test_launch_repeat_starts_a_group_and_opens_it(runs_env):
    at = page("launch").run()
    at.text_input(key="launch-name").set_value("seeds-from-form")
    at.text_input(key="launch-epochs").set_value("1")
    at.text_input(key="launch-hidden").set_value("8")
    at.text_input(key="launch-repeat").set_value("2")
    at.text_input(key="launch-threads").set_value("1")
    at.button(key="launch-submit").click().run()
    assert not at.exception, texts(at.error)
    gid = at.session_state["launch-result"]
    assert at.query_params["group"] == gid
    group_dir = runs_env.root / gid
    assert dfx.tracking.is_group_dir(group_dir)
    dfx.wait_for(lambda: dfx.tracking.read_group(group_dir, curves=False).state != "running",
                 timeout=120, every=0.2, what="the launched group to finish")
    assert dfx.tracking.read_group(group_dir).method == "repeat"


@pytest.mark.slow
def test_run_page_resumes_a_stopped_run_in_the_background(monkeypatch):
    root = dfx.empty_runs_dir()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    rid = dfx.started_id(dfx.trainer("run", "--runs-dir", str(root), "--dataset", "digits",
                                     "--hidden", "16", "--epochs", "40", "--threads", "1",
                                     "--min-epoch-seconds", "0.1",  # seconds, little CPU
                                     "--detach", "--name", "to-resume"))
    dfx.wait_for(lambda: dfx.tracking.read_run(root / rid).epoch >= 2, timeout=120, every=0.1,
                 what="two epochs")
    dfx.tracking.request_stop(root / rid)
    dfx.wait_for(lambda: dfx.tracking.read_run(root / rid).state == "stopped", timeout=120,
                 every=0.1, what="the run to stop")
    at = page("run", run=rid).run()
    assert at.button(key="run-stop").disabled and not at.button(key="run-resume").disabled
    at.button(key="run-resume").click().run()
    assert not at.exception and f"resuming {rid}" in texts(at.success)
    dfx.wait_for(lambda: dfx.tracking.read_run(root / rid).state == "completed", timeout=180,
                 every=0.2, what="the resumed run to finish")
    assert dfx.tracking.read_history(root / rid)["epoch"].tolist() == list(range(1, 41))
    done = page("run", run=rid).run()
    assert done.button(key="run-resume").disabled  # a completed run has nothing to resume


@pytest.mark.slow
def test_group_page_stops_and_resumes_a_group(monkeypatch):
    root = dfx.empty_runs_dir()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    # paced (10 s a member, little CPU): the page's stop lands during the first member
    started = dfx.trainer("run", "--runs-dir", str(root), "--dataset", "digits", "--hidden",
                          "16", "--epochs", "40", "--min-epoch-seconds", "0.25", "--threads",
                          "1", "--validation", "kfold:2", "--parallel", "1", "--detach")
    gid = dfx.started_id(started)

    def first_member_training():
        g = dfx.tracking.read_group(root / gid, curves=False)
        return g.run_ids and dfx.tracking.read_run(root / g.run_ids[0]).epoch >= 2
    dfx.wait_for(first_member_training, timeout=120, every=0.1, what="the first member")
    at = page("group", group=gid).run()
    assert at.button(key="group-resume").disabled
    at.button(key="group-stop").click().run()
    assert not at.exception
    dfx.wait_for(lambda: dfx.tracking.read_group(root / gid, curves=False).state == "stopped",
                 timeout=120, every=0.2, what="the group to stop")
    at = page("group", group=gid).run()
    assert at.button(key="group-stop").disabled
    at.button(key="group-resume").click().run()
    assert not at.exception and "1 to resume, 1 to start" in texts(at.success)
    dfx.wait_for(lambda: dfx.tracking.read_group(root / gid, curves=False).state == "completed",
                 timeout=240, every=0.2, what="the resumed group to finish")
    group = dfx.tracking.read_group(root / gid)
    assert [m.state for m in group.members] == ["completed", "completed"]
    for rid in group.run_ids:
        assert dfx.tracking.read_history(root / rid)["epoch"].tolist() == list(range(1, 41))
