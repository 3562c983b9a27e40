"""diagnosis.forecast on formula curves: a noisy power law is projected within its interval;
too short, too noisy or rising histories give None; the forecast at epoch t reads rows <= t
only; NaN, infinities and absent cells never raise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from curvewatch.diagnosis import Forecast, forecast


def power_law(n: int, seed: int, noise: float = 0.02, c: float = 0.3, a: float = 1.5,
              alpha: float = 0.7) -> tuple[pd.DataFrame, np.ndarray]:
    """A validation curve c + a e^-alpha with multiplicative noise, and its noiseless truth."""
    e = np.arange(1, n + 1, dtype=float)
    truth = c + a * e ** -alpha
    v = truth * (1 + noise * np.random.default_rng(seed).standard_normal(n))
    return pd.DataFrame({"epoch": e.astype(int), "val_loss": v}), truth


@pytest.mark.parametrize("seen", [30, 60, 100])
def test_a_noisy_power_law_is_projected_within_its_interval_in_most_seeds(seen):
    inside = 0
    for seed in range(20):
        h, truth = power_law(200, seed)
        fc = forecast(h.iloc[:seen], 200)
        assert fc is not None, seed
        inside += fc.low <= truth[-1] <= fc.high
        assert fc.low <= fc.projected <= fc.high
        assert fc.path_epochs[0] == seen and fc.path_epochs[-1] == 200
    assert inside >= 17  # an interval meant as ~95% may miss 3 of 20


def test_the_expected_gain_is_measured_from_the_best_value_so_far():
    h, truth = power_law(200, seed=3)
    fc = forecast(h.iloc[:40], 200)
    assert fc is not None and fc.family in ("power law", "log-power", "exponential", "inverse log")
    assert fc.best == pytest.approx(h["val_loss"].iloc[:40].min())
    assert fc.gain == pytest.approx(max(0.0, (fc.best - fc.projected) / fc.best))
    assert fc.gain > 0.05  # the law falls from about 0.44 to 0.34 after epoch 40
    assert fc.message().startswith("≈ ") and fc.message().endswith("more expected by epoch 200")


def test_a_flat_curve_expects_no_gain():
    e = np.arange(1, 61)
    v = 0.5 * (1 + 0.01 * np.random.default_rng(1).standard_normal(60))
    fc = forecast(pd.DataFrame({"epoch": e, "val_loss": v}), 200)
    assert fc is not None and fc.gain < 0.01 and abs(fc.projected - 0.5) < 0.02


def test_too_short_too_noisy_or_rising_histories_give_none():
    h, _ = power_law(200, seed=0)
    assert forecast(h.iloc[:7], 200) is None  # 7 epochs
    noisy, _ = power_law(200, seed=0, noise=0.5)
    assert forecast(noisy.iloc[:15], 200) is None  # 50% noise: any law fits
    e = np.arange(1, 61)
    rising = 0.5 + 1 / e + 0.01 * np.maximum(e - 20, 0)  # overfitting: no decreasing law
    assert forecast(pd.DataFrame({"epoch": e, "val_loss": rising}), 200) is None


def test_nothing_to_forecast_without_the_metric_or_a_future_epoch():
    h, _ = power_law(50, seed=0)
    assert forecast(h, 50) is None and forecast(h, 10) is None
    assert forecast(h.rename(columns={"val_loss": "train_loss"}), 100) is None
    assert forecast(h, 100, metric="train_loss") is None
    assert forecast(h.iloc[:0], 100) is None


def test_an_until_epoch_that_is_not_a_whole_number_is_refused_by_name():
    h, _ = power_law(50, seed=0)
    with pytest.raises(ValueError, match="until_epoch must be a whole epoch number, got 80.5"):
        forecast(h, 80.5)  # type: ignore[arg-type]


def test_the_forecast_at_epoch_t_depends_on_rows_up_to_t_only():
    h, _ = power_law(120, seed=4)
    other = h.copy()
    other.loc[60:, "val_loss"] = 5.0  # a different future: a divergence after epoch 60
    assert forecast(h.iloc[:60], 120) == forecast(other.iloc[:60], 120)
    # rows in any order, a repeated epoch whose last row wins: the same forecast
    stale = h.iloc[:60].assign(val_loss=9.0).iloc[[10]]
    shuffled = pd.concat([stale, h.iloc[:60].sample(frac=1, random_state=0)])
    assert forecast(shuffled, 120) == forecast(h.iloc[:60], 120)


def test_a_learning_rate_step_starts_a_new_curve():
    e = np.arange(1, 81)
    v = np.where(e < 40, 0.8 + 1 / e, 0.5 + 0.5 / np.maximum(e - 38, 1))
    lr = np.where(e < 40, 0.1, 0.01)
    fc = forecast(pd.DataFrame({"epoch": e, "val_loss": v, "lr": lr}), 200)
    assert fc is not None and fc.segment_start == 40 and fc.projected < 0.51
    # right after the step too few epochs of the new curve: nothing to say yet
    assert forecast(pd.DataFrame({"epoch": e, "val_loss": v, "lr": lr}).iloc[:44], 200) is None


def test_nan_infinities_and_absent_cells_never_raise():
    e = np.arange(1, 61)
    v = 0.5 + 1 / e
    v[[10, 20, 30]] = [np.nan, np.inf, -np.inf]  # logged non-finite values are skipped in the fit
    fc = forecast(pd.DataFrame({"epoch": e, "val_loss": v}), 200)
    assert isinstance(fc, Forecast) and np.isfinite(fc.projected)
    v[-1] = np.nan
    assert forecast(pd.DataFrame({"epoch": e, "val_loss": v}), 200) is None  # diverged: no law
    sparse = 0.5 + 1 / e.astype(float)
    sparse[::2] = np.nan  # validation every 2nd epoch: the others are absent, not NaN
    absent = ["val_loss" if i % 2 == 0 else "" for i in range(60)]
    fc = forecast(pd.DataFrame({"epoch": e, "val_loss": sparse, "absent": absent}), 200)
    assert fc is not None and fc.epoch == 60 and fc.projected < fc.best
    junk = pd.DataFrame({"epoch": ["1", None, "x", 4], "val_loss": ["a", np.inf, None, 1.0]})
    assert forecast(junk, 10) is None


def test_plateau_and_still_improving_messages_say_the_expected_gain():
    from curvewatch.diagnosis import diagnose, with_forecast

    e = np.arange(1, 41)
    noise = 1 + 0.005 * np.random.default_rng(0).standard_normal(40)
    h = pd.DataFrame({"epoch": e, "train_loss": 0.1 + 1.5 * e ** -0.7,
                      "val_loss": (0.3 + 1.5 * e ** -0.7) * noise})
    plain = diagnose(h)
    assert "still_improving" in {f.kind for f in plain}
    told = {f.kind: f for f in with_forecast(plain, h, 120)}["still_improving"]
    fc = forecast(h, 120)
    assert fc is not None and fc.gain > 0.05
    assert told.message.endswith(f"≈ {100 * fc.gain:.1f}% more expected by epoch 120.")
    assert told.evidence["forecast"]["projected"] == fc.projected
    # the planned end reached, or none known: the messages stay as they were
    assert with_forecast(plain, h, 40) == plain and with_forecast(plain, h, None) == plain
