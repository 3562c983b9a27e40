"""Axes and bands that tell the truth (issue 16 points 1, 3, 17): a run without step counts
has no step axis, Compare says which runs it leaves out, only a recorded group gets a band
(per setting for a sweep) and the band honours x = step; charts label 1e-4 with an exponent
and the parallel-coordinates plot rounds its labels and keeps them off its title."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from curvewatch import tracking
from curvewatch.dashboard import figures

PAGES = "../curvewatch/dashboard/views"


def _history(epochs: int, steps_per_epoch: int | None = None, offset: float = 0.0):
    h = pd.DataFrame({"epoch": np.arange(1, epochs + 1),
                      "val_loss": 1.0 / np.arange(1, epochs + 1) + offset,
                      "train_loss": 0.9 / np.arange(1, epochs + 1) + offset})
    if steps_per_epoch:
        h["step"] = h["epoch"] * steps_per_epoch
    return h


def test_a_run_without_step_counts_has_no_step_axis():
    own = _history(4)
    assert figures.axes_of(own) == ["epoch"]
    with pytest.raises(ValueError, match="no step axis"):
        figures.x_values(own, "step")
    logged = _history(4, steps_per_epoch=10)
    assert figures.axes_of(logged) == ["epoch", "step"]
    assert list(figures.x_values(logged, "step")) == [10, 20, 30, 40]


def test_iterations_per_epoch_give_a_run_its_step_axis():
    own = _history(3)
    derived = figures.with_steps(own, 5)
    assert list(derived["step"]) == [5, 10, 15] and "step" not in own.columns
    logged = _history(3, steps_per_epoch=7)
    assert list(figures.with_steps(logged, 5)["step"]) == [7, 14, 21]  # its own counts win
    for unknown in (None, 0, True, "5"):
        assert "step" not in figures.with_steps(own, unknown).columns


def test_the_group_band_sits_at_the_members_mean_step():
    a, b = _history(3, 10), _history(3, 12, offset=0.2)
    fig = figures.group_band_figure({"folds": [a, b]}, "val_loss", x="step")
    band, mean = fig.data
    assert list(mean.x) == [11, 22, 33] and fig.layout.xaxis.title.text == "step"
    assert list(mean.y) == pytest.approx(list((a["val_loss"] + b["val_loss"]) / 2))
    assert band.fill == "toself" and mean.name == "folds (n=2)"


def test_a_sweep_is_drawn_per_setting_with_a_band_only_over_several_seeds():
    fig = figures.setting_curves_figure(
        {"lr=0.01": {"seed 0": _history(3), "seed 1": _history(3, offset=0.2)},
         "lr=0.001": {"seed 0": _history(3, offset=0.5)}}, "val_loss")
    names = [t.name for t in fig.data]
    assert "lr=0.01 (mean of 2)" in names and "lr=0.001 · seed 0" in names
    assert [t.name for t in fig.data if t.fill == "toself"] == ["±1 sd"]
    assert not any("lr=0.001 (mean" in n for n in names)  # one run: no mean, no band


def test_small_values_get_an_exponent_not_an_si_prefix():
    h = _history(3).assign(lr=1e-4)
    assert figures.lr_figure(h).layout.yaxis.exponentformat == "power"
    curves = pd.DataFrame({"epoch": [1, 2], "n": [2, 2], "lr_mean": [1e-4, 1e-4],
                           "lr_std": [0.0, 0.0]})
    assert figures.group_metric_figure(curves, "lr", log_y=True).layout.yaxis.exponentformat \
        == "power"


def test_parallel_coordinates_round_their_labels_and_keep_them_off_the_title():
    ranking = pd.DataFrame({"params": [{"lr": 0.01, "dropout": 0.115324},
                                       {"lr": 0.001, "dropout": 0.2}],
                            "val_loss_mean": [0.215324, 0.3]})
    pc = figures.parallel_coordinates_figure(ranking).data[0]
    assert pc.labelside == "bottom"
    dims = {d.label: d for d in pc.dimensions}
    assert dims["dropout"].tickformat == ".3~g" and dims["val_loss (mean)"].tickformat
    assert "ticktext" in dims["log10 lr"].to_plotly_json()


# ------------------------------------------------------------------ the Compare page
def _run(root, name, steps_per_epoch=None, group=None, epochs=4, logged_steps=True):
    run = tracking.Run.create(root, name=name, config={}, epochs=epochs, group=group,
                              data={"steps_per_epoch": steps_per_epoch} if steps_per_epoch
                              else {}, heartbeat_seconds=0)
    for e in range(1, epochs + 1):
        extra = {"step": 10 * e} if logged_steps else {}
        run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=1.1 / e, **extra)
    run.finish("completed")
    return run.id


def _compare(root, monkeypatch, ids, x="epoch"):
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    at = AppTest.from_file(f"{PAGES}/compare.py", default_timeout=60)
    at.query_params["runs"] = ",".join(ids)
    at.run()
    if x != "epoch":
        at.radio(key="x").set_value(x).run()
    assert not at.exception
    return at


def _chart(at, key):
    for el in at.get("plotly_chart"):
        if key in el.proto.id:
            return json.loads(el.proto.spec)
    return None


def test_compare_names_the_runs_it_cannot_draw_on_the_step_axis(tmp_path, monkeypatch):
    imported = _run(tmp_path, "imported")
    own = _run(tmp_path, "own-loop", logged_steps=False)
    derived = _run(tmp_path, "own-with-spe", steps_per_epoch=5, logged_steps=False)
    at = _compare(tmp_path, monkeypatch, [imported, own, derived], x="step")
    warning = " ".join(str(w.value) for w in at.warning)
    assert "Not drawn on the step axis" in warning and "own-loop" in warning
    assert "imported" not in warning and "own-with-spe" not in warning
    drawn = [t["name"] for t in _chart(at, "compare-chart-overlay")["data"]
             if t.get("showlegend") is not False]
    assert drawn == ["imported", "own-with-spe"]
    at.radio(key="x").set_value("epoch").run()
    assert not at.warning
    assert len(_chart(at, "compare-chart-overlay")["data"]) >= 3


def test_compare_bands_only_runs_of_one_recorded_group(tmp_path, monkeypatch):
    unrelated = [_run(tmp_path, f"demo-{i}", epochs=3 + i) for i in range(3)]
    at = _compare(tmp_path, monkeypatch, unrelated)
    assert _chart(at, "compare-chart-groups") is None
    assert "no group band" in " ".join(str(i.value) for i in at.info)
    seeds = [_run(tmp_path, f"seed-{i}", group="seeds") for i in range(2)]
    at = _compare(tmp_path, monkeypatch, [*seeds, unrelated[0]], x="step")
    bands = _chart(at, "compare-chart-groups")
    assert [t["name"] for t in bands["data"] if t.get("fill") != "toself"] == ["seeds (n=2)"]
    assert bands["layout"]["xaxis"]["title"]["text"] == "step"
    assert "demo-0" in " ".join(str(c.value) for c in at.caption)
