"""Headline figures of the engine on the committed real-curve corpus (eval/corpus.jsonl.gz).

The exact table is in docs/diagnosis.md (`python -m eval.evaluate`); these pins leave honest
margins so that a regression fails while a harmless change of the last digit does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.evaluate import CORPUS, evaluate, load

pytestmark = pytest.mark.skipif(not Path(CORPUS).exists(), reason="eval/corpus.jsonl.gz not generated")


@pytest.fixture(scope="module")
def result():
    return evaluate(load())


def test_the_corpus_holds_at_least_150_real_runs(result):
    assert result["runs"] >= 150


def test_overfitting_is_flagged_with_high_precision_and_recall_within_10_epochs(result):
    of = result["kinds"]["overfitting"]
    assert of["labelled"] >= 30
    assert of["precision"] >= PIN["of_precision"] and of["recall"] >= PIN["of_recall"]
    assert of["median_delay"] <= PIN["of_delay"]


def test_default_early_stopping_has_less_regret_than_every_classic_rule_using_fewer_epochs(result):
    t = dict(result["tradeoff"])
    ours = t.pop("Curvewatch defaults (overfitting, plateau)")
    assert ours["epochs_fraction"] <= PIN["max_epochs"]
    for name, d in t.items():
        if d["epochs_fraction"] <= ours["epochs_fraction"]:
            assert ours["regret"] < d["regret"], name
    for rival in ("Keras patience 10", "ReduceLROnPlateau-style (rel 1e-4, patience 10)"):
        assert ours["regret"] <= t[rival]["regret"] / 4, rival


def test_default_early_stopping_regret_stays_small(result):
    assert result["tradeoff"]["Curvewatch defaults (overfitting, plateau)"]["regret"] <= PIN["max_regret"]


# measured on the committed corpus (docs/diagnosis.md): precision 0.91, recall 0.97, delay 10,
# early stopping 0.696 of the epochs at +0.0018 mean test-loss regret
PIN = {"of_precision": 0.85, "of_recall": 0.9, "of_delay": 11, "max_epochs": 0.72, "max_regret": 0.005}
