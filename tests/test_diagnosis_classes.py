"""The failure classes of issue 13, each on formula curves (closed-form curves plus seeded noise)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from curvewatch.diagnosis import Thresholds, diagnose, should_stop, stopping_finding
from curvewatch.tracking import HistoryReader, Run, read_history
from eval.labels import label
from tests.diagnosis_cases import decay, epochs, noisy, u_shape

# ------------------------------------------------------------------ class 6: sparse metrics


def _log_sparse(tmp_path, val, *, every=2, nan_at=None, live=False):
    """A tracking.Run loop that logs train_loss every epoch and val_loss every `every`-th
    epoch (a logged NaN at `nan_at`); returns the history read back (and, with live=True,
    the frames a live follower saw after each epoch)."""
    n = val.size
    train = decay(n, start=2.3, floor=0.05, tau=10.0)
    frames = []
    with Run.create(tmp_path / "runs", name="sparse", epochs=n) as run:
        follower = HistoryReader(run.path)
        for e in range(1, n + 1):
            metrics = {"train_loss": float(train[e - 1])}
            if e % every == 0:
                metrics["val_loss"] = float("nan") if e == nan_at else float(val[e - 1])
            run.log_epoch(e, **metrics)
            if live:
                frames.append(follower.read())
        path = run.path
    return read_history(path), frames


def test_validation_every_second_epoch_is_no_divergence(tmp_path):
    val = noisy(decay(40, start=2.4, floor=0.3, tau=8.0), 0.01, seed=1)
    history, frames = _log_sparse(tmp_path, val, live=True)
    assert history["val_loss"].isna().sum() == 20  # the odd epochs have no validation
    for t in range(1, len(history) + 1):
        assert "divergence" not in [f.kind for f in diagnose(history.iloc[:t])], t
    # a live follower (appending reads) sees the same
    for t, frame in enumerate(frames, start=1):
        assert "divergence" not in [f.kind for f in diagnose(frame)], t


def test_a_logged_nan_in_a_sparse_metric_is_a_divergence(tmp_path):
    val = noisy(decay(30, start=2.4, floor=0.3, tau=8.0), 0.01, seed=2)
    history, frames = _log_sparse(tmp_path, val, nan_at=20, live=True)
    found = {f.kind: f for f in diagnose(history)}
    assert found["divergence"].start_epoch == 20
    assert found["divergence"].end_epoch == 20  # finite validation values came back at 22
    assert found["divergence"].metric == "val_loss"
    live = {f.kind: f for f in diagnose(frames[19])}  # right after epoch 20
    assert live["divergence"].start_epoch == 20 and live["divergence"].ongoing
    assert "divergence" not in [f.kind for f in diagnose(frames[18])]


def test_detectors_work_on_the_epochs_where_their_metric_exists(tmp_path):
    # a U-shaped validation loss measured every 3rd epoch: overfitting from its minimum
    val = u_shape(90, turn=30, slope=0.02)
    history, _ = _log_sparse(tmp_path, noisy(val, 0.005, seed=3), every=3)
    found = {f.kind: f for f in diagnose(history)}
    assert "divergence" not in found
    assert found["overfitting"].start_epoch % 3 == 0
    assert 24 <= found["overfitting"].start_epoch <= 36
    # and the epoch at which it is first reported is a validation epoch, a few checks later
    first = next(t for t in range(10, 91)
                 if "overfitting" in [f.kind for f in diagnose(history.iloc[:t])])
    assert first % 3 == 0 and first < 70


def test_a_flat_sparse_validation_loss_plateaus_in_validation_checks():
    n = 60
    e = epochs(n)
    val = noisy(0.5 + 1.8 * np.exp(-(e - 1) / 4.0), 0.003, seed=4)
    h = pd.DataFrame({"epoch": e, "train_loss": decay(n, floor=0.45, tau=4.0),
                      "val_loss": np.where(e % 2 == 0, val, np.nan),
                      "absent": np.where(e % 2 == 0, "", "val_loss")})
    found = {f.kind: f for f in diagnose(h)}
    assert "divergence" not in found
    assert found["plateau"].start_epoch % 2 == 0


def test_an_absent_column_in_a_hand_made_frame_marks_no_data():
    n = 30
    e = epochs(n)
    val = decay(n, start=2.4, floor=0.3)
    base = {"epoch": e, "train_loss": decay(n), "val_loss": np.where(e % 2 == 0, val, np.nan)}
    # without the column, a NaN is a logged NaN (the trainer's records, the eval corpus)
    assert "divergence" in [f.kind for f in diagnose(pd.DataFrame(base))]
    marked = pd.DataFrame({**base, "absent": np.where(e % 2 == 0, None, "val_loss")})
    assert "divergence" not in [f.kind for f in diagnose(marked)]


@pytest.mark.parametrize("every", [2, 5])
def test_sparse_noisy_healthy_run_gets_no_problem(tmp_path, every):
    val = noisy(decay(60, start=2.4, floor=0.3, tau=15.0), 0.01, seed=5 + every)
    history, _ = _log_sparse(tmp_path, val, every=every)
    problems = {f.kind for f in diagnose(history)} & {"divergence", "overfitting", "unstable"}
    assert not problems


def test_the_reader_and_the_engine_name_the_absent_column_alike():
    from curvewatch.diagnosis import ABSENT
    from curvewatch.tracking.reader import ABSENT as READER_ABSENT
    assert ABSENT == READER_ABSENT


def test_a_fully_logged_history_has_no_absent_column(tmp_path):
    val = decay(10, start=2.4, floor=0.3)
    history, _ = _log_sparse(tmp_path, val, every=1)
    assert "absent" not in history.columns


# ------------------------------------------------------------------ class 7: converged runs

def _converging(n=60, floor=0.05, seed=7):
    """A classifier-like run: validation loss from 2.3 to `floor`, training loss below it."""
    val = noisy(decay(n, start=2.3, floor=floor, tau=4.0), 0.01, seed)
    train = noisy(decay(n, start=2.2, floor=floor / 5, tau=4.0), 0.005, seed + 1)
    return pd.DataFrame({"epoch": epochs(n), "train_loss": train, "val_loss": val})


def test_a_run_that_converged_at_a_low_loss_is_converged_not_a_plateau_warning():
    h = _converging()
    found = {f.kind: f for f in diagnose(h)}
    assert "plateau" not in found
    f = found["converged"]
    assert f.severity == "info" and f.metric == "val_loss" and f.ongoing
    assert 15 <= f.start_epoch <= 40
    saved = 60 - f.start_epoch
    assert f.evidence["epochs_since_start"] == saved
    assert abs(f.evidence["gain_since_start"]) < 0.05  # the last epochs gained almost nothing
    assert "converged at" in f.message and f"would have saved {saved} epochs" in f.message
    assert f"by epoch {f.start_epoch}" in f.message


@pytest.mark.parametrize("floor", [0.6, 1.2])
def test_a_plateau_at_a_high_loss_stays_a_plateau_warning(floor):
    h = _converging(floor=floor)  # 26-52% of the first value: little learned
    found = {f.kind: f for f in diagnose(h)}
    assert "converged" not in found
    assert found["plateau"].severity == "warning"
    assert "of its first value" in found["plateau"].message


def test_early_stopping_on_plateau_still_stops_a_converged_run():
    h = _converging()
    stops = [t for t in range(2, len(h) + 1) if should_stop(h.iloc[:t], ["plateau"])]
    assert stops and should_stop(h.iloc[:stops[0]], ["plateau"]).kind == "converged"
    assert stops[0] <= 56
    assert should_stop(h, ["overfitting"]) is None
    # the trainer's --early-stop plateau goes through stopping_finding with its kinds
    assert stopping_finding(diagnose(h), ("plateau",)).kind == "converged"
    assert stopping_finding(diagnose(h), ("overfitting", "divergence")) is None


def test_the_run_chart_draws_a_converged_run_as_its_own_span():
    from curvewatch.dashboard import figures
    h = _converging()
    found = [f for f in diagnose(h) if f.kind == "converged"]
    fig = figures.learning_curve_figure(h, found)
    shapes = {s.name: s for s in fig.layout.shapes}
    assert shapes["flag-converged"].x0 == found[0].start_epoch and shapes["flag-converged"].x1 == 60


# ------------------------------------------------------------------ class 1: flat both ways

def _bump(seed, noise=0.01, height=0.08, at=40, width=6, n=70):
    """A validation loss that keeps falling 0.3% per epoch, with a bump that rises `height`
    over `width` epochs from epoch `at` and falls back; training loss as noisy as it."""
    e = epochs(n)
    base = (0.6 + 1.7 * np.exp(-(e - 1) / 4.0)) * (1 - 0.003 * e)
    b = np.clip(1 - np.abs(e - at - width) / width, 0, None) * height
    return pd.DataFrame({"epoch": e, "train_loss": noisy(base - 0.1, noise, seed + 1),
                         "val_loss": noisy(base * (1 + b), noise, seed)})


@pytest.mark.parametrize("seed", range(6))
def test_a_rising_stretch_is_not_flat_for_the_short_wait(seed):
    # before: the short (flat) wait took the rise as flat, since the noisy training loss did
    # not fall significantly, and stopped the run as a plateau at epochs 44-46
    h = _bump(seed)
    for t in range(30, 49):
        assert not {"plateau", "converged"} & {f.kind for f in diagnose(h.iloc[:t])}, t


def test_a_flat_curve_still_stops_after_the_short_wait():
    n = 50
    val = noisy(np.r_[decay(10, tau=2, floor=1.0), np.full(n - 10, 1.0)], 0.003, 4)
    val[29] = 0.99  # a new low at epoch 30
    h = pd.DataFrame({"epoch": epochs(n), "train_loss": val - 0.1, "val_loss": val})
    first = next(t for t in range(31, n + 1) if "plateau" in [f.kind for f in diagnose(h.iloc[:t])])
    assert first == 34  # 4 epochs after the new low, not 10


# ------------------------------------------------------------------ class 2: evidence of flatness

def _creeping(seed, noise=0.04, rate=0.003, n=80):
    """A noisy validation loss that still gains about 3% per 10 epochs to the end."""
    e = epochs(n)
    base = (1.0 + 1.3 * np.exp(-(e - 1) / 3.0)) * (1 - rate * np.maximum(e - 10, 0))
    return pd.DataFrame({"epoch": e, "train_loss": noisy(base - 0.1, noise / 4, seed + 1),
                         "val_loss": noisy(base, noise, seed)})


@pytest.mark.parametrize("seed", range(1, 6))
def test_a_noisy_curve_that_still_gains_is_not_a_plateau(seed):
    # before: "is the fall significant? no -> plateau" stopped these at epochs 34-50
    h = _creeping(seed)
    for t in range(2, len(h) + 1):
        assert not {"plateau", "converged"} & {f.kind for f in diagnose(h.iloc[:t])}, t


@pytest.mark.parametrize("seed", range(3))
def test_a_flat_plateau_is_still_reported_quiet_or_noisy(seed):
    # evidence of flatness must not switch the plateau off on noisy curves: the bound's
    # standard error shrinks as the flat segment grows
    n = 100
    e = epochs(n)
    base = 1.0 + 1.3 * np.exp(-(e - 1) / 3.0)
    for noise in (0.002, 0.04, 0.08):
        h = pd.DataFrame({"epoch": e, "train_loss": noisy(base - 0.1, noise / 4, seed + 1),
                          "val_loss": noisy(base, noise, seed)})
        first = next((t for t in range(2, n + 1) if should_stop(h.iloc[:t], ["plateau"])), None)
        assert first is not None and first <= 60, (noise, first)


# ------------------------------------------------------------------ class 9: advice that fits the run

def _overfit():
    n = 40
    return pd.DataFrame({"epoch": epochs(n), "train_loss": decay(n, floor=0.02),
                         "val_loss": u_shape(n, 20, 0.03)})


def test_advice_names_no_checkpoint_for_a_run_without_one():
    found = {f.kind: f for f in diagnose(_overfit())}  # an own loop, an import: no checkpoint
    advice = found["overfitting"].advice
    assert "best.pt" not in advice and "checkpoint (" not in advice
    assert "epoch 20" in advice and "if your loop saved them" in advice


def test_advice_names_the_checkpoint_a_run_has():
    found = {f.kind: f for f in diagnose(_overfit(), best_checkpoint="best.pt")}
    assert "keep the epoch-20 checkpoint (best.pt)" in found["overfitting"].advice
    stop = should_stop(_overfit(), ["overfitting"], best_checkpoint="best.pt")
    assert stop is not None and "best.pt" in stop.advice


@pytest.mark.parametrize("checkpoint", [None, "best.pt"])
def test_every_advice_names_only_what_exists(checkpoint):
    n = 40
    nan_val = decay(n, floor=0.3)
    nan_val[30:] = np.nan
    histories = [_overfit(), _converging(), _converging(floor=0.6),
                 pd.DataFrame({"epoch": epochs(n), "train_loss": decay(n), "val_loss": nan_val}),
                 pd.DataFrame({"epoch": epochs(n), "train_loss": decay(n, tau=30.0),
                               "val_loss": decay(n, tau=30.0) + 0.1})]
    kinds = set()
    for h in histories:
        for f in diagnose(h, best_checkpoint=checkpoint):
            kinds.add(f.kind)
            if checkpoint is None:
                assert "best.pt" not in f.advice and "checkpoint (" not in f.advice, f.kind
                assert "resume from the last checkpoint" not in f.advice, f.kind
            elif f.kind in ("overfitting", "plateau", "converged", "divergence"):
                assert "(best.pt)" in f.advice, f.kind
    assert {"overfitting", "plateau", "converged", "divergence", "still_improving"} <= kinds


def test_the_run_page_names_best_pt_only_when_the_run_folder_has_it(tmp_path):
    from curvewatch.dashboard import data
    from curvewatch.tracking import BEST
    from curvewatch.tracking.checkpoints import checkpoint_path
    run = tmp_path / "run"
    assert data.best_checkpoint(run) is None and data.best_checkpoint(None) is None
    path = checkpoint_path(run, BEST)
    path.parent.mkdir(parents=True)
    (tmp_path / "elsewhere.pt").write_bytes(b"x")
    path.symlink_to(tmp_path / "elsewhere.pt")
    assert data.best_checkpoint(run) is None  # a symlink is not the run's checkpoint
    path.unlink()
    path.write_bytes(b"x")
    assert data.best_checkpoint(run) == "best.pt"
    found = data.findings_for(_overfit(), None, None, run)
    assert "(best.pt)" in {f.kind: f for f in found}["overfitting"].advice
    found = data.findings_for(_overfit(), None, None, tmp_path / "no-checkpoints")
    assert "best.pt" not in {f.kind: f for f in found}["overfitting"].advice


# ------------------------------------------------------------------ class 8: cards agree with markers

def test_the_plateau_card_names_the_epochs_the_chart_marks():
    # a dip to 0.95 at epoch 20 (the chart's "best @ 20"), then the smoothed level still
    # creeps down 0.3% an epoch until epoch 30 without a new raw low, then stays flat
    n = 60
    e = epochs(n)
    val = np.where(e <= 20, 1.0 + 1.3 * np.exp(-(e - 1) / 3.0), 1.03 * (1 - 0.003 * np.minimum(e - 20, 10)))
    val = noisy(val, 0.001, 8)
    val[19] = 0.95
    h = pd.DataFrame({"epoch": e, "train_loss": val - 0.1, "val_loss": val})
    best = int(np.argmin(val)) + 1
    assert best == 20
    f = {x.kind: x for x in diagnose(h)}["plateau"]
    assert f"since epoch {f.start_epoch}" in f.message  # the shaded span's start
    assert f"lowest value 0.95 was at epoch {best}, {n - best} epochs ago" in f.message
    assert f"keep the best weights, those of epoch {best}," in f.advice


# ------------------------------------------------------------------ class 4: divergence at chance level

LN10 = float(np.log(10))  # the chance-level loss of a 10-class cross-entropy


def _exploded_in_epoch_one(n=30, seed=9):
    """Epoch 1's mean training loss is huge (the explosion), then both losses sit just above
    ln 10: the model predicts nothing and never learns again."""
    train = noisy(np.full(n, LN10 * 1.05), 0.01, seed)
    train[0] = 75.0
    val = noisy(np.full(n, LN10 * 1.02), 0.005, seed + 1)
    return pd.DataFrame({"epoch": epochs(n), "train_loss": train, "val_loss": val})


def test_an_explosion_inside_epoch_one_is_a_divergence_given_the_chance_level():
    # before: no minimum to be 10x above, so nothing (or a plateau) was reported
    h = _exploded_in_epoch_one()
    first = next((t for t in range(1, len(h) + 1)
                  if "divergence" in [f.kind for f in diagnose(h.iloc[:t], chance_loss=LN10)]), None)
    assert first == 4  # epoch 1 and diverge_epochs (3) epochs at chance after it
    f = {x.kind: x for x in diagnose(h, chance_loss=LN10)}["divergence"]
    assert f.start_epoch == 1 and f.ongoing and f.severity == "critical"
    assert "chance level 2.3" in f.message
    stop = should_stop(h.iloc[:4], ["divergence"], chance_loss=LN10)
    assert stop is not None and stop.kind == "divergence"
    assert not {"plateau", "overfitting", "converged"} & {x.kind for x in diagnose(h, chance_loss=LN10)}


def test_a_regression_loss_far_above_chance_after_an_explosion_is_left_running():
    # MSE of standardised targets (chance level 1.0): 1e11 in epoch 1, 1e7 forty epochs later.
    # Such a loss still falls by factors after stalls (a corpus run fell 10x after 10 epochs
    # without a new low), and stopping restores a checkpoint many times worse: no divergence
    n = 40
    e = epochs(n)
    train = noisy(1e7 + 1e11 * np.exp(-(e - 1) / 2.0), 0.05, 3)
    h = pd.DataFrame({"epoch": e, "train_loss": train, "val_loss": train * 3})
    for t in range(1, n + 1):
        assert "divergence" not in [f.kind for f in diagnose(h.iloc[:t], chance_loss=1.0)], t


def test_a_loss_at_chance_with_an_accuracy_that_shows_skill_is_no_divergence():
    # a 3-class run whose first epoch exploded (3e8) and whose loss then sits at ln 3 while it
    # classifies 97% of the validation set: badly calibrated, not diverged
    n, ln3 = 30, float(np.log(3))
    e = epochs(n)
    train = noisy(np.full(n, 1.1 * ln3), 0.01, 7)
    train[0] = 3e8
    h = pd.DataFrame({"epoch": e, "train_loss": train, "val_loss": train * 1.02,
                      "val_acc": np.minimum(0.97, 0.8 + 0.05 * e)})
    assert "divergence" not in [f.kind for f in diagnose(h, chance_loss=ln3)]
    chance_acc = h.assign(val_acc=0.34)  # the same losses at chance accuracy (1/3): diverged
    assert "divergence" in [f.kind for f in diagnose(chance_acc, chance_loss=ln3)]


def test_a_spike_on_a_run_that_never_learned_then_sits_at_chance_is_a_divergence():
    # the loss starts at chance (1.6x: not an explosion), spikes to 30x ln 2 at epoch 3 and
    # sits at chance from then on, never below it. before: only a first epoch counted
    n, ln2 = 30, float(np.log(2))
    train = noisy(np.full(n, 1.1 * ln2), 0.03, 5)
    train[0], train[2] = 1.6 * ln2, 30 * ln2
    h = pd.DataFrame({"epoch": epochs(n), "train_loss": train, "val_loss": noisy(np.full(n, 1.05 * ln2), 0.02, 6)})
    f = {x.kind: x for x in diagnose(h, chance_loss=ln2)}["divergence"]
    assert f.start_epoch == 3 and f.ongoing and "learned nothing" in f.message
    assert "divergence" not in [x.kind for x in diagnose(h.iloc[:5], chance_loss=ln2)]  # 2 epochs after


def test_a_loss_coming_down_from_an_explosion_in_epoch_one_is_no_divergence():
    # above chance for 5 epochs, but falling from 20x it towards a trained level: a model with
    # exploded logits can already predict well (accuracy up) while its loss is above chance
    n, ln2 = 30, float(np.log(2))
    e = epochs(n)
    train = ln2 * (0.25 + 20 * np.exp(-(e - 1) / 1.5))
    h = pd.DataFrame({"epoch": e, "train_loss": train, "val_loss": train * 1.1})
    assert (h["train_loss"].iloc[:5] > ln2).all()
    for t in range(1, n + 1):
        assert "divergence" not in [f.kind for f in diagnose(h.iloc[:t], chance_loss=ln2)], t


def test_a_slow_start_at_chance_level_is_no_divergence():
    # a saddle: flat at ln 10 for 25 epochs (first epoch at chance, not above it), then learning
    n = 60
    e = epochs(n)
    val = noisy(np.where(e <= 25, LN10, 0.3 + (LN10 - 0.3) * np.exp(-(e - 25) / 6.0)), 0.004, 10)
    h = pd.DataFrame({"epoch": e, "train_loss": val * 0.98, "val_loss": val})
    for t in range(1, n + 1):
        assert "divergence" not in [f.kind for f in diagnose(h.iloc[:t], chance_loss=LN10)], t


def _collapsed(n=60, at=35, seed=11):
    """Trained to 0.3, then a spike at epoch `at` puts the model back at ln 10 (7.7x the
    minimum: under the 10x explosion rule) and it stays there."""
    train = noisy(decay(n, start=2.2, floor=0.25, tau=6.0), 0.01, seed)
    val = noisy(decay(n, start=2.2, floor=0.3, tau=6.0), 0.01, seed + 1)
    train[at - 1:] = noisy(np.full(n - at + 1, LN10 * 1.01), 0.003, seed + 2)
    val[at - 1:] = noisy(np.full(n - at + 1, LN10 * 1.01), 0.003, seed + 3)
    return pd.DataFrame({"epoch": epochs(n), "train_loss": train, "val_loss": val})


@pytest.mark.parametrize("chance", [LN10, None])
def test_a_spike_that_collapses_the_model_to_chance_level_is_a_divergence(chance):
    # before: 2.3 / 0.25 is under explode_factor (10x), so no divergence ever; without the
    # chance level, the training loss's first value stands for the untrained level
    h = _collapsed()
    first = next((t for t in range(1, len(h) + 1)
                  if "divergence" in [f.kind for f in diagnose(h.iloc[:t], chance_loss=chance)]), None)
    assert first == 37  # the collapse at 35 plus two more epochs: diverge_epochs (3) at chance
    f = {x.kind: x for x in diagnose(h, chance_loss=chance)}["divergence"]
    assert f.start_epoch == 35 and f.ongoing and f.metric == "train_loss"
    assert "collapsed back to its untrained state" in f.message
    assert "overfitting" not in [x.kind for x in diagnose(h, chance_loss=chance)]


def test_a_collapse_to_chance_from_a_loss_only_1_5x_below_it_is_a_divergence_when_accuracy_shows_it():
    # a binary classifier that learned to 0.45 (0.65 ln 2, 80% accuracy), then collapses at
    # epoch 20 to ln 2 and 50% accuracy for good. before: the loss came back only 1.5x its
    # minimum (not chance_explode = 2x), so nothing; the accuracy says the skill is gone
    n, ln2 = 40, float(np.log(2))
    e = epochs(n)
    learned = 0.45 + 0.3 * np.exp(-(e - 1) / 3.0)
    train = noisy(np.where(e < 20, learned, 1.01 * ln2), 0.01, 3)
    val = noisy(np.where(e < 20, learned + 0.02, 1.0 * ln2), 0.01, 4)
    acc = np.where(e < 20, 0.8, 0.5)
    h = pd.DataFrame({"epoch": e, "train_loss": train, "val_loss": val, "val_acc": acc})
    f = {x.kind: x for x in diagnose(h, chance_loss=ln2)}["divergence"]
    assert f.start_epoch == 20 and f.ongoing
    # without an accuracy the 2x rule stands: a 1.5x return is not called a collapse
    assert "divergence" not in [x.kind for x in diagnose(h.drop(columns="val_acc"), chance_loss=ln2)]


def test_a_spike_that_recovers_is_no_divergence():
    h = _collapsed()
    h.loc[36:, ["train_loss", "val_loss"]] = [0.25, 0.3]  # back to trained two epochs later
    for t in range(1, len(h) + 1):
        found = diagnose(h.iloc[:t], chance_loss=LN10)
        assert "divergence" not in [f.kind for f in found], t


def test_overfitting_above_chance_level_is_overfitting_not_divergence():
    # noisy labels: the validation loss climbs past ln 10 while the training loss goes to 0
    n = 80
    h = pd.DataFrame({"epoch": epochs(n), "train_loss": decay(n, floor=0.01, tau=6.0),
                      "val_loss": u_shape(n, 15, 0.04, floor=0.6)})
    assert h["val_loss"].iloc[-1] > LN10
    found = {f.kind for f in diagnose(h, chance_loss=LN10)}
    assert "overfitting" in found and "divergence" not in found


def test_chance_loss_must_be_a_positive_number():
    h = _collapsed()
    for bad in (0, -1.0, float("nan"), float("inf"), "2.3", True):
        with pytest.raises(ValueError, match=r"chance_loss must be a finite number > 0.*got"):
            diagnose(h, chance_loss=bad)


# ------------------------------------------------------------------ class 5: no-skill minima

def test_a_rise_from_a_minimum_at_chance_level_is_not_overfitting():
    # random labels: the validation loss never leaves ln 10, then rises as the model memorises
    n = 60
    e = epochs(n)
    val = noisy(LN10 + np.where(e > 12, 0.012 * (e - 12), 0.0), 0.003, 12)
    h = pd.DataFrame({"epoch": e, "train_loss": decay(n, start=2.3, floor=0.8, tau=15.0),
                      "val_loss": val})
    assert "overfitting" in [f.kind for f in diagnose(h)]  # without the chance level: as before
    for t in range(2, n + 1):
        found = [f.kind for f in diagnose(h.iloc[:t], chance_loss=LN10)]
        assert "overfitting" not in found, t


def test_a_plateau_at_chance_level_is_not_a_plateau():
    # a saddle (or a dead start): flat at ln 10 for 40 epochs; stopping there would end a run
    # that has not begun to learn
    n = 40
    val = noisy(np.full(n, LN10), 0.004, 13)
    h = pd.DataFrame({"epoch": epochs(n), "train_loss": val * 1.01, "val_loss": val})
    assert should_stop(h, ["plateau"]) is not None  # without the chance level: as before
    for t in range(2, n + 1):
        assert should_stop(h.iloc[:t], ["overfitting", "plateau"], chance_loss=LN10) is None, t


def test_overfitting_of_an_overconfident_model_far_above_chance_is_still_judged():
    # a confident classifier: validation loss 2-4x ln 2 at 95% accuracy, rising from epoch 20;
    # far above chance is not at chance (only a minimum at 0.9-2x chance was never trained)
    n, ln2 = 60, float(np.log(2))
    h = pd.DataFrame({"epoch": epochs(n), "train_loss": decay(n, start=3.0, floor=0.01, tau=4.0),
                      "val_loss": u_shape(n, 20, 0.03, start=4.0, floor=1.5)})
    found = {f.kind: f for f in diagnose(h, chance_loss=ln2)}
    assert found["overfitting"] == {f.kind: f for f in diagnose(h)}["overfitting"]


def test_a_trained_plateau_and_overfitting_are_unchanged_by_the_chance_level():
    plateau = _converging(floor=0.6)
    assert [f.kind for f in diagnose(plateau, chance_loss=LN10)] == \
        [f.kind for f in diagnose(plateau)]
    assert {f.kind: f for f in diagnose(_overfit(), chance_loss=LN10)}["overfitting"] == \
        {f.kind: f for f in diagnose(_overfit())}["overfitting"]


def _noise_free_creep(tau, n=100):
    """A noise-free validation loss that approaches 0.1 (a quarter of its first value)
    exponentially: it sets a new low by more than min_delta every few epochs, so the wait
    restarts again and again while the gains stop mattering."""
    e = epochs(n)
    val = 0.1 + 0.3 * np.exp(-(e - 1) / tau)
    return pd.DataFrame({"epoch": e, "train_loss": val * 0.8, "val_loss": val})


def _plateau_stop(h, th=None):
    t = next((t for t in range(2, len(h) + 1) if should_stop(h.iloc[:t], ["plateau"], th)), None)
    return t, (should_stop(h.iloc[:t], ["plateau"], th) if t else None)


def test_a_noise_free_creep_too_small_to_matter_is_a_plateau_before_the_wait_completes():
    # before: only the wait stopped it, once the new lows had become smaller than min_delta
    h = _noise_free_creep(10)
    t, f = _plateau_stop(h)
    waited, _ = _plateau_stop(h, Thresholds(creep_level=0.0))  # the creep rule switched off
    assert t is not None and waited is not None and t < waited
    assert "creeping" in f.message and f.evidence["expected_gain_high"] <= Thresholds().plateau_gain


def test_a_slow_fall_that_still_gains_more_than_the_plateau_gain_is_no_plateau():
    h = _noise_free_creep(40)  # still 1.5% per 10 epochs at epoch 100
    assert not any(should_stop(h.iloc[:t], ["plateau"]) for t in range(50, 101, 5))


# ------------------------------------------------------------------ class 3: mild rises and bumps

def _first_stop(h, kinds=("overfitting",)):
    return next((t for t in range(2, len(h) + 1) if should_stop(h.iloc[:t], kinds)), None)


def _mild_rise_after_step_decay(seed, n=80, at=30, rise=0.04):
    """A learning-rate step (x0.1 at `at`) drops the validation loss by 20%; from 3 epochs
    later it drifts up 4% over 8 epochs and stays there, the training loss creeping down."""
    e = epochs(n)
    base = 0.5 + 1.8 * np.exp(-(e - 1) / 6.0)
    val = np.where(e < at, base, 0.8 * base) * (1 + np.where(e > at + 3, rise * np.minimum((e - at - 3) / 8, 1), 0))
    train = np.where(e < at, base - 0.1, 0.8 * base - 0.15) - 0.0005 * e
    return pd.DataFrame({"epoch": e, "train_loss": noisy(train, 0.005, seed + 1),
                         "val_loss": noisy(val, 0.01, seed), "lr": np.where(e < at, 0.1, 0.01)})


@pytest.mark.parametrize("seed", range(8))
def test_a_mild_rise_after_a_step_decay_is_not_overfitting(seed):
    # before: overfit_rise was 3%, and 4 of these 8 curves stopped as overfitting (epochs 44-63)
    assert _first_stop(_mild_rise_after_step_decay(seed)) is None


def _rise_giving_itself_back(seed, n=70, m=25, height=0.055):
    """The validation loss rises 5.5% in 3 epochs after its minimum at `m` (under twice the
    needed rise, no significant trend yet), then falls back 0.15% of its level an epoch."""
    e = epochs(n)
    base = 0.6 + 1.7 * np.exp(-(e - 1) / 4.0)
    b = np.where(e <= m, 0, np.where(e <= m + 3, height * (e - m) / 3, height - 0.0015 * (e - m - 3)))
    return pd.DataFrame({"epoch": e, "train_loss": noisy(base - 0.1 - 0.002 * e, 0.003, seed + 1),
                         "val_loss": noisy(base * (1 + b), 0.005, seed)})


@pytest.mark.parametrize("seed", range(8))
def test_a_rise_trending_back_down_is_not_confirmed_by_persistence(seed):
    # before: 'no new low for patience epochs and no falling trend since the minimum' confirmed
    # 6 of these 8 at epochs 34-36, while the values since the rise's peak were falling
    assert _first_stop(_rise_giving_itself_back(seed)) is None


def _bump_then_deeper(seed, n=80, at=30, width=6, height=0.09):
    """A validation loss that keeps falling 0.3% an epoch, with a 9% bump from epoch `at`
    (peak at at + width) that falls back to a deeper minimum; the training loss never bumps."""
    e = epochs(n)
    base = (0.6 + 1.7 * np.exp(-(e - 1) / 4.0)) * (1 - 0.003 * e)
    b = np.clip(1 - np.abs(e - at - width) / width, 0, None) * height
    return pd.DataFrame({"epoch": e, "train_loss": noisy(base - 0.1, 0.0025, seed + 1),
                         "val_loss": noisy(base * (1 + b), 0.005, seed)})


@pytest.mark.parametrize("seed", range(8))
def test_a_bump_falling_back_to_a_deeper_minimum_is_no_plateau(seed):
    h = _bump_then_deeper(seed)
    assert h["val_loss"].iloc[50:].min() < h["val_loss"].iloc[:30].min()  # deeper later
    # before: seeds 0, 2 and 4 stopped as plateaus at epoch 40, on the way back down (10
    # epochs without a new low, a flat trend over the bump's rise and fall together).
    # (A bump rising more than twice the needed rise still reads as the start of overfitting
    # while it rises: seed 7 stops as overfitting; see docs/diagnosis.md, class 3.)
    for t in range(40, 56):
        assert not {"plateau", "converged"} & {f.kind for f in diagnose(h.iloc[:t])}, t


def test_a_15_percent_bump_falling_back_to_a_deeper_minimum_is_possible_overfitting_not_a_stop():
    # before (one stage): a rise of twice the needed amount confirmed itself at once, and all 8
    # seeds stopped as overfitting at epochs 36-37, at the bump's peak
    stops, possible = [], []
    for seed in range(8):
        h = _bump_then_deeper(seed, height=0.15)
        assert h["val_loss"].iloc[45:].min() < h["val_loss"].iloc[:30].min()  # deeper by epoch 46
        seen = {t: diagnose(h.iloc[:t]) for t in range(31, 47)}  # the bump is over by epoch 43
        stops.append(next((t for t, fs in seen.items()
                           if stopping_finding(fs, ["overfitting", "plateau", "divergence"])), None))
        during = [f for fs in seen.values() for f in fs if f.kind == "possible_overfitting"]
        possible.append(bool(during) and all(f.severity == "info" for f in during))
    # (seed 7's noise puts the minimum 3 epochs before the bump: 10 rising epochs make a
    # significant trend at the peak, which no online rule can tell from the start of overfitting)
    assert sum(s is not None for s in stops) <= 1, stops
    assert sum(possible) >= 7, possible


#: The overfitting rule before a confirmation needed the label's size and the trend test its own z
#: (what commit 101749b's defaults did: persistence or a trend confirmed any rise above the needed
#: amount, and the trend test needed trend_z = 2.3).
_BEFORE_CONFIRM_GATE = Thresholds(overfit_confirm_rise=0.0, overfit_confirm_z=0.0, overfit_trend_z=2.3)


def _step_up(seed, rise, n=70, at=30, noise=0.005):
    """The validation loss steps up by `rise` (relative) after epoch `at` and stays there, no
    trend on either side; the training loss keeps falling."""
    e = epochs(n)
    base = 0.6 + 1.7 * np.exp(-(e - 1) / 4.0)
    return pd.DataFrame({"epoch": e, "train_loss": noisy(base - 0.1 - 0.002 * e, 0.003, seed + 1),
                         "val_loss": noisy(base * (1 + np.where(e > at, rise, 0)), noise, seed)})


def _stop_with(h, th):
    return next((t for t in range(2, len(h) + 1) if should_stop(h.iloc[:t], ["overfitting"], th)), None)


def test_persistence_alone_no_longer_confirms_a_rise_smaller_than_the_labels_5_percent():
    # A 4% step up that then stays flat: above the needed 3%, below the 5% (and 4 noise units) the
    # corpus label calls overfitting. Before, persistence (10 epochs without a new low) confirmed
    # it on all 8 seeds at epochs 38-58; now persistence needs the label's size, and only a
    # significant trend (seeds whose noise makes the step read as one) or more growth confirms it.
    before = [_stop_with(_step_up(seed, 0.04), _BEFORE_CONFIRM_GATE) for seed in range(8)]
    after = [_stop_with(_step_up(seed, 0.04), None) for seed in range(8)]
    assert all(s is not None for s in before), before
    assert sum(s is not None for s in after) <= 3, after
    # what is not confirmed is still shown: possible_overfitting (info) at the end of the run
    h = _step_up(1, 0.04)
    assert "possible_overfitting" in {f.kind for f in diagnose(h)}


def test_a_step_up_of_the_labels_size_still_stops_no_later_than_before():
    # an 8% step that stays: persistence still confirms it, and the trend test at overfit_trend_z
    # (1.96, the training loss falling too) confirms some seeds sooner than trend_z 2.3 did
    for seed in range(8):
        h = _step_up(seed, 0.08)
        before, after = _stop_with(h, _BEFORE_CONFIRM_GATE), _stop_with(h, None)
        assert before is not None and after is not None and after <= before, (seed, before, after)


def _lifted_then_receding(seed, n=120, m=15, lift=0.6, tau=30.0):
    """After its minimum at epoch `m` the validation loss is thrown up by 60-100% for 20 wild
    epochs (the training loss too), then settles 60% above the minimum and recovers towards
    it (time constant `tau`), ending within the label's 5%: a lift that is receding."""
    rng = np.random.default_rng(seed + 100)
    e = epochs(n)
    base = 0.3 + 2.0 * np.exp(-(e - 1) / 2.0)
    wild = (e > m) & (e <= m + 20)
    val = noisy(np.where(e <= m, base, 0.3 * (1 + lift * np.exp(-(e - m - 21) / tau))), 0.01, seed)
    val[wild] = 0.3 * (1 + lift) * (1 + 0.3 * np.abs(rng.normal(size=wild.sum())))
    train = noisy(base - 0.1 - 0.0005 * e, 0.005, seed + 1)
    train[wild] *= 1 + 0.3 * np.abs(rng.normal(size=wild.sum()))
    return pd.DataFrame({"epoch": e, "train_loss": train, "val_loss": val})


@pytest.mark.parametrize("seed", range(8))
def test_a_big_lift_trending_back_down_since_the_minimum_is_not_overfitting(seed):
    # before: a rise of overfit_clear_factor times the needed rise was confirmed whatever its
    # trend, and 6 of these 8 stopped as overfitting at epochs 53-67, while the values since the
    # minimum were falling significantly (the corpus's even half had one: a spike's aftermath)
    h = _lifted_then_receding(seed)
    assert "overfitting" not in label(h)  # hindsight: the level came back
    assert h["val_loss"].iloc[40:50].median() > 1.3 * h["val_loss"].iloc[:15].min()  # lifted
    assert _first_stop(h) is None


def _noise_clusters(seed, n=110, m=20, every=17, height=0.09):
    """A validation loss flat 2% above its minimum (2% noise) after epoch `m`, with a cluster of
    3 values 9% higher every `every` epochs; the training loss creeps down."""
    e = epochs(n)
    base = 0.3 + 2.0 * np.exp(-(e - 1) / 4.0)
    val = noisy(base * (1 + np.where(e > m, 0.02, 0)), 0.02, seed)
    for start in range(m + 10, n - 3, every):
        val[start:start + 3] *= 1 + height
    train = noisy(base - 0.1 - 0.0005 * e, 0.003, seed + 1)
    return pd.DataFrame({"epoch": e, "train_loss": train, "val_loss": val})


def test_a_cluster_of_three_high_values_on_a_flat_level_is_not_confirmed_by_persistence():
    # before: persistence judged the 5-epoch median alone, which 3 high values of 5 lift above
    # the label's 5%: 7 of these 8 stopped as overfitting at epochs 51-86; now the median of the
    # overfit_patience epochs that persistence waited must hold above the needed rise too
    stops = []
    for seed in range(8):
        h = _noise_clusters(seed)
        assert "overfitting" not in label(h)
        stops.append(_first_stop(h))
    assert sum(s is not None for s in stops) <= 1, stops


def _mild_rise_reversing(seed, rise, up, n=80, m=30, noise=0.005):
    """After its minimum at epoch `m` the validation loss rises by `rise` (relative) linearly over
    `up` epochs, holds 4 epochs, then falls to 1% below the minimum over 15; the training loss
    creeps down throughout."""
    e = epochs(n)
    base = 0.6 + 1.7 * np.exp(-(e - 1) / 4.0)
    x = e - m
    down = np.maximum(rise - (rise + 0.01) * (x - up - 4) / 15, -0.01)
    b = np.where(x <= 0, 0, np.where(x <= up, rise * x / up, np.where(x <= up + 4, rise, down)))
    return pd.DataFrame({"epoch": e, "train_loss": noisy(base - 0.1 - 0.002 * e, 0.003, seed + 1),
                         "val_loss": noisy(base * (1 + b), noise, seed)})


def test_a_mild_rise_with_a_rising_trend_that_reverses_is_not_confirmed():
    # 3-5% rises over 6 or 10 epochs that come back below the minimum: the hindsight label calls
    # none overfitting. Before, a significant rising trend confirmed any rise above the needed 3%
    # and 37 of these 48 stopped; now every confirmation needs the label's 5% (and 4 noise
    # units), so only a few 5% rises whose noise lifts the median over it for confirm epochs stop
    stops = {}
    for rise in (0.03, 0.04, 0.05):
        for up in (6, 10):
            hs = [_mild_rise_reversing(seed, rise, up) for seed in range(8)]
            assert not any("overfitting" in label(h) for h in hs)
            stops[rise, up] = [_first_stop(h) for h in hs]
    assert sum(s is not None for ss in stops.values() for s in ss) <= 6, stops
    below = [s for (rise, _), ss in stops.items() if rise < 0.05 for s in ss]
    assert sum(s is not None for s in below) <= 1, stops
    # what is not confirmed is still shown, as possible_overfitting (info), while it holds
    h = _mild_rise_reversing(0, 0.04, 6)
    assert "possible_overfitting" in {f.kind for f in diagnose(h.iloc[:40])}


@pytest.mark.parametrize("seed", range(4))
def test_a_sustained_rise_of_one_percent_an_epoch_stops_within_13_epochs_of_the_minimum(seed):
    e = epochs(80)
    base = 0.5 + 1.8 * np.exp(-(e - 1) / 6.0)
    val = base * (1 + np.where(e > 30, 0.01 * (e - 30), 0))
    h = pd.DataFrame({"epoch": e, "train_loss": noisy(base - 0.1 - 0.002 * e, 0.003, seed + 1),
                      "val_loss": noisy(val, 0.01, seed)})
    t = _first_stop(h)
    f = should_stop(h.iloc[:t], ["overfitting"])
    # the rise starts after epoch 30; the flat bottom before it puts the noisy minimum at 25-31
    # (13, not 12: a confirmation needs the label's 5%, which at 1% an epoch the median of the
    # last 5 values clears about 7 epochs after the minimum, and then `confirm` epochs more)
    assert f is not None and f.kind == "overfitting" and t - 30 <= 13
    assert 25 <= f.start_epoch <= 31  # the minimum, where best.pt is


# ------------------------------------------------------------------ the chance level: where it comes from

def test_the_logging_api_records_the_chance_level_loss_in_run_json(tmp_path):
    from curvewatch.tracking import read_run
    with Run.create(tmp_path / "runs", name="chance", chance_loss=LN10) as run:
        run.log_epoch(1, train_loss=2.0)
    assert read_run(run.path).data["chance_loss"] == pytest.approx(LN10)
    with Run.create(tmp_path / "runs", name="unknown") as run:
        run.log_epoch(1, train_loss=2.0)
    assert "chance_loss" not in read_run(run.path).data
    for bad in (0, -1.0, float("nan"), "2.3", True):
        with pytest.raises(ValueError, match=r"chance_loss must be a finite number > 0.*got"):
            Run.create(tmp_path / "bad", name="bad", chance_loss=bad)
    assert not (tmp_path / "bad").exists()  # rejected before any folder exists


@pytest.mark.parametrize("dataset, chance", [("digits", np.log(10)), ("wine", np.log(3)),
                                             ("tests.trainer_fixtures:regression_data", 1.0)])
def test_the_trainer_knows_the_chance_level_loss_of_its_task(dataset, chance):
    from curvewatch.trainer.config import validate
    from curvewatch.trainer.runner import describe, prepare
    trainer = prepare(validate({"dataset": dataset, "epochs": 1, "hidden": "8"}))
    data, _ = describe(trainer)  # what run.json's data holds
    # ln K for K classes; for MSE the variance of the (standardised) training target
    assert data["chance_loss"] == pytest.approx(chance, rel=1e-5)


def test_the_trainers_early_stopping_judges_with_the_chance_level():
    from curvewatch.trainer.config import validate
    from curvewatch.trainer.runner import _Diagnosis
    cfg = validate({"dataset": "digits", "epochs": 40, "early_stop": "overfitting,plateau"})
    val = noisy(np.full(40, LN10), 0.004, 13)  # flat at chance: not a plateau to stop on
    records = [{"epoch": e, "train_loss": v * 1.01, "val_loss": v}
               for e, v in zip(epochs(40), val, strict=True)]
    assert _Diagnosis(cfg).stop_finding(records) is not None  # without it, as before
    assert _Diagnosis(cfg, LN10).stop_finding(records) is None


def test_the_dashboard_diagnoses_with_the_chance_level_its_run_recorded(tmp_path):
    import json

    from curvewatch.dashboard import data
    h = _exploded_in_epoch_one()
    paths = {}
    for name, chance in (("known", LN10), ("unknown", None)):
        with Run.create(tmp_path / "runs", name=name, chance_loss=chance) as run:
            for row in h.itertuples():
                run.log_epoch(int(row.epoch), train_loss=row.train_loss, val_loss=row.val_loss)
        paths[name] = run.path
    found = data.findings_for(read_history(paths["known"]), None, None, paths["known"])
    assert {f.kind: f for f in found}["divergence"].start_epoch == 1
    found = data.findings_for(read_history(paths["unknown"]), None, None, paths["unknown"])
    assert "divergence" not in [f.kind for f in found]
    # a hand-edited run.json with a bad value: an error naming it, not a silent guess
    info = json.loads((paths["unknown"] / "run.json").read_text())
    info["data"]["chance_loss"] = "ln 10"
    (paths["unknown"] / "run.json").write_text(json.dumps(info))
    with pytest.raises(data.DiagnosisFailed, match="chance_loss must be a finite number > 0.*'ln 10'"):
        data.findings_for(read_history(paths["unknown"]), None, None, paths["unknown"])


# ------------------------------------------------------------------ plateau or the start of overfitting

def _u_bottom(seed, n=80, low=22, flat=14, rise=0.005, noise=0.01, train_noise=None, tau=14.0):
    """A validation loss that settles by epoch `low`, stays flat for `flat` epochs, then rises by
    `rise` per epoch, while the training loss falls all along (the generalisation gap grows);
    the training loss's noise is half the validation loss's unless given."""
    e = epochs(n)
    val = 0.5 + 1.8 * np.exp(-(e - 1) / 4.0) + rise * np.maximum(e - low - flat, 0)
    train = decay(n, start=2.2, floor=0.02, tau=tau)
    return pd.DataFrame({"epoch": e, "val_loss": noisy(val, noise, seed),
                         "train_loss": noisy(train, noise / 2 if train_noise is None else train_noise,
                                             seed + 1)}, columns=["epoch", "train_loss", "val_loss"])


def _stopping_finding(h):
    """The finding that stops an online replay of `h` at overfitting or a plateau (where
    _first_stop gives its epoch)."""
    return next(f for t in range(2, len(h) + 1)
                if (f := should_stop(h.iloc[:t], ["overfitting", "plateau"])) is not None)


@pytest.mark.parametrize("seed", range(8))
def test_the_flat_bottom_of_an_overfitting_curve_stops_as_overfitting_not_a_plateau(seed):
    # before: the wait ran out on the flat bottom and 6 of 8 seeds stopped as plateaus at 38-41
    assert _stopping_finding(_u_bottom(seed)).kind == "overfitting"


def test_a_flat_validation_loss_with_a_falling_training_loss_waits_gap_patience_then_plateaus():
    h = _u_bottom(3, rise=0.0)  # no rise ever comes
    th = Thresholds()
    t, f = _plateau_stop(h)
    early, _ = _plateau_stop(h, Thresholds(gap_patience=th.patience))  # the longer wait switched off
    assert f is not None and f.evidence["patience"] == th.gap_patience
    assert f.evidence["wait"] >= th.gap_patience
    assert early is not None and t is not None and early < t


def _lifting(seed):
    """A noisy validation loss that settles by epoch 22 and then lifts by 0.0012 an epoch (a
    quarter of a percent of its level), too slowly for its noise to make the rise significant
    soon, while the training loss falls all along."""
    return _u_bottom(seed, n=100, flat=0, rise=0.0012, noise=0.04, train_noise=0.01, tau=25.0)


@pytest.mark.parametrize("seed", range(8))
def test_a_lifting_bottom_while_the_gap_grows_is_left_to_overfitting_not_a_plateau(seed):
    # before: gap_patience ran out while the level sat 4-6% above its best and 5 of 8 seeds
    # stopped as plateaus at 46-51; a level more than overfit_rise above its best is no plateau
    assert _stopping_finding(_lifting(seed)).kind == "overfitting"


def test_raw_lows_smaller_than_the_improvement_margin_do_not_restart_the_wait():
    # a settled loss whose every third value dips 0.0004 below its lowest (more than min_delta,
    # less than min_rel_delta of the level): before, each dip was a record that restarted the
    # wait and no plateau ever came; the smoothed level never moves
    n = 70
    e = epochs(n)
    val = 0.6 + 0.3 * np.exp(-(e - 1) / 2.0)
    for i in range(20, n, 3):
        val[i] = val[:i].min() - 0.0004
    h = pd.DataFrame({"epoch": e, "train_loss": val * 0.9, "val_loss": val})
    th = Thresholds()
    assert 0.0004 > th.min_delta and 0.0004 < th.min_rel_delta * 0.6
    t, f = _plateau_stop(h)
    assert t is not None and t <= 20 + th.patience + th.window


def _rising(seed, n=60, at=20, rate=0.01, noise=0.01):
    """A validation loss rising by `rate` of its level per epoch from epoch `at`; the training
    loss flat (so no overfitting finding: nothing says the model memorises)."""
    e = epochs(n)
    base = 0.5 + 1.8 * np.exp(-(e - 1) / 4.0)
    return pd.DataFrame({"epoch": e, "train_loss": noisy(base * 0.9, noise, seed + 1),
                         "val_loss": noisy(base * (1 + rate * np.maximum(e - at, 0)), noise, seed)})


@pytest.mark.parametrize("seed", range(8))
def test_a_validation_loss_that_rises_significantly_is_not_a_plateau_after_the_full_wait(seed):
    # before: the full wait only asked for no gain, so a steady rise was a plateau at 31-38
    # (6 of 8 seeds); flat means flat both ways there too
    h = _rising(seed)
    for t in range(2, len(h) + 1):
        assert not {"plateau", "converged"} & {f.kind for f in diagnose(h.iloc[:t])}, t
