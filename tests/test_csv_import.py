"""`python -m trainer import FILE.csv`: CSV logs become runs through the same row assembly as
TensorBoard logs: Lightning's CSVLogger metrics.csv (written by Lightning here), Keras'
CSVLogger log (its format, from a real training) and any CSV of numbers with --map; a file
that is none of them is refused with exit code 2, saying what it found and what is accepted."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import only_run
from curvewatch.tracking import read_history, read_run, read_steps
from curvewatch.trainer.cli import main
from import_logs import f32, keras_csv_run, lightning_run, sgd_loop, write_csv


@pytest.fixture(scope="module")
def lightning_csv(tmp_path_factory) -> tuple[Path, object]:
    """Lightning 2.x, 4 epochs with CSVLogger (and TensorBoardLogger): validation every 2nd
    epoch, train_loss every 50 steps, LearningRateMonitor, StepLR halving every 2 epochs."""
    save_dir = tmp_path_factory.mktemp("lightning_csv")
    logged = lightning_run(save_dir, epochs=4, check_val_every_n_epoch=2, lr_interval="default")
    return save_dir / "csv" / "version_0" / "metrics.csv", logged


def run_import(path: Path, runs_dir: Path, *args: str) -> int:
    return main(["import", str(path), "--runs-dir", str(runs_dir), *args])


@pytest.mark.parametrize("given", ["file", "folder"])
def test_lightning_csvlogger_metrics_become_a_run_by_epoch_with_its_hparams(
        given, lightning_csv, runs_dir, capsys):
    metrics, logged = lightning_csv
    path = metrics if given == "file" else metrics.parent.parent
    assert run_import(path, runs_dir) == 0
    assert "imported version_0 as" in capsys.readouterr().out
    run = only_run(runs_dir)
    info = read_run(run)
    assert "csv" in info.tags
    assert info.config["hidden"] == 16 and info.config["lr"] == 0.05  # hparams.yaml
    h = read_history(run)
    assert h["epoch"].tolist() == [1, 2, 3, 4]  # Lightning's epochs 0-3
    assert h.dropna(subset=["val_loss"])["epoch"].tolist() == \
        [e + 1 for e in logged.epochs("val_loss")]
    # the CSV has the float32 Lightning logged in full; `logged` as its shortest decimal
    assert [f32(v) for v in h["val_loss"].dropna()] == logged.values("val_loss")
    assert h["lr"].tolist() == [0.05 * 0.5 ** ((e - 1) // 2) for e in h["epoch"]]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for r in lines for v in r.values()), "a gap became NaN"


def test_keras_csvlogger_epochs_count_from_zero_and_map_by_name(tmp_path, runs_dir, capsys):
    logged = keras_csv_run(tmp_path / "training.log", epochs=4)["history"]
    assert run_import(tmp_path / "training.log", runs_dir) == 0
    out = capsys.readouterr().out
    assert "train_loss <- loss" in out and "val_acc <- val_accuracy" in out
    h = read_history(only_run(runs_dir))
    assert h["epoch"].tolist() == [1, 2, 3, 4]  # Keras' 0-3
    for col, key in (("train_loss", "loss"), ("val_loss", "val_loss"),
                     ("train_acc", "accuracy"), ("val_acc", "val_accuracy")):
        assert h[col].tolist() == logged[key], col  # the CSV has Keras' floats in full


def test_a_generic_csv_imports_with_map_and_keeps_a_logged_nan(tmp_path, runs_dir, capsys):
    rows: list[list[object]] = []
    sgd_loop(3, on_epoch=lambda e, s, vl, va, lr: rows.append([s, 1.5 * vl, vl]))
    rows.append([rows[-1][0] + 10, "", "nan"])  # a round whose holdout diverged
    path = write_csv(tmp_path / "log.csv", ["iteration", "objective", "holdout"], rows)
    assert run_import(path, runs_dir, "--map", "holdout=val_loss",
                      "--map", "objective=train_loss") == 0
    h = read_history(only_run(runs_dir))
    assert h["val_loss"].tolist()[:3] == [r[2] for r in rows[:3]]
    assert math.isnan(h["val_loss"].iloc[3])  # logged NaN: a divergence, kept
    assert "train_loss" in h["absent"].iloc[3]  # an empty cell: absent, not NaN


def test_update_appends_the_epochs_a_csv_log_gained(tmp_path, runs_dir, capsys):
    keras = keras_csv_run(tmp_path / "training.log", epochs=2)
    assert run_import(tmp_path / "training.log", runs_dir) == 0
    keras["more"](1)  # the training goes on; CSVLogger(append=True) adds its line
    assert run_import(tmp_path / "training.log", runs_dir) == 0
    assert "the log has 1 more: --update brings it up to date" in capsys.readouterr().out
    assert run_import(tmp_path / "training.log", runs_dir, "--update") == 0
    h = read_history(only_run(runs_dir))
    assert h["epoch"].tolist() == [1, 2, 3]
    assert h["val_loss"].tolist() == keras["history"]["val_loss"]
    assert read_steps(only_run(runs_dir)).empty


@pytest.mark.parametrize("content, message", [
    ("mean radius,mean texture,target\n17.99,10.38,0\n",
     "has the columns mean radius, mean texture, target: none of the kinds of CSV log "
     "accepted, which are Lightning's CSVLogger metrics.csv (epoch and step columns); Keras'"),
    ("epoch,loss\n0,abc\n", "line 2, column 'loss': 'abc' is not a number"),
    ("", "found no lines; a CSV log needs a header of two or more named columns"),
    ("\x00\x01binary", "a CSV log needs a header"),
])
def test_a_file_that_is_no_csv_log_is_refused_with_exit_2(content, message, tmp_path,
                                                          runs_dir, capsys):
    path = tmp_path / "data.csv"
    path.write_text(content)
    assert run_import(path, runs_dir) == 2
    assert message in capsys.readouterr().err
    assert list(runs_dir.iterdir()) == []
