"""`diagnose` on long histories: every trend test it runs has a bounded input (issue 17)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from curvewatch.diagnosis import diagnose
from curvewatch.diagnosis.signals import SINCE_PEAK_MAX, since_peak


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
