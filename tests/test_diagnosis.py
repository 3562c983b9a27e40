"""Specifications of the diagnosis engine, as tables of short formula curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from curvewatch.diagnosis import KINDS, Finding, Thresholds, diagnose, should_stop, stopping_finding
from tests.diagnosis_cases import decay, epochs, frame, kinds, noisy, u_shape


def test_kinds_are_exactly_the_contract_strings():
    assert set(KINDS) == {"overfitting", "plateau", "divergence", "unstable", "underfitting",
                          "exploding_gradients", "vanishing_gradients", "overconfidence", "still_improving",
                          "converged", "possible_overfitting"}


@pytest.mark.parametrize("history", [
    pd.DataFrame(),
    pd.DataFrame({"epoch": []}),
    pd.DataFrame({"epoch": [1], "train_loss": [1.0], "val_loss": [1.2]}),
    pd.DataFrame({"something_else": [1, 2, 3]}),
], ids=["empty", "no-rows", "one-row", "no-known-columns"])
def test_empty_or_one_row_history_gives_no_findings(history):
    assert diagnose(history) == []


@pytest.mark.parametrize("loss", [float("nan"), float("inf")])
def test_a_first_epoch_that_is_already_non_finite_is_a_divergence(loss):
    found = diagnose(pd.DataFrame({"epoch": [1], "train_loss": [loss], "val_loss": [loss]}))
    assert [f.kind for f in found] == ["divergence"]
    assert found[0].start_epoch == 1 and found[0].ongoing


# ------------------------------------------------------------------ overfitting

@pytest.mark.parametrize("turn,slope,noise,seed", [
    (20, 0.02, 0.0, 0), (20, 0.02, 0.01, 1), (30, 0.01, 0.01, 2), (15, 0.05, 0.03, 3), (40, 0.015, 0.005, 4),
])
def test_overfitting_flagged_at_the_validation_minimum(turn, slope, noise, seed):
    n = turn + 30
    val = noisy(u_shape(n, turn, slope), noise, seed)
    h = frame(train_loss=decay(n, floor=0.02), val_loss=val)
    f = {x.kind: x for x in diagnose(h)}["overfitting"]
    assert f.start_epoch == int(np.argmin(val)) + 1          # the epoch best.pt holds
    assert f.end_epoch is None and f.metric == "val_loss"
    assert f"epoch {f.start_epoch}" in f.message and "overfitting" in f.message
    assert f.evidence["min_epoch"] == f.start_epoch


@pytest.mark.parametrize("turn,slope,noise,seed", [(20, 0.02, 0.01, 5), (30, 0.03, 0.02, 6), (25, 0.01, 0.005, 7)])
def test_overfitting_reported_within_10_epochs_of_the_minimum(turn, slope, noise, seed):
    n = turn + 40
    val = noisy(u_shape(n, turn, slope), noise, seed)
    h = frame(train_loss=decay(n, floor=0.02), val_loss=val)
    first = next(t for t in range(2, n + 1) if "overfitting" in kinds(diagnose(h[:t])))
    assert first - (int(np.argmin(val)) + 1) < 10


def test_overfitting_message_reads_as_one_sentence_with_the_numbers():
    n = 40
    val = u_shape(n, 20, 0.02)
    f = diagnose(frame(train_loss=decay(n, floor=0.02), val_loss=val), best_checkpoint="best.pt")[0]
    assert f.kind == "overfitting"
    assert f.message.startswith("Validation loss has risen for 20 epochs since its minimum")
    assert f.message.endswith("while training loss kept falling: the model is overfitting.")
    assert "weight decay" in f.advice and "epoch-20 checkpoint (best.pt)" in f.advice


def test_overfitting_not_flagged_when_training_loss_rises_too():
    n = 50
    val = u_shape(n, 20, 0.03)
    train = u_shape(n, 20, 0.03, floor=0.2)
    assert "overfitting" not in kinds(diagnose(frame(train_loss=train, val_loss=val)))


def test_overfitting_needs_a_training_loss_column():
    assert "overfitting" not in kinds(diagnose(frame(val_loss=u_shape(50, 20, 0.03))))


def test_a_rise_that_reverses_is_not_overfitting_any_more():
    # epoch-wise double descent: the val loss rises, then falls below its old minimum
    n = 80
    e = epochs(n)
    val = u_shape(n, 20, 0.02) - np.where(e > 35, 0.035 * (e - 35), 0.0)
    val = np.maximum(val, 0.12)
    h = frame(train_loss=decay(n, floor=0.01), val_loss=val)
    assert "overfitting" in kinds(diagnose(h[:35]))
    assert "overfitting" not in kinds(diagnose(h))


def test_overconfidence_when_validation_accuracy_still_improves():
    n = 50
    e = epochs(n)
    h = frame(train_loss=decay(n, floor=0.02), val_loss=u_shape(n, 20, 0.02),
              val_acc=np.minimum(0.5 + 0.01 * e, 0.95))
    ks = kinds(diagnose(h))
    assert "overfitting" in ks and "overconfidence" in ks


def test_no_overconfidence_when_validation_accuracy_falls_with_the_loss():
    n = 50
    e = epochs(n)
    acc = np.where(e <= 20, 0.5 + 0.02 * e, 0.9 - 0.005 * (e - 20))
    h = frame(train_loss=decay(n, floor=0.02), val_loss=u_shape(n, 20, 0.02), val_acc=acc)
    assert "overconfidence" not in kinds(diagnose(h))


# ------------------------------------------------------------------ healthy curves

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("noise", [0.005, 0.02, 0.03])
def test_noisy_but_healthy_curves_are_not_flagged(seed, noise):
    # validation loss keeps falling (by >= 10% per 10 epochs), training loss below it: nothing is wrong
    n = 80
    e = epochs(n)
    val = 0.3 + 2.0 * np.exp(-e / 30)
    train = 0.2 + 2.0 * np.exp(-e / 25)
    h = frame(train_loss=noisy(train, noise / 5, seed + 100), val_loss=noisy(val, noise, seed),
              grad_norm=noisy(1.0 + 0 * e, 0.2, seed + 7), lr=np.full(n, 1e-3))
    for t in (10, 20, 40, 60, 80):
        bad = [k for k in kinds(diagnose(h[:t])) if k != "still_improving"]
        assert bad == [], (t, bad)


def test_still_improving_at_the_last_epoch():
    n = 30
    h = frame(train_loss=decay(n, tau=20, floor=0.0), val_loss=decay(n, tau=20, floor=0.1))
    f = {x.kind: x for x in diagnose(h)}["still_improving"]
    assert f.severity == "info" and f.end_epoch is None and "training longer should help" in f.message


# ------------------------------------------------------------------ plateau

@pytest.mark.parametrize("levels,patience,expected", [
    # the Thresholds docstring example: improvement stops at epoch 2, wait reaches 3 at epoch 5
    ([1.0, 0.8, 0.8, 0.8, 0.8], 3, 2),
    ([1.0, 0.8, 0.8, 0.8], 3, None),
    ([1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8], 4, 3),
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4], 2, None),
])
def test_plateau_reported_once_wait_reaches_patience(levels, patience, expected):
    th = Thresholds(patience=patience, window=1, start_from_epoch=1, trend_window=3)
    h = frame(val_loss=levels)
    found = [f for f in diagnose(h, th) if f.kind == "plateau"]
    assert [f.start_epoch for f in found] == ([] if expected is None else [expected])


@pytest.mark.parametrize("seed", range(4))
def test_noisy_plateau_flagged_with_its_start(seed):
    n = 70
    val = noisy(np.maximum(decay(n, tau=5, floor=0.5), 0.0), 0.02, seed)
    h = frame(train_loss=decay(n, tau=5, floor=0.45), val_loss=val)
    first = next(t for t in range(2, n + 1) if "plateau" in kinds(diagnose(h[:t])))
    f = {x.kind: x for x in diagnose(h[:first])}["plateau"]
    assert f.metric == "val_loss" and 8 <= f.start_epoch <= 40 and first <= 60


def test_plateau_not_flagged_before_patience_runs_out():
    n = 30
    val = np.r_[decay(15, tau=3, floor=0.5), np.full(n - 15, 0.5)]
    h = frame(train_loss=val - 0.1, val_loss=val)
    th = Thresholds(patience=10)
    first = next(t for t in range(2, n + 1) if "plateau" in kinds(diagnose(h[:t], th)))
    f = [x for x in diagnose(h[:first], th) if x.kind == "plateau"][0]
    assert f.evidence["wait"] >= 10 and first - f.start_epoch >= 10


def test_plateau_waits_out_the_cooldown_after_a_learning_rate_step():
    # a step (x0.1 at epoch 25) silences the plateau for `cooldown` epochs; it does not restart
    # the wait: a drop that helps shows up as a new low, one that does not changes nothing
    n = 40
    val = np.r_[decay(10, tau=2, floor=0.5), np.full(n - 10, 0.5)]
    lr = np.where(epochs(n) < 25, 1e-2, 1e-3)
    th = Thresholds(patience=10, cooldown=3)
    h = frame(val_loss=val, train_loss=val - 0.1, lr=lr)
    for t in (25, 26, 27):  # epochs 25-27: the cooldown
        assert "plateau" not in kinds(diagnose(h[:t], th))
        assert "plateau" in kinds(diagnose(frame(val_loss=val, train_loss=val - 0.1)[:t], th))
    assert "plateau" in kinds(diagnose(h[:28], th))


@pytest.mark.parametrize("schedule", ["cosine", "exponential", "halving every 6 epochs"])
def test_smooth_or_repeated_learning_rate_decay_does_not_block_a_plateau(schedule):
    # real runs with cosine / ReduceLROnPlateau schedules ran to the end before (the lr changed
    # every epoch or every few epochs, and every change restarted the wait)
    n = 60
    e = epochs(n)
    lr = {"cosine": 1e-3 * 0.5 * (1 + np.cos(np.pi * (e - 1) / n)), "exponential": 1e-3 * 0.95 ** (e - 1),
          "halving every 6 epochs": 1e-3 * 0.5 ** (e // 6)}[schedule]
    val = noisy(np.r_[decay(12, tau=3, floor=0.5), np.full(n - 12, 0.5)], 0.01, 3)
    h = frame(train_loss=val - 0.1, val_loss=val, lr=lr)
    first = next((t for t in range(2, n + 1) if should_stop(h[:t], ["plateau"])), None)
    assert first is not None and first <= 35


def test_a_flat_plateau_is_reported_after_flat_patience_a_slow_descent_only_after_patience():
    n = 50
    val = noisy(np.r_[decay(10, tau=2, floor=0.5), np.full(n - 10, 0.5)], 0.003, 4)
    val[29] = 0.49  # a new low at epoch 30 restarts the wait
    h = frame(train_loss=val - 0.1, val_loss=val)
    first = lambda th: next(t for t in range(31, n + 1) if "plateau" in kinds(diagnose(h[:t], th)))  # noqa: E731
    assert first(Thresholds(flat_patience=4)) == 34 and first(Thresholds(flat_patience=10)) == 40
    f = [x for x in diagnose(h[:34]) if x.kind == "plateau"][0]
    assert f.evidence["wait"] == 4 and "flat trend" in f.message
    # still falling ~1% per 10 epochs with no new low for a while: not flat, so the full wait
    e = epochs(n)
    slow = 0.5 * (1 - 0.0012 * e)
    slow[20:28] = slow[19] + 0.0005
    h = frame(train_loss=slow - 0.1, val_loss=slow)
    assert "plateau" not in kinds(diagnose(h[:28]))


def test_a_rising_validation_loss_with_falling_training_loss_is_left_to_overfitting():
    # the short (flat) wait must not call the start of overfitting a plateau
    n = 30
    e = epochs(n)
    val = np.where(e <= 10, 1.0 - 0.05 * e, 0.5 + 0.004 * (e - 10))
    train = 1.0 * np.exp(-e / 5)
    h = frame(train_loss=train, val_loss=val)
    for t in range(11, n + 1):
        assert "plateau" not in kinds(diagnose(h[:t])), t


# A real run (digits, 300 training samples, 10% label noise, 512x512 MLP, batch 16, Adam 1e-3)
# that early-stopped at epoch 21 as a *plateau* although validation loss rose from its minimum
# 0.338 at epoch 9 to 0.378-0.385 while training loss fell from 0.095 to 0.013.
DIGITS_TRAIN = [1.6959, 0.7892, 0.5205, 0.3743, 0.2991, 0.2299, 0.1543, 0.1251, 0.0949, 0.0617, 0.0435, 0.0381,
                0.0371, 0.0296, 0.0231, 0.019, 0.0172, 0.018, 0.0251, 0.0134, 0.0137]
DIGITS_VAL = [0.8475, 0.4562, 0.3804, 0.3716, 0.3788, 0.3616, 0.3398, 0.3599, 0.338, 0.3618, 0.3419, 0.3601,
              0.3558, 0.3606, 0.3654, 0.3732, 0.373, 0.3727, 0.3764, 0.385, 0.3782]


def test_real_overfitting_run_is_stopped_as_overfitting_not_plateau():
    h = frame(train_loss=DIGITS_TRAIN, val_loss=DIGITS_VAL)
    stops = [(t, should_stop(h[:t], ["overfitting", "plateau"])) for t in range(2, len(h) + 1)]
    t, f = next((t, f) for t, f in stops if f is not None)
    assert f.kind == "overfitting" and f.start_epoch == 9 and t <= 21
    assert "overfitting" in f.message and "epoch 9" in f.message


def test_a_step_down_after_a_learning_rate_drop_restarts_the_plateau_clock():
    n = 60
    e = epochs(n)
    val = np.where(e < 30, 0.8, 0.5) + 0 * e
    val[:5] = [2.0, 1.5, 1.2, 1.0, 0.9]
    h = frame(val_loss=val, train_loss=val - 0.1, lr=np.where(e < 30, 0.1, 0.01))
    assert "plateau" in kinds(diagnose(h[:29]))
    assert "plateau" not in kinds(diagnose(h[:38]))
    assert "overfitting" not in kinds(diagnose(h))


def test_plateau_uses_training_loss_when_there_is_no_validation_loss():
    n = 40
    f = [x for x in diagnose(frame(train_loss=np.r_[decay(10, tau=2, floor=0.5), np.full(n - 10, 0.5)]))
         if x.kind == "plateau"][0]
    assert f.metric == "train_loss"


# ------------------------------------------------------------------ divergence and instability

@pytest.mark.parametrize("column", ["train_loss", "val_loss"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_mid_run_is_divergence(column, bad):
    n = 20
    cols = {"train_loss": decay(n, floor=0.2), "val_loss": decay(n, floor=0.3)}
    cols[column] = cols[column].copy()
    cols[column][11:] = bad
    f = diagnose(frame(**cols))[0]
    assert (f.kind, f.severity, f.start_epoch, f.end_epoch, f.metric) == ("divergence", "critical", 12, None, column)
    assert "epoch 12" in f.message


def test_a_single_nan_that_recovers_is_an_ended_divergence():
    train = decay(20, floor=0.2)
    train[7] = np.nan
    f = [x for x in diagnose(frame(train_loss=train)) if x.kind == "divergence"][0]
    assert (f.start_epoch, f.end_epoch) == (8, 8)


def test_an_explosion_is_unstable_at_once_and_divergence_once_it_persists():
    n = 30
    train = decay(n, floor=0.1)
    train[20:] = 50.0
    th = Thresholds(diverge_epochs=3)
    assert kinds(diagnose(frame(train_loss=train)[:21], th)) == ["unstable"]
    f = diagnose(frame(train_loss=train)[:23], th)[0]
    assert (f.kind, f.start_epoch) == ("divergence", 21)


def test_a_recovered_spike_is_unstable_with_an_end_epoch():
    n = 60
    train = decay(n, floor=0.1)
    train[10] = 2.0
    f = [x for x in diagnose(frame(train_loss=train)) if x.kind == "unstable"][0]
    assert (f.start_epoch, f.end_epoch) == (11, 11)


@pytest.mark.parametrize("seed", range(3))
def test_oscillating_training_loss_is_unstable(seed):
    n = 40
    rng = np.random.default_rng(seed)
    train = decay(n, floor=0.6) * np.where(np.arange(n) % 3 == 0, 1.4 + 0.1 * rng.random(n), 1.0)
    f = [x for x in diagnose(frame(train_loss=train)) if x.kind == "unstable"]
    assert f and f[0].end_epoch is None and "learning rate" in f[0].advice


def test_small_late_wiggles_of_a_near_zero_training_loss_are_not_unstable():
    n = 60
    train = decay(n, floor=0.0, tau=5) + 1e-4
    train[40::3] *= 1.5
    assert "unstable" not in kinds(diagnose(frame(train_loss=train)))


# ------------------------------------------------------------------ underfitting

def test_underfitting_for_a_high_flat_training_loss_with_a_small_gap():
    n = 40
    train = np.r_[np.linspace(2.3, 1.8, 5), np.full(n - 5, 1.8)]
    f = [x for x in diagnose(frame(train_loss=train, val_loss=train * 1.02)) if x.kind == "underfitting"]
    assert f and f[0].metric == "train_loss" and "underfitting" in f[0].message


def test_a_tiny_learning_rate_creep_is_underfitting_though_its_fall_is_significant():
    """Like the corpus's lr=1e-5 runs: 0.730 -> 0.727 in 60 smooth epochs. The fall is
    statistically certain (no noise) but projects far below 1% per patience: underfitting."""
    train = 0.73 * (1 - 0.00007 * (epochs(60) - 1))
    found = {f.kind: f for f in diagnose(frame(train_loss=train, val_loss=train * 1.01))}
    assert "underfitting" in found and "still_improving" not in found


def test_slow_but_material_learning_is_not_underfitting():
    """1.5% per 10 epochs from a high start: still learning at a rate that matters."""
    train = 1.1 * (1 - 0.0015 * (epochs(60) - 1))
    found = kinds(diagnose(frame(train_loss=train, val_loss=train * 1.01)))
    assert "underfitting" not in found and "plateau" not in found


def test_after_the_full_wait_a_smooth_creep_without_new_lows_that_matter_is_a_plateau():
    """A validation loss that creeps down 0.01% per epoch after its fall: each epoch is a new
    low by less than the minimum relative delta, the trend is significant (no noise) but
    projects 0.1% over the next patience epochs; after the full wait that is a plateau."""
    n = 45
    val = np.r_[decay(15, tau=3, floor=0.5), 0.5 * (1 - 0.0001 * np.arange(1, n - 14))]
    assert "plateau" in kinds(diagnose(frame(train_loss=val - 0.1, val_loss=val)))


def test_a_low_training_loss_plateau_is_not_underfitting():
    n = 40
    train = np.r_[np.linspace(2.3, 0.2, 5), np.full(n - 5, 0.2)]
    assert "underfitting" not in kinds(diagnose(frame(train_loss=train, val_loss=train * 1.02)))


# ------------------------------------------------------------------ gradients

def test_exploding_gradients_name_the_layers():
    n = 20
    g = np.full(n, 1.0)
    g[15:] = 40.0
    layers = pd.DataFrame({"epoch": epochs(n), "net.0.weight": np.where(epochs(n) > 15, 39.0, 0.8),
                           "net.2.weight": np.full(n, 0.5)})
    h = frame(train_loss=decay(n), grad_norm=g)
    f = [x for x in diagnose(h, layers=layers) if x.kind == "exploding_gradients"][0]
    assert f.start_epoch == 16 and f.end_epoch is None and f.evidence["layers"] == ["net.0.weight"]
    assert "net.0.weight" in f.message and "clipping" in f.advice


def test_gradient_norm_growing_by_orders_of_magnitude_is_exploding():
    n = 40
    g = np.r_[np.full(10, 1.0), 1.3 ** np.arange(1, n - 9)]   # never 10x its recent median
    f = [x for x in diagnose(frame(train_loss=decay(n), grad_norm=g)) if x.kind == "exploding_gradients"]
    assert f and 24 <= f[0].start_epoch <= 32 and "grown" in f[0].message and f[0].severity == "critical"


def test_a_decaying_gradient_norm_is_not_exploding():
    # large in the first epochs, 400x smaller later: what the old corpus label mistook for exploding
    n = 60
    g = 2.0 * np.exp(-(epochs(n) - 1) / 6) + 0.005
    assert "exploding_gradients" not in kinds(diagnose(frame(train_loss=decay(n, floor=0.01), grad_norm=g)))


def test_an_epoch_2_gradient_blow_up_is_exploding():
    g = np.r_[20.0, 2.6e8, np.full(10, 0.4)]
    f = [x for x in diagnose(frame(train_loss=decay(12), grad_norm=g)) if x.kind == "exploding_gradients"]
    assert f and (f[0].start_epoch, f[0].end_epoch) == (2, 2)
    assert "exploding_gradients" not in kinds(diagnose(frame(train_loss=decay(12), grad_norm=np.r_[1.0, 5.0, np.ones(10)])))


def test_a_gradient_spike_that_passes_has_an_end_epoch():
    g = np.full(30, 1.0)
    g[9] = 50.0
    f = [x for x in diagnose(frame(train_loss=decay(30), grad_norm=g)) if x.kind == "exploding_gradients"][0]
    assert (f.start_epoch, f.end_epoch, f.severity) == (10, 10, "warning")


def test_vanishing_gradients_name_the_layers():
    n = 15
    layers = pd.DataFrame({"epoch": epochs(n), "net.0.weight": np.full(n, 1e-7),
                           "net.2.weight": np.full(n, 1e-3), "net.4.weight": np.full(n, 0.5)})
    f = [x for x in diagnose(frame(train_loss=decay(n)), layers=layers) if x.kind == "vanishing_gradients"][0]
    assert f.evidence["layers"] == ["net.0.weight"] and "net.0.weight" in f.message


def test_a_collapsed_global_gradient_norm_with_a_high_loss_is_vanishing():
    n = 20
    g = np.r_[1.0, 0.1, np.full(n - 2, 1e-5)]
    train = np.full(n, 2.2)
    assert "vanishing_gradients" in kinds(diagnose(frame(train_loss=train, grad_norm=g)))
    assert "vanishing_gradients" not in kinds(diagnose(frame(train_loss=decay(n, floor=0.01, tau=2), grad_norm=g)))


def test_layer_rows_after_the_last_history_epoch_are_ignored():
    n = 15
    layers = pd.DataFrame({"epoch": epochs(n + 5), "a": np.r_[np.full(n, 1.0), np.full(5, 1e-9)],
                           "b": np.full(n + 5, 1.0)})
    assert "vanishing_gradients" not in kinds(diagnose(frame(train_loss=decay(n)), layers=layers))


# ------------------------------------------------------------------ input handling

def test_missing_columns_switch_off_detectors_and_other_columns_are_ignored():
    n = 40
    h = frame(val_loss=u_shape(n, 20, 0.03))
    h["notes"] = "x"
    h["test_loss"] = np.nan
    assert "overfitting" not in kinds(diagnose(h))
    assert diagnose(frame(lr=np.full(n, 0.1))) == []


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_very_short_runs_flag_nothing_but_divergence(n):
    h = frame(train_loss=np.linspace(2, 0.1, n)[::-1], val_loss=np.linspace(2, 3, n))
    assert [k for k in kinds(diagnose(h)) if k not in ("divergence", "unstable")] == []
    h2 = frame(train_loss=np.r_[np.linspace(2, 1, n - 1), np.nan])
    assert kinds(diagnose(h2)) == ["divergence"]


def test_unsorted_and_duplicated_epochs_are_read_in_epoch_order_last_row_wins():
    n = 40
    h = frame(train_loss=decay(n, floor=0.02), val_loss=u_shape(n, 20, 0.03))
    shuffled = pd.concat([h.iloc[::-1], h.iloc[[5]].assign(val_loss=9.0), h.iloc[[5]]])
    assert diagnose(shuffled) == diagnose(h)


def test_diagnose_does_not_modify_its_input_and_is_deterministic():
    n = 60
    h = frame(train_loss=noisy(decay(n, floor=0.02), 0.01, 1), val_loss=noisy(u_shape(n, 30, 0.02), 0.03, 2))
    before = h.copy()
    a, b = diagnose(h), diagnose(h)
    assert a == b and [f.to_dict() for f in a] == [f.to_dict() for f in b]
    pd.testing.assert_frame_equal(h, before)


@pytest.mark.parametrize("seed", range(3))
def test_findings_at_epoch_t_depend_only_on_rows_up_to_t(seed):
    rng = np.random.default_rng(seed)
    n = 70
    e = epochs(n)
    h = frame(train_loss=noisy(decay(n, floor=0.05), 0.02, seed), val_loss=noisy(u_shape(n, 35, 0.02), 0.03, seed + 1),
              val_acc=np.minimum(0.5 + 0.01 * e, 0.95), grad_norm=noisy(np.ones(n), 0.3, seed + 2),
              lr=np.where(e < 40, 0.1, 0.01))
    for t in range(1, n + 1):
        altered = h.copy()
        tail = altered.index[t:]
        for c in ("train_loss", "val_loss", "val_acc", "grad_norm", "lr"):
            altered.loc[tail, c] = rng.choice([np.nan, np.inf, 1e6, -1.0, 0.0], size=len(tail))
        assert diagnose(altered[:t]) == diagnose(h[:t])
        assert diagnose(h[:t]) == diagnose(h.iloc[:t].copy())


# ------------------------------------------------------------------ Finding and Thresholds

def test_finding_round_trips_through_json():
    n = 40
    f = diagnose(frame(train_loss=decay(n, floor=0.02), val_loss=u_shape(n, 20, 0.03)))[0]
    text = json.dumps(f.to_dict())
    back = Finding.from_dict(json.loads(text))
    assert back == f and back.to_dict() == f.to_dict()
    div = diagnose(frame(train_loss=np.r_[1.0, np.nan, np.nan]))[0]
    assert Finding.from_dict(json.loads(json.dumps(div.to_dict()))) == div


def test_finding_rejects_unknown_kinds_and_severities():
    with pytest.raises(ValueError, match="kind must be one of .*got 'bad'"):
        Finding("bad", "info", 1, None, "val_loss", "m", "a")
    with pytest.raises(ValueError, match="severity must be one of info, warning, critical, got 'loud'"):
        Finding("plateau", "loud", 1, None, "val_loss", "m", "a")


@pytest.mark.parametrize("kwargs,message", [
    ({"patience": -1}, "patience must be an int >= 1, got -1"),
    ({"patience": 2.5}, "patience must be an int >= 1, got 2.5"),
    ({"patience": True}, "patience must be an int >= 1, got True"),
    ({"trend_z": 0}, "trend_z must be a number > 0, got 0"),
    ({"grad_vanish_factor": 1.0}, "grad_vanish_factor must be a number > 0 and < 1, got 1.0"),
    ({"overfit_rise": float("nan")}, "overfit_rise must be a number >= 0, got nan"),
    ({"min_delta": "0.1"}, "min_delta must be a number >= 0, got '0.1'"),
])
def test_thresholds_reject_out_of_range_values_naming_field_value_and_range(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        Thresholds(**kwargs)


def test_thresholds_describe_every_field_with_its_default_for_help_text():
    rows = Thresholds.describe()
    assert [r[0] for r in rows] == list(Thresholds.names())
    assert ("patience", 10) == rows[0][:2] and all(r[2] for r in rows)
    assert all(isinstance(r[1], (int, float)) and not isinstance(r[1], bool) for r in rows)


def test_thresholds_from_name_value_pairs():
    th = Thresholds.from_pairs(["patience=12", "overfit-rise=0.05"])
    assert (th.patience, th.overfit_rise) == (12, 0.05) and isinstance(th.patience, int)
    with pytest.raises(ValueError, match="unknown threshold 'nope'; known: patience, "):
        Thresholds.from_pairs(["nope=1"])
    with pytest.raises(ValueError, match="patience must be a number, got 'ten'"):
        Thresholds.from_pairs(["patience=ten"])
    with pytest.raises(ValueError, match="threshold must be NAME=VALUE, got 'patience'"):
        Thresholds.from_pairs(["patience"])


# ------------------------------------------------------------------ should_stop

def test_should_stop_on_overfitting_returns_the_finding_with_the_best_epoch():
    n = 40
    h = frame(train_loss=decay(n, floor=0.02), val_loss=u_shape(n, 20, 0.03))
    f = should_stop(h, ["overfitting"])
    assert f is not None and f.kind == "overfitting" and f.start_epoch == 20
    assert should_stop(h, ["plateau"]) is None
    assert should_stop(h[:21], ["overfitting", "plateau"]) is None


def test_should_stop_on_a_plateau_only_when_asked():
    n = 40
    val = np.r_[decay(10, tau=2, floor=0.5), np.full(n - 10, 0.5)]
    h = frame(train_loss=val - 0.1, val_loss=val)
    assert should_stop(h, ["plateau"]).kind == "plateau"
    assert should_stop(h, ["overfitting"]) is None


def test_should_stop_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="kinds must be among overfitting, plateau, divergence, got 'unstable'"):
        should_stop(frame(val_loss=[1.0, 0.9]), ["unstable"])


def test_the_trainer_early_stops_on_exactly_the_kinds_should_stop_accepts():
    # issue 13: EARLY_STOP_KINDS (overfitting, plateau) and STOP_KINDS (with divergence)
    # disagreed, so --early-stop divergence was refused while should_stop took it
    from curvewatch.diagnosis import STOP_KINDS
    from curvewatch.trainer.config import EARLY_STOP_KINDS, validate
    assert set(EARLY_STOP_KINDS) == set(STOP_KINDS)
    for kind in STOP_KINDS:
        assert validate({"early_stop": kind}).early_stop == (kind,)
        assert stopping_finding([], [kind]) is None  # accepted, nothing to stop on
