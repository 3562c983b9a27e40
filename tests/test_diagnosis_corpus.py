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
    assert of["median_delay"] < 10


def test_default_early_stopping_dominates_keras_patience_10_and_reduce_lr_style(result):
    t = result["tradeoff"]
    ours = t["Curvewatch defaults (overfitting, plateau)"]
    for rival in ("Keras patience 10", "ReduceLROnPlateau-style (rel 1e-4, patience 10)"):
        assert ours["regret"] <= t[rival]["regret"] + PIN["regret_margin"], rival
        assert ours["epochs_fraction"] <= t[rival]["epochs_fraction"] + PIN["epochs_margin"], rival


def test_default_early_stopping_regret_stays_small(result):
    assert result["tradeoff"]["Curvewatch defaults (overfitting, plateau)"]["regret"] <= PIN["max_regret"]


PIN = {"of_precision": 0.85, "of_recall": 0.85, "regret_margin": 0.0, "epochs_margin": 0.0, "max_regret": 0.03}
