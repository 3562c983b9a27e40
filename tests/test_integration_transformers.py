"""curvewatch.transformers with the real transformers Trainer: a tiny randomly initialised BERT on
synthetic tokens (no download: HF_HUB_OFFLINE=1). Evaluation rounds become rows with HF's
fractional epoch kept, the training logs' loss, grad_norm and learning_rate are recorded, and
the diagnosis ends an overfitting run through control.should_training_stop."""
from __future__ import annotations

import importlib.util
import math
import os
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from curvewatch.tracking import read_history, read_run, read_steps

os.environ["HF_HUB_OFFLINE"] = "1"  # a test that tried to download would fail, not hang
# transformers is imported by the tests (through the helpers below), not here: collection
# imports every module on every worker, and transformers costs seconds of CPU; its group
# keeps its tests, and so that import, on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.xdist_group("transformers"),
              pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                 reason="transformers is not installed")]


@pytest.fixture(scope="module")
def CurvewatchCallback():  # the class, under its own name
    from curvewatch.transformers import CurvewatchCallback
    return CurvewatchCallback


class Tokens(torch.utils.data.Dataset):
    """Random 16-token sequences; the label says whether token 7 occurs (learnable) or is
    drawn at random (only memorised: the model overfits)."""

    def __init__(self, n: int, seed: int, random_labels: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(1, 50, (n, 16), generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g) if random_labels \
            else (self.x == 7).any(1).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "attention_mask": torch.ones(16, dtype=torch.long),
                "labels": self.y[i]}


def tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=2))


def accuracy(pred) -> dict[str, float]:
    return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}


def args(tmp: Path, **kw):
    from transformers import TrainingArguments
    opts = dict(output_dir=str(tmp / "hf"), report_to=[], use_cpu=True, save_strategy="no",
                disable_tqdm=True, seed=0, per_device_eval_batch_size=256)
    return TrainingArguments(**{**opts, **kw})


def hf_trainer(**kw):
    """transformers.Trainer(**kw)."""
    from transformers import Trainer
    return Trainer(**kw)


@pytest.fixture(scope="module")
def step_evals(tmp_path_factory, CurvewatchCallback):
    """Two epochs of 8 steps, evaluated every 5 steps (rounds at HF epochs 0.625, 1.25,
    1.875 and 2.0, the last at the end of training), training logs every 2 steps."""
    tmp = tmp_path_factory.mktemp("hf")
    callback = CurvewatchCallback(tmp / "runs", name="tiny-bert", tags=["hf"])
    trainer = hf_trainer(model=tiny_bert(), args=args(
        tmp, eval_strategy="steps", eval_steps=5, logging_steps=2, num_train_epochs=2,
        per_device_train_batch_size=16, learning_rate=1e-3),
        train_dataset=Tokens(128, 0), eval_dataset=Tokens(128, 1),
        compute_metrics=accuracy, callbacks=[callback])
    trainer.train()
    return callback.run.path, trainer.state.log_history


def test_each_evaluation_round_is_a_row_with_hf_fractional_epoch(step_evals):
    run_dir, logged = step_evals
    evals = [r for r in logged if "eval_loss" in r]
    history = read_history(run_dir)
    assert history["epoch"].tolist() == list(range(1, len(evals) + 1))
    assert history["hf_epoch"].tolist() == [r["epoch"] for r in evals]
    assert any(e != int(e) for e in history["hf_epoch"])
    assert history["step"].tolist() == [r["step"] for r in evals]
    assert history["val_loss"].tolist() == pytest.approx([r["eval_loss"] for r in evals])
    assert history["val_acc"].tolist() == pytest.approx([r["eval_accuracy"] for r in evals])


def test_training_logs_give_steps_and_the_rows_train_columns(step_evals):
    run_dir, logged = step_evals
    train_logs = [r for r in logged if "loss" in r]
    steps = read_steps(run_dir)
    assert steps["step"].tolist() == [r["step"] for r in train_logs]
    assert steps["loss"].tolist() == pytest.approx([r["loss"] for r in train_logs])
    assert steps["grad_norm"].tolist() == pytest.approx([r["grad_norm"] for r in train_logs])
    assert steps["lr"].tolist() == pytest.approx([r["learning_rate"] for r in train_logs])
    history = read_history(run_dir)
    first_round = [r for r in train_logs if r["step"] <= history["step"].iloc[0]]
    row = history.iloc[0]
    # every log covers 2 steps here, so the step-weighted mean is the plain mean
    assert row["train_loss"] == pytest.approx(np.mean([r["loss"] for r in first_round]))
    assert row["grad_norm"] == pytest.approx(np.mean([r["grad_norm"] for r in first_round]))
    assert row["lr"] == pytest.approx(first_round[-1]["learning_rate"])


def test_the_run_records_arguments_model_config_and_its_end(step_evals):
    run_dir, logged = step_evals
    info = read_run(run_dir)
    assert info.state == "completed" and info.name == "tiny-bert" and info.tags == ("hf",)
    assert info.config["learning_rate"] == 1e-3 and info.config["eval_steps"] == 5
    assert info.config["model_config"]["hidden_size"] == 16
    assert info.model["name"] == "BertForSequenceClassification"
    summary = next(r for r in logged if "train_runtime" in r)
    assert info.status["summary"]["train_loss"] == pytest.approx(summary["train_loss"])


def test_the_diagnosis_stops_an_overfitting_run_through_should_training_stop(
        tmp_path, CurvewatchCallback):
    callback = CurvewatchCallback(tmp_path / "runs", name="memorise",
                                  early_stop=("overfitting",))
    trainer = hf_trainer(model=tiny_bert(), args=args(
        tmp_path, eval_strategy="epoch", logging_strategy="epoch", num_train_epochs=60,
        per_device_train_batch_size=32, learning_rate=1e-2),
        train_dataset=Tokens(64, 0, random_labels=True),
        eval_dataset=Tokens(256, 1, random_labels=True), callbacks=[callback])
    trainer.train()
    rounds = trainer.state.global_step // 2  # 2 steps an epoch
    assert rounds < 60
    info = read_run(callback.run.path)
    assert info.state == "early_stopped"
    assert info.status["stopped_by"]["kind"] == "overfitting"
    assert info.epochs == 60  # planned rounds: one an epoch
    assert read_history(callback.run.path)["epoch"].iloc[-1] == rounds


def test_a_stop_file_ends_training_after_the_next_round_as_stopped(tmp_path,
                                                                  CurvewatchCallback):
    from transformers import TrainerCallback

    class StopAfterRound(TrainerCallback):
        """Asks the run to stop as the dashboard's Stop button does (a STOP file), after a
        round."""

        def __init__(self, callback, round_: int):
            self.callback, self.round = callback, round_

        def on_evaluate(self, args, state, control, **kwargs):
            if len(read_history(self.callback.run.path)) == self.round:
                (self.callback.run.path / "STOP").touch()

    callback = CurvewatchCallback(tmp_path / "runs", name="stopped")
    trainer = hf_trainer(model=tiny_bert(), args=args(
        tmp_path, eval_strategy="epoch", num_train_epochs=10, per_device_train_batch_size=64),
        train_dataset=Tokens(64, 0), eval_dataset=Tokens(64, 1),
        callbacks=[callback, StopAfterRound(callback, 2)])
    trainer.train()
    info = read_run(callback.run.path)
    assert info.state == "stopped" and info.status["stop_reason"] == "stop requested (STOP file)"
    assert read_history(callback.run.path)["epoch"].tolist() == [1, 2, 3]
    assert not (callback.run.path / "STOP").exists()


def test_unknown_early_stop_kinds_are_rejected_by_name(CurvewatchCallback):
    with pytest.raises(ValueError, match="'overfit'"):
        CurvewatchCallback(early_stop=("overfit",))


def test_evaluate_after_train_is_not_dropped_silently_and_train_again_is_a_new_run(
        tmp_path, CurvewatchCallback):
    callback = CurvewatchCallback(tmp_path / "runs", name="then-evaluate")
    trainer = hf_trainer(model=tiny_bert(), args=args(
        tmp_path, eval_strategy="epoch", num_train_epochs=1, per_device_train_batch_size=64),
        train_dataset=Tokens(64, 0), eval_dataset=Tokens(64, 1), callbacks=[callback])
    trainer.train()
    with pytest.warns(UserWarning, match="did not record evaluation metrics.*eval_loss"):
        trainer.evaluate()
    assert len(read_history(callback.run.path)) == 1
    first = callback.run.path
    trainer.train()  # again, with the same callback: a run of its own
    assert callback.run.path != first
    assert [read_run(p).state for p in (first, callback.run.path)] == ["completed"] * 2
    assert len(read_history(callback.run.path)) == 1


def quick_start() -> str:
    text = (ROOT / "docs" / "integrations.md").read_text()
    return text.split("<!-- transformers quick start -->", 1)[1].split("```python\n", 1)[1] \
        .split("```", 1)[0]


def test_the_quick_start_in_the_docs_is_the_example_and_runs(tmp_path, monkeypatch):
    example = ROOT / "examples" / "hf_quickstart.py"
    assert quick_start() in example.read_text()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(example), run_name="__main__")  # as `python hf_quickstart.py` runs it
    [run] = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert read_run(run).state in ("completed", "early_stopped")
    history = read_history(run)
    assert len(history) >= 2 and {"train_loss", "val_loss", "hf_epoch"} <= set(history.columns)
    assert all(math.isfinite(v) for v in history["val_loss"])
