"""Long series drawn at screen resolution (dashboard.downsample): the point count is bounded,
extremes, spikes, the best epoch and where a run went non-finite survive exactly."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from curvewatch.dashboard import downsample as downsample_module, figures
from curvewatch.dashboard.downsample import SCREEN_POINTS, downsample, keep_indices, screen_rows


def noisy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(-np.arange(n) / (n / 5)) + rng.normal(0, 0.05, n)


@pytest.mark.parametrize("n", [SCREEN_POINTS + 1, 10_007, 100_000, 1_000_003])
@pytest.mark.parametrize("max_points", [6, 501, SCREEN_POINTS])
def test_point_count_is_bounded(n, max_points):
    y = noisy(n)
    assert len(keep_indices(y, max_points)) <= max_points
    y[n // 3:] = math.nan  # a run that diverged: its gaps cost points too
    y[n // 5] = math.inf
    assert len(keep_indices(y, max_points)) <= max_points


def test_short_series_come_back_whole():
    x, y = downsample(np.arange(10), noisy(10), 100)
    assert x.tolist() == list(range(10)) and len(y) == 10


def test_extremes_spikes_and_ends_survive_exactly():
    n = 1_000_000
    y = noisy(n, seed=1)
    rng = np.random.default_rng(2)
    spikes = np.sort(rng.choice(np.arange(1, n - 1), 40, replace=False))
    y[spikes[::2]] = 10 + np.arange(20)    # upward spikes, all different
    y[spikes[1::2]] = -10 - np.arange(20)  # and downward ones
    x = np.arange(1, n + 1, dtype=float)
    xs, ys = downsample(x, y, SCREEN_POINTS)
    kept = dict(zip(xs.tolist(), ys.tolist(), strict=True))
    for i in spikes:
        assert kept.get(x[i]) == y[i], f"spike at epoch {x[i]:.0f} lost"
    assert ys.min() == y.min() and ys.max() == y.max()
    assert xs[0] == 1 and xs[-1] == n and (np.diff(xs) > 0).all()


def test_every_bucket_keeps_its_low_and_high():
    """Within any stretch of the original twice a bucket long, the drawn points reach its
    minimum and maximum: the envelope a reader sees is the envelope of the data."""
    n, max_points = 200_000, 1_000
    y = noisy(n, seed=3)
    idx = keep_indices(y, max_points)
    size = math.ceil(n / ((max_points - 2) // 2))
    for start in range(0, n - 2 * size, 7 * size):
        stretch = slice(start, start + 2 * size)
        inside = idx[(idx >= start - size) & (idx < start + 3 * size)]
        assert y[inside].min() <= y[stretch].min() and y[inside].max() >= y[stretch].max()


@pytest.mark.parametrize("slice_points", [1, 4_099, 1 << 16])
@pytest.mark.parametrize("gaps", [False, True])
def test_each_buckets_extremes_are_kept_whatever_slice_it_is_compared_in(
        monkeypatch, slice_points, gaps):
    """keep_indices compares a slice of whole buckets at a time (bounded memory): every
    bucket's lowest and highest finite value is kept, as one comparison of all would."""
    monkeypatch.setattr(downsample_module, "SLICE_POINTS", slice_points)
    n, max_points = 123_457, 1_000
    y = noisy(n, seed=5)
    if gaps:
        y[::13], y[40_000:47_000], y[99] = math.nan, math.nan, -math.inf
    idx = set(keep_indices(y, max_points).tolist())
    size = math.ceil(n / ((max_points - 2) // (4 if gaps else 2)))
    for start in range(0, n, size):
        bucket = y[start:start + size]
        ok = np.flatnonzero(np.isfinite(bucket))
        if ok.size:
            assert start + ok[np.argmin(bucket[ok])] in idx
            assert start + ok[np.argmax(bucket[ok])] in idx


def test_where_a_run_goes_non_finite_is_kept():
    n = 300_000
    y = noisy(n)
    y[123_457:] = math.nan
    y[50_001] = math.inf
    xs, ys = downsample(np.arange(n), y, SCREEN_POINTS)
    assert 123_457 in xs.tolist() and 50_001 in xs.tolist()
    assert math.isnan(ys[xs.tolist().index(123_457)])


def test_keep_adds_exact_points():
    y = noisy(500_000)
    assert {7, 250_001, 499_998} <= set(keep_indices(y, 1_000, keep=[7, 250_001, 499_998]))


def test_long_learning_curve_is_screen_sized_and_best_epoch_exact():
    n = 1_000_000
    epoch = np.arange(1, n + 1)
    val = 1 / np.sqrt(epoch) + np.linspace(0, 0.01, n) + noisy(n, seed=4) * 0.001
    best = int(epoch[np.argmin(val)])
    hist = pd.DataFrame({"epoch": epoch, "train_loss": 1 / np.sqrt(epoch),
                         "val_loss": val})
    fig = figures.learning_curve_figure(hist, metric="loss", best_epoch=best, show_raw=False)
    curves = [t for t in fig.data if t.name in ("train", "val")]
    assert len(curves) == 2
    # drawn at screen resolution, so SVG (WebGL only pays above WEBGL_POINTS drawn points)
    assert all(type(t) is go.Scatter and len(t.x) <= SCREEN_POINTS for t in curves)
    trace = next(t for t in fig.data if t.name == "val")
    pairs = dict(zip(np.asarray(trace.x).tolist(), np.asarray(trace.y).tolist(), strict=True))
    assert pairs[best] == val.min(), "the curve passes through the best epoch exactly"
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert any(s.x0 == best for s in lines), "the best-epoch marker stays at its epoch"


def history_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"epoch": np.arange(1, n + 1), "train_loss": noisy(n, 1),
                         "val_loss": noisy(n, 2) + 0.1, "lr": np.full(n, 1e-3)})


def test_screen_rows_keep_every_columns_extremes_of_a_long_history():
    h = history_frame(50_000)
    h.loc[30_000:, "val_loss"] = math.nan  # where it went non-finite survives too
    rows = screen_rows(h)
    assert len(rows) <= 4 * (SCREEN_POINTS + 2) < len(h)
    for col in ("train_loss", "val_loss"):
        assert h[col].idxmin() in rows.index and h[col].idxmax() in rows.index
    assert 30_000 in rows.index and rows.index[0] == 0 and rows.index[-1] == len(h) - 1
    short = history_frame(SCREEN_POINTS)
    assert screen_rows(short) is short  # a short history comes back as it is


def test_screen_rows_read_a_nullable_column_with_missing_values():
    h = history_frame(50_000)
    h["val_acc"] = pd.array(np.linspace(0, 1, len(h)), dtype="Float64")
    h.loc[::3, "val_acc"] = pd.NA
    rows = screen_rows(h)
    assert len(rows) < len(h)
    assert h["val_acc"].idxmax() in rows.index and h["val_acc"].idxmin() in rows.index


def test_screen_rows_of_a_span_come_back_whole_when_it_fits_the_screen():
    h = history_frame(50_000)
    span = screen_rows(h, (20_001, 20_000 + SCREEN_POINTS))
    pd.testing.assert_frame_equal(span, h.iloc[20_000:20_000 + SCREEN_POINTS])
    wide = screen_rows(h, (10_000, 40_000))  # wider than the screen: cut, within the span
    assert len(wide) < 30_001 and wide["epoch"].between(10_000, 40_000).all()
    assert wide["epoch"].iloc[0] == 10_000 and wide["epoch"].iloc[-1] == 40_000


def ema_loop(y: np.ndarray, w: float) -> np.ndarray:
    """TensorBoard's classicSmoothing as written there: one point at a time."""
    out, last, n = y.copy(), 0.0, 0
    for i, v in enumerate(y):
        if math.isfinite(v):
            last, n = w * last + (1.0 - w) * v, n + 1
            out[i] = last / (1.0 - w ** n)
    return out


@pytest.mark.parametrize("w", [1e-13, 0.01, 0.6, 0.99, 0.999])
def test_vectorised_smoothing_equals_the_point_by_point_average(w):
    from curvewatch.dashboard.series import smooth_ema
    y = noisy(5_000, 3)
    y[::97], y[5::211] = math.nan, math.inf  # skipped, passed through
    np.testing.assert_allclose(smooth_ema(y, w), ema_loop(y, w), rtol=1e-11, atol=1e-14)
