"""Headline figures of the engine on the committed real-curve corpus (eval/corpus.jsonl.gz).

The exact table is in docs/diagnosis.md (`python -m eval.evaluate`); these pins leave honest
margins so that a regression fails while a harmless change of the last digit does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.evaluate import CORPUS, evaluate, load

pytestmark = [
    pytest.mark.skipif(not Path(CORPUS).exists(), reason="eval/corpus.jsonl.gz not generated"),
    pytest.mark.xdist_group("corpus"),  # one worker evaluates the corpus once for all its tests
]

OURS = "Curvewatch defaults (overfitting, plateau)"
RIVALS = ("Keras patience 10", "ReduceLROnPlateau-style (rel 1e-4, patience 10)")


@pytest.fixture(scope="module")
def result():
    return evaluate(load())


def test_the_corpus_holds_at_least_150_real_runs_and_the_noisy_healthy_additions(result):
    assert result["runs"] >= 200
    assert result["recipes"].get("noisy_healthy", 0) >= 35


def test_overfitting_is_flagged_with_high_precision_and_recall_within_10_epochs(result):
    of = result["kinds"]["overfitting"]
    assert of["labelled"] >= 40
    assert of["precision"] >= PIN["of_precision"] and of["recall"] >= PIN["of_recall"]
    assert of["median_delay"] <= PIN["of_delay"]


def test_default_early_stopping_at_keras_patience_10s_epochs_has_a_quarter_of_its_regret(result):
    t = dict(result["tradeoff"])
    ours = t.pop(OURS)
    for rival in RIVALS:  # about as many epochs (at most epochs_margin more), far less regret
        assert ours["epochs_fraction"] <= t[rival]["epochs_fraction"] + PIN["epochs_margin"], rival
        assert ours["regret"] <= t[rival]["regret"] / 4, rival


def test_default_early_stopping_lies_below_the_classic_trade_off_curve(result):
    t = dict(result["tradeoff"])
    ours = t.pop(OURS)
    assert ours["epochs_fraction"] <= PIN["max_epochs"]
    for name, d in t.items():
        if d["epochs_fraction"] <= ours["epochs_fraction"]:
            assert ours["regret"] < d["regret"], name


def test_default_early_stopping_regret_stays_small(result):
    assert result["tradeoff"][OURS]["regret"] <= PIN["max_regret"]


def test_noisy_but_healthy_runs_are_rarely_flagged(result):
    nh = result["noisy_healthy"]["all"]
    assert nh["runs"] >= 30 and nh["flagged"] / nh["runs"] <= PIN["max_false_alarms"]


def test_still_improving_at_the_end_and_exploding_gradients_by_their_definitions(result):
    si, eg = result["kinds"]["still_improving"], result["kinds"]["exploding_gradients"]
    assert si["precision"] >= PIN["si_precision"] and si["recall"] >= PIN["si_recall"]
    assert eg["labelled"] >= 5 and eg["precision"] >= 0.8 and eg["recall"] >= 0.8


def test_every_synthetic_edge_curve_passes(result):
    failed = [c["name"] for c in result["synthetic"] if not c["ok"]]
    assert failed == []


# measured on the committed corpus (docs/diagnosis.md, 203 runs): overfitting precision 0.91,
# recall 0.98, median delay 9; early stopping 0.705 of the epochs at -0.0058 mean test-loss
# regret (Keras patience 10: 0.706 / +0.0162, ReduceLROnPlateau-style 0.719 / +0.0159);
# 0 of 37 noisy-but-healthy runs flagged; still_improving 0.62 / 0.96; exploding 1.00 / 1.00.
# Issue 13 classes 1-2 (flat both ways, evidence of flatness) traded epochs for regret: before
# them 0.664 / +0.0027, and this test asked for 0.005 fewer epochs than the rivals (now: at most
# 0.01 more) and max_epochs 0.70 (now 0.72).
PIN = {"of_precision": 0.88, "of_recall": 0.93, "of_delay": 9, "epochs_margin": 0.01, "max_epochs": 0.72,
       "max_regret": 0.005, "max_false_alarms": 0.1, "si_precision": 0.55, "si_recall": 0.9}
