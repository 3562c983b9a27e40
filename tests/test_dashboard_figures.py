"""Pure parts of the dashboard: smoothing, downsampling, figure builders, tables, the Launch
form model and CLI argument building. No streamlit session, no files except tmp runs."""
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curvewatch.dashboard import evidence, figures, launch_form, tables  # noqa: E402
from curvewatch.dashboard.series import downsample_minmax, smooth_ema  # noqa: E402


# ------------------------------------------------------------------ smoothing (TensorBoard)
def test_smooth_ema_matches_tensorboard_values():
    np.testing.assert_allclose(smooth_ema([1, 0.5, 0], 0.6), [1, 0.6875, 0.33673469], rtol=1e-6)


def test_smooth_ema_passes_nan_and_inf_through_without_updating():
    out = smooth_ema([1, math.nan, math.inf, -math.inf, 0.5], 0.6)
    assert out[0] == 1 and math.isnan(out[1]) and out[2] == math.inf and out[3] == -math.inf
    assert out[4] == pytest.approx(0.6875)


@pytest.mark.parametrize("w", [math.nan, -1, math.inf, -math.inf, 0])
def test_smooth_ema_bad_or_zero_weight_gives_input_back(w):
    np.testing.assert_allclose(smooth_ema([1, 0.5, 0], w), [1, 0.5, 0])


def test_smooth_ema_weight_above_one_clamps_to_one_zeros():
    np.testing.assert_allclose(smooth_ema([1, 0.5, 0], 2), [0, 0, 0])


def test_smooth_ema_constant_series_untouched_and_empty_ok():
    np.testing.assert_array_equal(smooth_ema([0.3] * 5, 0.9), [0.3] * 5)
    assert smooth_ema([], 0.6).size == 0


# ------------------------------------------------------------------ downsampling / webgl
def test_downsample_keeps_extremes_endpoints_and_nonfinite():
    x = np.arange(100_000, dtype=float)
    y = np.sin(x / 500)
    y[12_345] = 50.0
    y[54_321] = -50.0
    y[77_777] = math.nan
    xs, ys = downsample_minmax(x, y, 2_000)
    assert len(xs) <= 2_100
    assert 50.0 in ys and -50.0 in ys
    assert 77_777 in xs and xs[0] == 0 and xs[-1] == 99_999


def test_trace_type_follows_the_drawn_length_not_the_history_length():
    n = 100_000
    hist = pd.DataFrame({"epoch": np.arange(1, n + 1), "train_loss": np.linspace(2, 0.1, n),
                         "val_loss": np.linspace(2, 0.2, n)})
    fig = figures.learning_curve_figure(hist, metric="loss")
    assert all(len(t.x) <= figures.MAX_POINTS + 2 for t in fig.data)
    assert all(type(t) is go.Scatter for t in fig.data), "a downsampled trace is SVG"
    short = figures.learning_curve_figure(hist.head(100), metric="loss")
    assert all(type(t) is go.Scatter for t in short.data)
    drawn = figures.WEBGL_POINTS + 1
    x = np.arange(drawn, dtype=float)
    long = figures.line_trace(x, np.sin(x), name="long", color="#000000", max_points=drawn)
    assert isinstance(long, go.Scattergl) and len(long.x) == drawn, \
        "a trace drawn with more than WEBGL_POINTS points is WebGL"


# ------------------------------------------------------------------ figures
def _hist(n=30):
    e = np.arange(1, n + 1)
    return pd.DataFrame({"epoch": e, "step": e * 10, "time": 1000.0 + 2 * e,
                         "train_loss": 2 * np.exp(-e / 5),
                         "val_loss": 0.4 + 0.01 * (e - 10) ** 2 / 10,
                         "train_acc": 1 - np.exp(-e / 5), "val_acc": 0.9 - 0.001 * e,
                         "grad_norm": 0.5 * np.ones(n), "grad_norm_max": np.ones(n),
                         "lr": 1e-3 * np.ones(n)})


FINDINGS = [
    {"kind": "overfitting", "severity": "warning", "start_epoch": 10, "end_epoch": None,
     "metric": "val_loss", "message": "Validation loss has risen since epoch 10.",
     "advice": "Add weight decay.", "evidence": {}},
    {"kind": "plateau", "severity": "info", "start_epoch": 3, "end_epoch": 8,
     "metric": "val_loss", "message": "Flat.", "advice": "Lower lr.", "evidence": {}},
    {"kind": "divergence", "severity": "critical", "start_epoch": 25, "end_epoch": None,
     "metric": "train_loss", "message": "NaN.", "advice": "Lower lr.", "evidence": {}},
]


def test_learning_curve_draws_train_val_and_flags():
    fig = figures.learning_curve_figure(_hist(), FINDINGS, metric="loss", best_epoch=10,
                                        stop_epoch=30, uirevision="r1-loss")
    names = [t.name for t in fig.data]
    assert names[:2] == ["train", "val"] and "flags" in names
    shapes = {s.name: s for s in fig.layout.shapes}
    assert shapes["flag-overfitting"].x0 == 10 and shapes["flag-overfitting"].x1 == 30
    assert shapes["flag-plateau"].x0 == 3 and shapes["flag-plateau"].x1 == 8
    assert {"flag-best", "flag-stop", "flag-divergence"} <= set(shapes)
    texts = [a.text for a in fig.layout.annotations]
    assert any(t.startswith("overfitting") for t in texts) and "best @ 10" in texts
    flags = next(t for t in fig.data if t.name == "flags")
    assert any("Validation loss has risen" in t for t in flags.text)
    assert fig.layout.uirevision == "r1-loss"


def test_learning_curve_smoothing_draws_faint_raw_behind():
    fig = figures.learning_curve_figure(_hist(), metric="loss", smoothing=0.6)
    raw = [t for t in fig.data if t.name.endswith("(raw)")]
    assert len(raw) == 2 and all(t.opacity < 1 and not t.showlegend for t in raw)
    smooth_val = next(t for t in fig.data if t.name == "val")
    np.testing.assert_allclose(smooth_val.y, smooth_ema(_hist()["val_loss"], 0.6))


def test_missing_column_raises_px_style_error_listing_columns():
    with pytest.raises(ValueError, match=r"'val_acc' is not the name of a column.*Expected one of"):
        figures.learning_curve_figure(_hist()[["epoch", "train_loss"]], metric="acc")
    with pytest.raises(ValueError, match="grad_norm"):
        figures.grad_norm_figure(_hist()[["epoch", "train_loss"]])


def test_x_axis_by_step_and_time_and_flags_where_their_epochs_lie():
    h = _hist()  # epoch e is at step 10e and 2(e - 1) seconds after the first record
    fig = figures.learning_curve_figure(h, FINDINGS, x="step", best_epoch=10, stop_epoch=30)
    assert list(fig.data[0].x[:2]) == [10, 20]
    shapes = {s.name: s for s in fig.layout.shapes}
    assert (shapes["flag-plateau"].x0, shapes["flag-plateau"].x1) == (30, 80)
    assert (shapes["flag-overfitting"].x0, shapes["flag-overfitting"].x1) == (100, 300)
    assert shapes["flag-best"].x0 == 100 and shapes["flag-stop"].x0 == 300
    flags = next(t for t in fig.data if t.name == "flags")
    assert 30 in flags.x and 250 in flags.x  # plateau and divergence markers
    fig = figures.learning_curve_figure(h, FINDINGS, x="time")
    assert fig.data[0].x[0] == 0 and fig.layout.xaxis.title.text == "wall time (s)"
    shapes = {s.name: s for s in fig.layout.shapes}
    assert (shapes["flag-plateau"].x0, shapes["flag-plateau"].x1) == (4, 14)
    assert shapes["flag-divergence"].x0 == 48


def test_a_flag_epoch_missing_from_the_history_is_placed_between_its_neighbours():
    h = _hist().drop(index=[4, 5])  # epochs 5 and 6 were never logged
    at = figures.epoch_to_x(h, "step")
    assert at(4) == 40 and at(5) == 50 and at(7) == 70


def test_nonfinite_values_become_gaps():
    h = _hist(5)
    h.loc[2, "val_loss"] = math.inf
    fig = figures.learning_curve_figure(h)
    assert math.isnan(fig.data[1].y[2])


def test_grad_norm_on_log_axis_and_heatmap_log_colour():
    fig = figures.grad_norm_figure(_hist())
    assert fig.layout.yaxis.type == "log" and [t.name for t in fig.data] == ["mean", "max"]
    layers = pd.DataFrame({"epoch": [1, 2], "a.weight": [1.0, 10.0], "b.weight": [0.01, 0.0]})
    hm = figures.layer_heatmap_figure(layers)
    z = np.asarray(hm.data[0].z, dtype=float)
    assert z[0, 1] == pytest.approx(1.0) and math.isnan(z[1, 1])
    assert list(hm.data[0].y) == ["a.weight", "b.weight"]


def test_compare_colours_consistent_and_multiples_one_panel_per_run():
    hs = {"r1": _hist(), "r2": _hist(20), "r3": _hist(10)}
    colors = figures.run_colors(list(hs))
    fig = figures.compare_figure(hs, "val_loss", colors=colors, labels={"r1": "one"})
    assert [t.line.color for t in fig.data] == [colors["r1"], colors["r2"], colors["r3"]]
    assert fig.data[0].name == "one"
    mult = figures.small_multiples_figure(hs, "loss", colors=colors, cols=2)
    assert len(mult.layout.annotations) == 3  # one title per panel
    assert {t.line.color for t in mult.data if t.xaxis == "x"} == {colors["r1"]}
    with pytest.raises(ValueError, match="nope"):
        figures.compare_figure(hs, "nope")


def test_small_multiples_draw_the_chosen_metric_not_loss():
    """A metric without train_/val_ pairs (an imported custom/temperature) is drawn itself,
    one line per panel, titled with its name; a paired metric keeps train and val."""
    hs = {r: _hist().assign(custom_temperature=[0.5 * i for i in range(len(_hist()))])
          for r in ("r1", "r2")}
    fig = figures.small_multiples_figure(hs, "custom_temperature")
    assert "Loss" not in fig.layout.title.text and "custom_temperature" in fig.layout.title.text
    assert len(fig.data) == 2
    assert list(fig.data[0].y) == list(hs["r1"]["custom_temperature"])
    acc = figures.small_multiples_figure(hs, "acc")
    assert acc.layout.title.text.startswith("Accuracy") and len(acc.data) == 4


def test_group_and_compare_charts_are_titled_in_words_not_column_names():
    """The Group and Compare pages title a chart as the Run page does ("Validation accuracy",
    not val_acc); the column name stays on the y axis, and a scalar of the user's own keeps
    its name."""
    h = _hist()
    curves = pd.DataFrame({"epoch": [1, 2], "val_acc_mean": [0.5, 0.6],
                           "val_acc_std": [0.1, 0.1], "n": [2, 2]})
    figs = {
        "group": figures.group_metric_figure(curves, "val_acc", {"m1": h}),
        "sweep": figures.setting_curves_figure({"lr=0.1": {"m1": h}}, "val_acc"),
        "compare": figures.compare_figure({"r1": h, "r2": h}, "val_acc"),
        "bands": figures.group_band_figure({"g": [h, h]}, "val_acc"),
        "aggregate": figures.aggregate_curve_figure(curves, "val_acc"),
    }
    for where, fig in figs.items():
        assert fig.layout.title.text.startswith("Validation accuracy"), where
        assert "val_acc" not in fig.layout.title.text, where
    assert figs["compare"].layout.yaxis.title.text == "val_acc"
    assert figures.group_metric_figure(curves.rename(columns=lambda c: c.replace(
        "val_acc", "train_loss")), "train_loss").layout.title.text == "Training loss"
    assert figures.small_multiples_figure({"r1": h}, "grad_norm").layout.title.text == \
        "Gradient norm"
    mine = h.assign(custom_temperature=1.0)
    assert figures.compare_figure({"r1": mine}, "custom_temperature").layout.title.text == \
        "custom_temperature"


def test_group_band_mean_and_spread():
    a, b = _hist(), _hist()
    b["val_loss"] = b["val_loss"] + 0.2
    fig = figures.group_band_figure({"g": [a, b]}, "val_loss")
    assert fig.data[0].fill == "toself" and fig.data[1].name == "g (n=2)"
    assert fig.data[1].y[0] == pytest.approx(a["val_loss"].iloc[0] + 0.1)


def test_group_band_is_tracking_aggregates_population_sd():
    """One band, one definition: Compare's group band is tracking.aggregate's curve_stats
    (ddof=0, as the group record and the Group page), not a second sample-sd copy."""
    from curvewatch.tracking.aggregate import curve_stats
    a, b, c = _hist(), _hist(), _hist()
    b["val_loss"] = b["val_loss"] + 0.2
    c["val_loss"] = c["val_loss"] + 0.7
    fig = figures.group_band_figure({"g": [a, b, c]}, "val_loss")
    stats = curve_stats({"a": a, "b": b, "c": c})
    n = len(a)
    upper = np.asarray(fig.data[0].y, dtype=float)[:n]
    np.testing.assert_allclose(upper, stats["val_loss_mean"] + stats["val_loss_std"])
    sd = np.std([a["val_loss"], b["val_loss"], c["val_loss"]], axis=0)  # ddof=0
    np.testing.assert_allclose(upper - np.asarray(fig.data[1].y, dtype=float), sd)
    assert not hasattr(figures, "aggregate_runs")


def test_metric_names():
    assert figures.metric_names(_hist()) == ["loss", "acc"]
    reg = pd.DataFrame(columns=["epoch", "train_loss", "val_r2", "train_r2", "val_loss"])
    assert figures.metric_names(reg) == ["loss", "r2"]


# ------------------------------------------------------------------ tables
class FakeRun:
    def __init__(self, id, name, state="completed", config=None, tags=(), status=None,
                 created_at=0.0, group=None):
        self.id, self.name, self.state, self.tags, self.group = id, name, state, tags, group
        self.config = config or {}
        self.status = status or {}
        self.data, self.model, self.created_at, self.problem = {}, {}, created_at, None
        self.epoch = self.status.get("epoch", 0)
        self.epochs = self.status.get("epochs")
        self.best_val_loss = self.status.get("best_val_loss")
        self.best_epoch = self.status.get("best_epoch")


def test_hparam_diff_shows_only_differing_keys():
    a = FakeRun("a", "A", config={"lr": 0.001, "hidden": [128, 64], "seed": 0, "dropout": 0.0})
    b = FakeRun("b", "B", config={"lr": 0.01, "hidden": [128, 64], "seed": 0, "dropout": 0.0,
                                  "train_size": None})
    diff = tables.hparam_diff([a, b])
    assert list(diff.columns) == ["run", "lr"]
    assert list(diff["lr"]) == ["0.001", "0.01"]


def test_filter_sort_and_runs_frame():
    runs = [FakeRun("r1", "alpha", "running", tags=("x",), created_at=1,
                    status={"epoch": 5, "epochs": 10, "best_val_loss": 0.5, "best_epoch": 4,
                            "started_at": 100.0, "latest": {"time": 110.0, "val_acc": 0.8}}),
            FakeRun("r2", "beta", "failed", created_at=2,
                    status={"epoch": 3, "epochs": 10, "best_val_loss": 0.3}),
            FakeRun("r3", "gamma", "completed", tags=("x", "y"), created_at=3)]
    assert [r.id for r in tables.filter_runs(runs, states=["running", "failed"])] == ["r1", "r2"]
    assert [r.id for r in tables.filter_runs(runs, text="GAM")] == ["r3"]
    assert [r.id for r in tables.filter_runs(runs, tags=["x", "y"])] == ["r3"]
    assert [r.id for r in tables.sort_runs(runs, "best val loss")] == ["r2", "r1", "r3"]
    assert [r.id for r in tables.sort_runs(runs)] == ["r3", "r2", "r1"]
    frame = tables.runs_frame(runs, {"r2": [("divergence", "critical")]})
    row = frame.set_index("id").loc["r1"]
    assert row["progress"] == 50 and row["epoch"] == "5/10" and row["eta"] == "10s"
    assert frame.set_index("id").loc["r2", "flags"] == "✖ divergence"
    assert frame.set_index("id").loc["r2", "severity"] == "critical"


def test_summary_row_best_epoch_and_gap():
    s = tables.summary_row(_hist(), [("overfitting", "warning")])
    assert s["best epoch"] == 10 and s["epochs"] == 30 and s["flags"] == "⚠ overfitting"
    assert s["final gap (val-train)"] == pytest.approx(
        _hist()["val_loss"].iloc[-1] - _hist()["train_loss"].iloc[-1])


def test_history_csv_keeps_nan():
    h = pd.DataFrame({"epoch": [1, 2], "val_loss": [0.5, math.nan]})
    assert tables.history_csv(h).decode().splitlines() == ["epoch,val_loss", "1,0.5", "2,NaN"]


# ------------------------------------------------------------------ launch form model / CLI args
@pytest.mark.skipif(launch_form.tc is None, reason="trainer.config not importable")
def test_launch_form_validates_with_the_cli_rules():
    values = launch_form.defaults()
    cfg, err = launch_form.validate(values)
    assert err is None and cfg == launch_form.tc.DEFAULTS
    bad = {**values, "lr": "-1"}
    _, err = launch_form.validate(bad)
    assert err == "lr must be > 0 and <= 10, got -1.0"


def test_launch_form_prefill_from_a_run_config():
    if launch_form.tc is None:
        pytest.skip("trainer.config not importable")
    v = launch_form.defaults({"hidden": [512, 512], "lr": 0.01, "early_stop": ["overfitting"],
                              "train_size": 300, "not_an_option": 1})
    assert v["hidden"] == "512,512" and v["lr"] == "0.01" and v["train_size"] == "300"
    assert v["early_stop"] == ["overfitting"] and "not_an_option" not in v


def test_layers_follower_matches_read_layers_and_reads_only_appended(tmp_path):
    from curvewatch import tracking
    from curvewatch.tracking import LayersReader
    run = tracking.Run.create(tmp_path, name="layers", config={}, epochs=5, heartbeat_seconds=0)
    f = LayersReader(run.path)
    assert f.read().empty
    for e in (1, 2):
        run.log_epoch(epoch=e, train_loss=1.0, layers={"w": 0.5 * e, "b": math.nan})
    first = f.read()
    offset = f.offset
    run.log_epoch(epoch=3, train_loss=1.0, layers={"w": 1.5, "b": 0.1})
    again = f.read()
    assert offset > 0 and f.offset > offset and len(again) == 3 and len(first) == 2
    pd.testing.assert_frame_equal(again, tracking.read_layers(run.path), check_like=True)
    run.finish("completed")


def test_heatmap_layer_names_are_categories_and_lr_is_log():
    layers = pd.DataFrame({"epoch": [1, 2], "1.weight": [1.0, 2.0], "1.bias": [0.1, 0.2]})
    assert figures.layer_heatmap_figure(layers).layout.yaxis.type == "category"
    assert figures.lr_figure(_hist()).layout.yaxis.type == "log"
    h = _hist()
    h["lr"] = 0.0
    assert figures.lr_figure(h).layout.yaxis.type == "linear"


def test_aggregate_curve_figure_from_tracking_columns():
    curves = pd.DataFrame({"epoch": [1, 2, 3], "n": [3, 3, 2],
                           "val_loss_mean": [1.0, 0.8, 0.7], "val_loss_std": [0.1, 0.05, None]})
    fig = figures.aggregate_curve_figure(curves, "val_loss", label="folds")
    band, mean = fig.data
    assert band.fill == "toself" and band.mode == "lines"
    assert list(mean.y) == [1.0, 0.8, 0.7] and list(mean.customdata) == [3, 3, 2]
    assert list(band.y[:3]) == pytest.approx([1.1, 0.85, 0.7])
    with pytest.raises(ValueError, match="val_acc_mean"):
        figures.aggregate_curve_figure(curves, "val_acc")


def test_steps_follower_and_a_100k_step_figure(tmp_path):
    from curvewatch import tracking
    from curvewatch.tracking import StepsReader
    run = tracking.Run.create(tmp_path, name="steps", config={}, epochs=2, heartbeat_seconds=0)
    f = StepsReader(run.path)
    assert f.read().empty
    for k in range(1, 4):
        run.log_step(k * 10, loss=1.0 / k, grad_norm=0.5, lr=1e-3)
    assert list(f.read()["step"]) == [10, 20, 30]
    run.log_step(40, loss=math.nan, grad_norm=0.4, lr=1e-3)
    frame = f.read()
    assert list(frame["step"]) == [10, 20, 30, 40] and math.isnan(frame["loss"].iloc[-1])
    run.finish("completed")
    n = 100_000
    steps = pd.DataFrame({"step": np.arange(1, n + 1), "loss": np.linspace(3, 0.1, n),
                          "grad_norm": np.ones(n)})
    fig = figures.steps_figure(steps, smoothing=0.9)
    assert all(type(t) is go.Scatter for t in fig.data), "downsampled traces are SVG"
    assert all(len(t.x) <= figures.MAX_POINTS + 2 for t in fig.data)
    assert fig.layout.yaxis2.type == "log"


def test_group_metric_figure_draws_members_thin_and_mean_with_band():
    curves = pd.DataFrame({"epoch": [1, 2, 3], "n": [2, 2, 1],
                           "val_loss_mean": [1.0, 0.8, 0.7], "val_loss_std": [0.1, 0.05, 0.0]})
    members = {"fold 1": pd.DataFrame({"epoch": [1, 2, 3], "val_loss": [0.9, 0.75, 0.7]}),
               "fold 2": pd.DataFrame({"epoch": [1, 2], "val_loss": [1.1, 0.85]}),
               "no metric": pd.DataFrame({"epoch": [1], "train_loss": [1.0]})}
    fig = figures.group_metric_figure(curves, "val_loss", members, label="mean of 2")
    thin = [t for t in fig.data if t.legendgroup == "members"]
    band = [t for t in fig.data if t.fill == "toself"]
    mean = [t for t in fig.data if t.name == "mean of 2"]
    assert [t.name for t in thin] == ["fold 1", "fold 2"]
    assert all(t.line.width == 1 for t in thin) and mean[0].line.width == 3
    assert list(mean[0].y) == [1.0, 0.8, 0.7] and list(mean[0].customdata) == [2, 2, 1]
    assert list(band[0].y) == pytest.approx([1.1, 0.85, 0.7, 0.7, 0.75, 0.9])
    assert fig.data.index(band[0]) < fig.data.index(mean[0])  # band under the mean line


def test_parallel_coordinates_axes_per_hyperparameter_and_score():
    ranking = pd.DataFrame({"rank": [1, 2, 3], "setting": [1, 0, 2],
                            "params": [{"lr": "1e-2", "optimizer": "sgd"},
                                       {"lr": "1e-3", "optimizer": "adam"},
                                       {"lr": "1e-1", "optimizer": "adam"}],
                            "val_loss_mean": [0.2, 0.5, np.nan]})
    fig = figures.parallel_coordinates_figure(ranking)
    pc = fig.data[0]
    assert isinstance(pc, go.Parcoords)
    labels = [d.label for d in pc.dimensions]
    assert labels == ["log10 lr", "optimizer", "val_loss (mean)"]
    assert list(pc.dimensions[0].values) == pytest.approx([-2, -3, -1])
    assert list(pc.dimensions[1].ticktext) == ["adam", "sgd"]
    assert pc.line.reversescale  # lower loss = the strong end of the colour scale


def test_runs_summary_uses_status_flags_and_falls_back_to_metrics(tmp_path):
    from curvewatch import tracking
    from curvewatch.dashboard import data
    run = tracking.Run.create(tmp_path, name="own-loop", config={}, epochs=3,
                              heartbeat_seconds=0)
    for e in (1, 2, 3):
        run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=1.0 / e, val_acc=0.3 * e)
    run.finish("completed")
    info = tracking.read_run(run.path)
    assert "flags" not in info.status
    s = data.run_summary(info)
    assert s["source"] == "metrics" and s["best_val_acc"] == pytest.approx(0.9)
    status = {**info.status, "flags": [{"kind": "overfitting", "severity": "warning",
                                        "start_epoch": 2, "end_epoch": None}],
              "best_val_acc": 0.75}
    import dataclasses
    s = data.run_summary(dataclasses.replace(info, status=status))
    assert s == {"flags": (("overfitting", "warning"),), "best_val_acc": 0.75,
                 "source": "status"}


def test_run_names_in_charts_are_plain_text_not_plotly_markup():
    """plotly reads <a href> and <b> in trace names and titles as markup: a run named with
    them shows the characters, and no chart carries a raw tag."""
    evil = '<a href="http://evil.example/x">log in</a><b>'
    h = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.8, 0.7],
                      "val_loss": [1.1, 0.9, 0.8]})
    figs = [figures.compare_figure({"r": h}, "val_loss", labels={"r": evil}),
            figures.small_multiples_figure({"r": h}, labels={"r": evil}),
            figures.compare_figure({"r": h.rename(columns={"val_loss": evil})}, evil)]
    for fig in figs:
        text = fig.to_json()
        assert "<a href" not in text and "<b>" not in text
        assert "&lt;a href" in text


# ------------------------------------------------------------------ Run page: config, evidence
def test_config_table_says_not_set_for_an_unset_option_never_none():
    rows = tables.config_rows({"target": None, "fold": None, "train_size": None, "lr": 0.001,
                               "hidden": [64, 32], "early_stop": [], "seed": 0})
    values = dict(zip(rows["option"], rows["value"], strict=True))
    assert values == {"target": "not set", "fold": "not set", "train_size": "not set",
                      "lr": "0.001", "hidden": "64,32", "early_stop": "not set", "seed": "0"}


def _evidence_keys_written_by_the_detectors() -> set[str]:
    """Every key a detector (or the forecast) writes into a finding's evidence, read from the
    source: dict literals given as Finding's 8th argument, as evidence=, or assigned to `ev`;
    a nested dict's keys as `outer.inner`."""
    import ast

    def keys(node, prefix=""):
        out = set()
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    out.add(prefix + k.value)
                    out |= keys(v, f"{prefix}{k.value}.")
        return out

    found = set()
    for path in (ROOT / "curvewatch" / "diagnosis").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding" \
                    and len(node.args) >= 8:
                found |= keys(node.args[7])
            elif isinstance(node, ast.keyword) and node.arg == "evidence":
                found |= keys(node.value)
            elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ev"
                                                      for t in node.targets):
                found |= keys(node.value)
    return found


def test_every_evidence_key_the_detectors_write_has_a_plain_meaning():
    written = _evidence_keys_written_by_the_detectors()
    assert {"sigma", "trend_z", "rise_needed", "best_level", "forecast.gain"} <= written
    assert sorted(k for k in written if evidence.meaning("any", k) is None) == []


def test_evidence_rows_give_each_figure_its_value_and_meaning():
    rows = evidence.evidence_rows("exploding_gradients", {
        "peak": 1234.5678, "factor": 10.0, "layers": ["0.weight", "2.weight"],
        "forecast": {"gain": 0.02}, "invented_key": float("nan")})
    by = {r["figure"]: r for r in rows}
    assert by["peak"]["value"] == "1235" and "gradient norm" in by["peak"]["meaning"]
    assert "grad_explode_factor" in by["factor"]["meaning"]  # this kind's own meaning
    assert "explode_factor" in evidence.meaning("divergence", "factor")
    assert by["layers"]["value"] == "0.weight, 2.weight"
    assert by["forecast.gain"]["value"] == "0.02" and by["forecast.gain"]["meaning"]
    assert by["invented_key"] == {"figure": "invented_key", "value": "NaN", "meaning": ""}
