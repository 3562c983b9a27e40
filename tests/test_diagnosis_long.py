"""`diagnose` on long histories (issue 17): every trend test it runs has a bounded input, and it
reads the frame without copying it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from allocations import traced_peak
from curvewatch.diagnosis import diagnose
from curvewatch.diagnosis.history import prepare
from curvewatch.diagnosis.signals import BLOCK, SINCE_PEAK_MAX, lr_steps, since_peak
from curvewatch.diagnosis.stats import finite, last_finite


def _bump_then_plateau(n: int) -> pd.DataFrame:
    """A validation loss that falls to 0.30 by epoch ~100, bumps up to ~0.45 at epoch 175 and
    then stays at 0.32 +- 0.003 (never a new low) until epoch n."""
    e = np.arange(1, n + 1)
    val = 0.3 + 1.7 * np.exp(-(e - 1) / 15) + 0.15 * np.exp(-(((e - 175) / 12.0) ** 2))
    val = np.where(e > 175, np.maximum(val, 0.32), val)
    val = val + np.random.default_rng(0).uniform(-0.003, 0.003, n)
    return pd.DataFrame({"epoch": e, "val_loss": val})


def test_a_long_plateau_after_a_bump_is_diagnosed():
    # Before the bound, the ~200,000 values since the bump's peak went to theil_sen_slope,
    # which refuses more than 50,000 (ValueError: the Run page said "diagnosis failed").
    found = diagnose(_bump_then_plateau(200_000))
    assert [f.kind for f in found] == ["converged"]
    assert found[0].ongoing and found[0].start_epoch < 200


def test_since_peak_keeps_the_last_values_only():
    x = np.arange(5_000, dtype=float)[::-1].copy()
    S = x.copy()
    S[10] = 1e9  # the highest smoothed level after the minimum at row 0
    out = since_peak(x, S, 0, x.size)
    assert out.size == SINCE_PEAK_MAX
    np.testing.assert_array_equal(out, x[-SINCE_PEAK_MAX:])
    short = since_peak(x[:300], S[:300], 0, 300)
    np.testing.assert_array_equal(short, x[10:300])  # shorter than the bound: all of them


def _bench_like(n: int) -> pd.DataFrame:
    """bench/diagnose_speed.py's history: every column, an overfitting run, a step decay."""
    rng = np.random.default_rng(0)
    e = np.arange(1, n + 1)
    t = e / max(n / 100, 1)
    return pd.DataFrame({
        "epoch": e,
        "train_loss": (0.05 + 2 * np.exp(-t / 8)) * (1 + 0.01 * rng.standard_normal(n)),
        "val_loss": (0.3 + 2 * np.exp(-t / 8) + 0.004 * np.maximum(t - 40, 0)) * (1 + 0.02 * rng.standard_normal(n)),
        "train_acc": np.minimum(0.99, 0.5 + t / 100), "val_acc": np.minimum(0.95, 0.5 + t / 120),
        "grad_norm": np.exp(0.3 * rng.standard_normal(n)), "grad_norm_max": np.exp(0.3 * rng.standard_normal(n)) * 2,
        "lr": np.where(t < 60, 1e-3, 1e-4),
    })


def test_an_ordered_frame_is_read_without_copies():
    frame = _bench_like(1_000)
    h = prepare(frame)
    assert h is not None
    for c, x in h.cols.items():
        assert np.shares_memory(x, frame[c].to_numpy()), c
    assert np.shares_memory(h.epochs, frame["epoch"].to_numpy())
    shuffled = prepare(frame.iloc[::-1])  # out of order: sorted copies, the same values
    assert shuffled is not None
    np.testing.assert_array_equal(shuffled.epochs, h.epochs)
    for c, x in h.cols.items():
        np.testing.assert_array_equal(shuffled.cols[c], x)


def test_diagnose_holds_less_than_the_frame_on_top_of_it():
    # Issue 17: the Run page of a million-epoch run in 300 MB. Before, diagnose held 2.2x the
    # frame on top of it (every column copied, then up to nine float temporaries in one
    # detector); now 0.70x (views, in-place or blockwise temporaries: three arrays of n at most).
    frame = _bench_like(200_000)
    size = frame.memory_usage(deep=True).sum()
    diagnose(frame)
    found, peak = traced_peak(lambda: diagnose(frame))
    assert [f.kind for f in found][:1] == ["overfitting"]
    assert peak < size, (peak / size)


def test_last_finite_is_the_tail_of_the_finite_values():
    rng = np.random.default_rng(3)
    for n in (0, 1, 5, 70, 500):
        x = rng.standard_normal(n)
        x[rng.random(n) < 0.6] = np.nan
        x[rng.random(n) < 0.1] = np.inf
        f = finite(x)
        for k in (0, 1, 3, 40, 64, 600):
            np.testing.assert_array_equal(last_finite(x, k), f[-k:] if k else f)


def test_learning_rate_steps_across_blocks():
    # lr_steps reads BLOCK rows at a time: steps on either side of a block's edge all count
    n = 2 * BLOCK + 10
    lr = np.full(n, 1e-3)
    edges = [BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, n - 1]
    for k, b in enumerate(edges):
        lr[b:] = 1e-3 / 3 ** (k + 1)
    lr[BLOCK + 5] = np.nan  # a missing rate: no step into or out of it
    h = prepare(pd.DataFrame({"epoch": np.arange(1, n + 1), "lr": lr}))
    assert h is not None
    np.testing.assert_array_equal(lr_steps(h), edges)
