"""`python -m trainer import LOGDIR`: TensorBoard logs written by torch's real SummaryWriter
become run folders with the format's columns, in the layouts PyTorch, Keras and Lightning
write, and bad input is refused with exit code 2 and nothing written."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from conftest import only_run, run_trainer
from diagnosis import diagnose
from tracking import list_runs, read_history, read_run
from tracking.tensorboard_import import column_for
from trainer.cli import main


def f32(x: float) -> float:
    return float(str(np.float32(x)))


def train_logging_to_tensorboard(logdir: Path, epochs: int = 4, **add_scalar) -> dict:
    """A plain PyTorch loop on breast_cancer that logs like most user code does: the training
    loss every step, validation loss and accuracy and the lr once an epoch."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    xt, xv, yt, yv = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(xt)
    xt, xv = (torch.tensor(scaler.transform(a), dtype=torch.float32) for a in (xt, xv))
    yt, yv = torch.tensor(yt), torch.tensor(yv)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = torch.nn.CrossEntropyLoss()
    logged = {"step_losses": [], "val_loss": [], "val_acc": [], "steps": []}
    writer, step = SummaryWriter(str(logdir)), 0
    for _ in range(epochs):
        model.train()
        epoch_losses = []
        for idx in torch.randperm(len(xt)).split(32):
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            step += 1
            writer.add_scalar("Loss/train", loss.item(), step, **add_scalar)
            epoch_losses.append(f32(loss.item()))
        model.eval()
        with torch.no_grad():
            out = model(xv)
            vl, va = loss_fn(out, yv).item(), (out.argmax(1) == yv).float().mean().item()
        writer.add_scalar("Loss/val", vl, step, **add_scalar)
        writer.add_scalar("Accuracy/val", va, step, **add_scalar)
        writer.add_scalar("lr-SGD", opt.param_groups[0]["lr"], step, **add_scalar)
        logged["step_losses"].append(epoch_losses)
        logged["val_loss"].append(f32(vl))
        logged["val_acc"].append(f32(va))
        logged["steps"].append(step)
    writer.close()
    return logged


@pytest.mark.parametrize("new_style", [False, True], ids=["simple_value", "tensor"])
def test_a_users_tensorboard_run_becomes_a_run_with_one_row_per_validation(new_style, tmp_path,
                                                                           runs_dir, capsys):
    logged = train_logging_to_tensorboard(tmp_path / "tb" / "baseline", new_style=new_style)
    assert main(["import", str(tmp_path / "tb"), "--runs-dir", str(runs_dir)]) == 0
    assert "val_loss <- Loss/val" in capsys.readouterr().out
    info = read_run(only_run(runs_dir))
    assert info.state == "completed" and info.name == "baseline" and "tensorboard" in info.tags
    h = read_history(info.path)
    assert h["epoch"].tolist() == [1, 2, 3, 4]
    assert h["step"].tolist() == logged["steps"]
    assert h["val_loss"].tolist() == logged["val_loss"]
    assert h["val_acc"].tolist() == logged["val_acc"]
    # the training loss of a row is the mean over that epoch's steps, as the trainer logs it
    assert h["train_loss"].tolist() == pytest.approx([sum(s) / len(s)
                                                      for s in logged["step_losses"]])
    assert h["lr"].tolist() == [0.05] * 4
    assert info.status["best_epoch"] == int(np.argmin(logged["val_loss"])) + 1


def test_importing_twice_skips_what_was_imported_and_dry_run_writes_nothing(tmp_path,
                                                                             runs_dir, capsys):
    train_logging_to_tensorboard(tmp_path / "tb" / "a", epochs=2)
    assert main(["import", str(tmp_path / "tb"), "--runs-dir", str(runs_dir),
                 "--dry-run"]) == 0
    assert "would import a: 2 epochs" in capsys.readouterr().out
    assert list(runs_dir.iterdir()) == []
    assert main(["import", str(tmp_path / "tb"), "--runs-dir", str(runs_dir)]) == 0
    first = only_run(runs_dir).name
    assert main(["import", str(tmp_path / "tb"), "--runs-dir", str(runs_dir)]) == 0
    assert f"skipped a: imported before as {first}" in capsys.readouterr().out
    assert only_run(runs_dir).name == first


def test_keras_and_add_scalars_layouts_read_as_one_run_each(tmp_path, runs_dir):
    tb = tmp_path / "tb"
    train, val = SummaryWriter(str(tb / "keras" / "train")), \
        SummaryWriter(str(tb / "keras" / "validation"))
    both = SummaryWriter(str(tb / "torch-add-scalars"))
    for epoch in range(5):
        train.add_scalar("epoch_loss", 1.0 - 0.1 * epoch, epoch)
        train.add_scalar("epoch_accuracy", 0.5 + 0.05 * epoch, epoch)
        val.add_scalar("epoch_loss", 1.2 - 0.1 * epoch, epoch)
        both.add_scalars("loss", {"train": 2.0 - 0.1 * epoch, "val": 2.5 - 0.1 * epoch},
                         epoch + 1)
    for w in (train, val, both):
        w.close()
    assert main(["import", str(tb), "--runs-dir", str(runs_dir)]) == 0
    runs = {r.name: r for r in list_runs(runs_dir)}
    assert set(runs) == {"keras", "torch-add-scalars"}
    keras = read_history(runs["keras"].path)
    assert keras["train_loss"].tolist() == [f32(1.0 - 0.1 * e) for e in range(5)]
    assert keras["val_loss"].tolist() == [f32(1.2 - 0.1 * e) for e in range(5)]
    assert keras["train_acc"].tolist() == [f32(0.5 + 0.05 * e) for e in range(5)]
    added = read_history(runs["torch-add-scalars"].path)
    assert added["val_loss"].tolist() == [f32(2.5 - 0.1 * e) for e in range(5)]
    assert added["step"].tolist() == [1, 2, 3, 4, 5]


def test_lightning_tags_group_steps_by_its_epoch_and_leave_an_unfinished_epoch_out(tmp_path,
                                                                                  runs_dir):
    w = SummaryWriter(str(tmp_path / "lightning_logs" / "version_0"))
    step = 0
    for epoch in range(3):
        for _ in range(4):
            w.add_scalar("train_loss_step", 1.0 + epoch, step)
            w.add_scalar("epoch", epoch, step)
            step += 1
        w.add_scalar("train_loss_epoch", 0.5 + epoch, step - 1)
        w.add_scalar("val_loss", 0.7 + epoch, step - 1)
        w.add_scalar("epoch", epoch, step - 1)
    w.add_scalar("train_loss_step", 9.0, step)  # the fourth epoch was cut off mid-way
    w.add_scalar("epoch", 3, step)
    w.close()
    assert main(["import", str(tmp_path / "lightning_logs"), "--runs-dir", str(runs_dir)]) == 0
    h = read_history(only_run(runs_dir))
    assert h["epoch"].tolist() == [1, 2, 3]
    assert h["train_loss"].tolist() == [0.5, 1.5, 2.5]  # the _epoch twin, not the _step one
    assert h["val_loss"].tolist() == [f32(0.7 + e) for e in range(3)]


def test_an_imported_overfitting_run_is_flagged_as_the_original_was(tmp_path, runs_dir):
    """A real overfitting run of the trainer, logged again through SummaryWriter the way a
    user's loop would, imports to the same curves (to float32) and the same findings."""
    done = run_trainer("run", "--dataset", "digits", "--train-size", "300", "--label-noise",
                       "0.1", "--hidden", "256,256", "--batch-size", "16", "--epochs", "40",
                       "--threads", "1", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    original = read_history(only_run(runs_dir))
    w = SummaryWriter(str(tmp_path / "tb" / "overfit"))
    for r in original.itertuples():
        for tag, v in (("train/loss", r.train_loss), ("val/loss", r.val_loss),
                       ("train/accuracy", r.train_acc), ("val/accuracy", r.val_acc),
                       ("grad_norm", r.grad_norm)):
            w.add_scalar(tag, v, r.step)
    w.close()
    imported_dir = tmp_path / "imported"
    assert main(["import", str(tmp_path / "tb"), "--runs-dir", str(imported_dir)]) == 0
    imported = read_history(only_run(imported_dir))
    for col in ("train_loss", "val_loss", "train_acc", "val_acc", "grad_norm"):
        assert imported[col].tolist() == [f32(v) for v in original[col]], col
    kinds = {f.kind for f in diagnose(original)}
    # a finding of a real run: over seeds 0-4 and 1-2 threads this configuration is diagnosed
    # overfitting from epoch 17-31 of its 40 on, and still at the end (bench/test_margins.py,
    # check `tb_overfit`); this test's seed 0 from epoch 25
    assert "overfitting" in kinds
    assert {f.kind for f in diagnose(imported)} == kinds


@pytest.mark.parametrize("tag, column", [
    ("Loss/train", "train_loss"), ("train_loss", "train_loss"), ("loss", "train_loss"),
    ("val/loss", "val_loss"), ("Loss/validation", "val_loss"), ("eval_loss", "val_loss"),
    ("validation/epoch_loss", "val_loss"), ("Accuracy/val", "val_acc"),
    ("train/acc", "train_acc"), ("lr-AdamW", "lr"), ("learning_rate", "lr"),
    ("train/grad_norm", "grad_norm"), ("epoch", "epoch"),
    ("loss/test", "loss_test"), ("val/loss_reg", "val_loss_reg"), ("time", "time_tb"),
])
def test_tags_map_to_columns_by_their_words(tag, column):
    assert column_for(tag)[0] == column


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "is not a directory"),
    (["{empty}"], "no TensorBoard event files (events.out.tfevents.*) under"),
    (["{tb}", "--map", "Loss/val"], "--map must be TAG=COLUMN"),
    (["{tb}", "--map", "Loss/val=step"], "--map column must be a name of letters"),
    (["{tb}", "--map", "Loss/val=val loss"], "--map column must be a name of letters"),
    (["{tb}", "--map", "Loss/vall=val_loss"], "--map names 'Loss/vall', which no run has"),
])
def test_bad_input_is_refused_with_exit_2_and_nothing_written(args, message, tmp_path,
                                                              runs_dir, capsys):
    (tmp_path / "empty").mkdir()
    train_logging_to_tensorboard(tmp_path / "tb" / "a", epochs=1)
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "tb": tmp_path / "tb"}
    assert main(["import", *(a.format(**paths) for a in args), "--runs-dir",
                 str(runs_dir)]) == 2
    assert message in capsys.readouterr().err
    assert list(runs_dir.iterdir()) == []


def test_map_overrides_and_drops_tags(tmp_path, runs_dir):
    w = SummaryWriter(str(tmp_path / "tb" / "custom"))
    for step in range(1, 4):
        w.add_scalar("objective/holdout", 1.0 / step, step)
        w.add_scalar("noise", math.pi, step)
    w.close()
    assert main(["import", str(tmp_path / "tb"), "--runs-dir", str(runs_dir),
                 "--map", "objective/holdout=val_loss", "--map", "noise="]) == 0
    h = read_history(only_run(runs_dir))
    assert h["val_loss"].tolist() == [1.0, 0.5, f32(1 / 3)]
    assert "noise" not in h.columns


def test_an_imported_run_opens_on_the_run_page_with_its_curves_and_findings(tmp_path,
                                                                            runs_dir,
                                                                            monkeypatch):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT
    train_logging_to_tensorboard(tmp_path / "tb" / "baseline", epochs=3)
    assert main(["import", str(tmp_path / "tb"), "--runs-dir", str(runs_dir)]) == 0
    run_id = only_run(runs_dir).name
    monkeypatch.setenv("CURVEWATCH_RUNS", str(runs_dir))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "run.py"), default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception
    assert at.title[0].value == "baseline"
    charts = [el.proto.spec for el in at.get("plotly_chart")]
    assert any('"val"' in spec and '"train"' in spec for spec in charts)


def test_a_tag_that_loses_its_column_to_another_keeps_one_of_its_own():
    from tracking.tensorboard_import import map_tags
    mapping = map_tags(["val/loss", "loss/val", "train_loss_step", "train_loss_epoch"])
    assert mapping["train_loss_epoch"] == "train_loss"
    assert mapping["train_loss_step"] == "train_loss_step"
    assert sorted([mapping["val/loss"], mapping["loss/val"]]) == ["loss_val", "val_loss"]
    # an override takes the column; the tag that had it is kept under its own name
    over = map_tags(["val/loss", "objective"], {"objective": "val_loss"})
    assert over == {"objective": "val_loss", "val/loss": "val_loss_tb"}
