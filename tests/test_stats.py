"""diagnosis.stats' fast paths give what the plain definitions give (issue 17: a million-epoch
diagnosis). The plain O(n^2) Mann-Kendall sum and np.median over every window are kept here
as the reference."""
import numpy as np
import pandas as pd
import pytest

from curvewatch.diagnosis import stats


def pairwise_s(x: np.ndarray) -> float:
    """S of the Mann-Kendall test by its definition: every pair i < j, sign(x[j] - x[i])."""
    n = x.size
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, as intended
        return float(np.sign(x[None, :] - x[:, None])[np.triu_indices(n, 1)].sum())


def reference_z(x: np.ndarray, inflation: float = 1.0) -> float:
    n = x.size
    if n < 3:
        return 0.0
    s = pairwise_s(x)
    var = n * (n - 1) * (2 * n + 5) / 18.0 * max(inflation, 1.0)
    return 0.0 if s == 0 else float((s - np.sign(s)) / np.sqrt(var))


def series(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        return rng.normal(size=n)
    if kind == "ties":  # a few distinct values: most pairs tie
        return rng.integers(0, 4, n).astype(float)
    if kind == "falling":  # a trend under noise, with repeated values
        return np.round(np.exp(-np.arange(n) / (n / 3)) + rng.normal(0, 0.05, n), 2)
    return np.full(n, 0.5)  # constant: S = 0


@pytest.mark.parametrize("kind", ["noise", "ties", "falling", "constant"])
def test_mann_kendall_equals_the_pairwise_definition(kind):
    rng = np.random.default_rng(17)
    for n in (3, 4, 63, 64, 65, 100, 128, 129, 1000, 2049):
        x = series(kind, n, rng)
        assert stats._kendall_s(x) == pairwise_s(x), (kind, n)
        for infl in (1.0, 3.0):
            assert stats.mann_kendall_z(x, infl) == pytest.approx(reference_z(x, infl),
                                                                  rel=1e-12, abs=1e-15)


def test_mann_kendall_signs_and_non_finite_values_as_before():
    x = np.arange(200.0)
    assert stats.mann_kendall_z(x) > 8 and stats.mann_kendall_z(-x) < -8
    single_infs = np.concatenate([x, [np.inf, -np.inf]])
    assert stats._kendall_s(single_infs) == pairwise_s(single_infs)
    for bad in (np.nan, np.inf):  # NaN, or two equal infinities: a NaN pair difference
        y = np.concatenate([x, [bad, bad]])
        assert np.isnan(stats._kendall_s(y)) and np.isnan(pairwise_s(y))


@pytest.mark.parametrize("window", [2, 3, 5, 10, 16, 32, 40])
def test_rolling_median_equals_numpy_median_of_each_window(window, monkeypatch):
    monkeypatch.setattr(stats, "_NETWORK_BLOCK", 37)  # many blocks, a ragged last one
    rng = np.random.default_rng(window)
    x = np.round(rng.normal(size=500), 1)  # rounded: tied values inside windows
    got = stats.rolling_median(x, window)
    want = np.array([np.median(x[max(0, i - window + 1): i + 1]) for i in range(x.size)])
    np.testing.assert_array_equal(got, want)
    for n in (1, window - 1, window, window + 1, 2 * window, 4 * window - 1):  # short series too
        short = x[:max(n, 1)]
        np.testing.assert_array_equal(
            stats.rolling_median(short, window, min_periods=2),
            pd.Series(short).rolling(window, min_periods=2).median().to_numpy())
    with_nan = x.copy()
    with_nan[::9] = np.nan  # the pandas path, unchanged
    np.testing.assert_array_equal(
        stats.rolling_median(with_nan, window, min_periods=2),
        pd.Series(with_nan).rolling(window, min_periods=2).median().to_numpy())


def test_merge_exchange_sorts_every_order_of_small_inputs():
    rng = np.random.default_rng(0)
    for n in range(2, 33):
        x = rng.integers(0, 3, size=(50, n)).astype(float)  # ties included
        cols = [x[:, i].copy() for i in range(n)]
        for i, j in stats._merge_exchange(n):
            cols[i], cols[j] = np.minimum(cols[i], cols[j]), np.maximum(cols[i], cols[j])
        np.testing.assert_array_equal(np.stack(cols, axis=1), np.sort(x, axis=1))


def pairwise_slope_median(x: np.ndarray) -> float:
    """theil_sen_slope by its definition: the median of every (x[j] - x[i]) / (j - i), i < j."""
    i, j = np.triu_indices(x.size, 1)
    return float(np.median((x[j] - x[i]) / (j - i)))


@pytest.mark.parametrize("kind", ["noise", "ties", "falling", "constant"])
def test_theil_sen_equals_the_median_of_every_pairwise_slope(kind):
    rng = np.random.default_rng(5)
    for n in (2, 3, 1000, 1001, 1002, 1777):  # odd and even counts of slopes, both paths
        x = series(kind, n, rng)
        assert stats.theil_sen_slope(x) == pairwise_slope_median(x), (kind, n)


def test_theil_sen_bracket_that_misses_the_median_is_widened(monkeypatch):
    monkeypatch.setattr(stats, "_SLOPE_CHUNK", 5_000)  # several blocks of offsets
    x = np.cumsum(np.random.default_rng(2).normal(size=1101))
    want = pairwise_slope_median(x)
    for bracket in ((want + 1, want + 2), (want - 2, want - 1), (want, want), (-np.inf, np.inf)):
        assert stats._median_slope_streamed(x, bracket) == want, bracket


def test_median_of_last_equals_the_median_of_the_last_finite_values():
    rng = np.random.default_rng(9)
    x = rng.normal(size=5_000)
    x[rng.random(5_000) < 0.7] = np.nan  # sparse: the tail must grow to find k values
    x[-300:] = np.nan
    for k in (0, 1, 5, 64, 200, 1_500, 10_000):
        want = float(np.median(x[np.isfinite(x)][-k:]))
        assert stats.median_of_last(x, k) == want, k
    assert np.isnan(stats.median_of_last(np.full(100, np.nan), 5))
    assert np.isnan(stats.median_of_last(np.array([]), 5))


def test_theil_sen_refuses_a_series_whose_pairs_would_take_hours():
    with pytest.raises(ValueError, match=r"theil_sen_slope of 50,001 values .*at most 50,000"):
        stats.theil_sen_slope(np.zeros(stats.MAX_SLOPE_VALUES + 1))


@pytest.mark.parametrize("kind", ["noise", "ties", "falling", "constant"])
def test_median_is_numpys_median_to_the_last_bit(kind):
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 4, 9, 10, 255, 256, 257, 258, 1001, 4000):
        x = series(kind, n, rng)
        assert stats.median(x) == float(np.median(x)), n


def test_median_of_values_with_nan_or_infinities_is_numpys():
    with np.errstate(invalid="ignore"):
        for x in ([1.0, np.nan, 2.0], [np.nan], [np.inf, 1.0], [-np.inf, np.inf],
                  [np.inf, np.inf, 1.0, 2.0], list(np.r_[np.arange(300.0), np.nan]),
                  list(np.r_[np.arange(301.0), -np.inf])):
            a = np.array(x)
            expect = float(np.median(a))
            got = stats.median(a)
            assert got == expect or (np.isnan(got) and np.isnan(expect)), x
    assert np.isnan(stats.median(np.array([])))
