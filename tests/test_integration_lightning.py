"""curvewatch.lightning with the real Lightning: CurvewatchLogger writes one row per epoch with
the values Lightning logged (checked against Lightning's own CSVLogger in the same fit),
DiagnosisEarlyStopping ends an overfitting run, and the quick start in docs/integrations.md
runs as written."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import runpy
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import pytest

from conftest import ROOT
from curvewatch.diagnosis import diagnose
from curvewatch.tracking import read_history, read_layers, read_run, read_steps

# Lightning is imported by the fixture `lit` (tests/lightning_digits.py), not here: collection
# imports every module on every worker, and Lightning with what it pulls in costs seconds of
# CPU; its group keeps its tests, and so that import, on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.xdist_group("lightning"),
              pytest.mark.skipif(importlib.util.find_spec("lightning") is None,
                                 reason="lightning is not installed")]


@pytest.fixture(scope="module")
def lit() -> ModuleType:
    """tests/lightning_digits.py: Lightning, the model, its data and a Trainer."""
    import lightning_digits
    return lightning_digits


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, lit):
    """One 4-epoch fit validating every 2nd epoch, logged by Curvewatch and by Lightning's
    CSVLogger side by side."""
    tmp = tmp_path_factory.mktemp("lightning")
    lit.torch.manual_seed(0)
    cw = lit.CurvewatchLogger(tmp / "runs", name="digits-lightning", tags=["pl"])
    csv_logger = lit.CSVLogger(tmp / "csv", name="digits")
    t = lit.trainer(tmp, max_epochs=4, check_val_every_n_epoch=2, logger=[cw, csv_logger],
                    callbacks=[lit.GradNormMonitor()])
    t.fit(lit.Digits(lr=3e-3, step_loss=True), *lit.loaders(400, 64))
    with open(Path(csv_logger.log_dir) / "metrics.csv") as f:
        logged = list(csv.DictReader(f))
    return cw.run.path, logged


def csv_values(logged: list[dict], name: str) -> dict[int, list[float]]:
    """Lightning epoch -> the values CSVLogger wrote for `name`, in order."""
    out: dict[int, list[float]] = {}
    for row in logged:
        if row.get(name):
            out.setdefault(int(row["epoch"]), []).append(float(row[name]))
    return out


def test_a_run_folder_gets_one_row_per_epoch_counted_from_1(fitted):
    run_dir, _ = fitted
    history = read_history(run_dir)
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    info = read_run(run_dir)
    assert info.state == "completed" and info.name == "digits-lightning"


def test_rows_hold_the_values_lightning_logged(fitted):
    run_dir, logged = fitted
    history = read_history(run_dir).set_index("epoch")
    for name, column in [("train_loss_epoch", "train_loss"), ("train_acc_epoch", "train_acc"),
                         ("grad_norm_epoch", "grad_norm")]:
        by_epoch = csv_values(logged, name)
        assert sorted(by_epoch) == [0, 1, 2, 3], name
        for epoch, [value] in by_epoch.items():
            assert history.loc[epoch + 1, column] == pytest.approx(value, rel=1e-6), name
    for name in ("val_loss", "val_acc"):
        by_epoch = csv_values(logged, name)
        assert sorted(by_epoch) == [1, 3]  # check_val_every_n_epoch=2
        for epoch, [value] in by_epoch.items():
            assert history.loc[epoch + 1, name] == pytest.approx(value, rel=1e-6)


def test_epochs_without_validation_leave_val_absent_not_nan_and_no_divergence(fitted):
    run_dir, _ = fitted
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert ["val_loss" in line for line in lines] == [False, True, False, True]
    history = read_history(run_dir)
    assert history["absent"].tolist()[0::2] == ["val_acc,val_loss"] * 2
    kinds = {f.kind for f in diagnose(history)}
    assert "divergence" not in kinds


def test_hyperparameters_fill_the_config_and_tags_are_kept(fitted):
    run_dir, _ = fitted
    info = json.loads((run_dir / "run.json").read_text())
    assert info["config"] == {"lr": 3e-3, "hidden": 64, "step_loss": True,
                              "fail_at_epoch": None}
    assert info["tags"] == ["pl"]


def test_per_step_values_go_to_steps_and_gradient_norms_to_layers(fitted):
    run_dir, logged = fitted
    steps = read_steps(run_dir)
    by_epoch = csv_values(logged, "train_loss_step")
    step_losses = [v for epoch in sorted(by_epoch) for v in by_epoch[epoch]]
    assert steps["loss"].tolist() == pytest.approx(step_losses, rel=1e-6)
    assert steps["grad_norm"].notna().all()
    layers = read_layers(run_dir)
    assert layers["epoch"].tolist() == [1, 2, 3, 4]
    assert {"net.0.weight", "net.4.bias"} <= set(layers.columns)
    assert (layers.drop(columns="epoch") > 0).all().all()


def test_diagnosis_early_stopping_ends_an_overfitting_run(tmp_path, lit):
    lit.torch.manual_seed(0)
    cw = lit.CurvewatchLogger(tmp_path / "runs", name="overfit")
    stopper = lit.DiagnosisEarlyStopping(kinds=("overfitting",))
    t = lit.trainer(tmp_path, max_epochs=100, logger=cw, callbacks=[stopper])
    t.fit(lit.Digits(lr=1e-2, hidden=256), *lit.loaders(100, 100, label_noise=0.3))
    assert t.current_epoch < 100 and stopper.finding is not None
    info = read_run(cw.run.path)
    assert info.state == "early_stopped"
    assert info.status["stopped_by"]["kind"] == "overfitting"
    assert info.status["stop_reason"] == stopper.finding.message
    history = read_history(cw.run.path)
    # the row the decision was made on is the last one: Lightning trained no epoch after it
    assert history["epoch"].tolist() == list(range(1, t.current_epoch + 1))
    assert stopper.stopped_epoch + 1 == history["epoch"].iloc[-1]
    assert "overfitting" in {f.kind for f in diagnose(history) if f.ongoing}


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_learning_rate_monitor_lr_lands_in_the_epoch_that_used_it(tmp_path, interval, lit):
    """LearningRateMonitor logs without Lightning's epoch, at the start of an epoch or a
    batch; each row's lr is the one that epoch trained with."""
    cw = lit.CurvewatchLogger(tmp_path / "runs", name="lr")
    t = lit.trainer(tmp_path, max_epochs=4, logger=cw, log_every_n_steps=1,
                    callbacks=[lit.LearningRateMonitor(logging_interval=interval)])
    t.fit(lit.Scheduled(lr=1e-2), *lit.loaders(64, 32))
    history = read_history(cw.run.path)
    assert history["lr"].tolist() == pytest.approx([1e-2 * 0.5 ** e for e in range(4)])
    steps = read_steps(cw.run.path)
    losses = steps.dropna(subset=["loss"]).groupby("epoch")["loss"].mean()
    assert history["train_loss"].tolist() == pytest.approx(losses.tolist())


def test_two_validations_an_epoch_give_the_row_the_epochs_last(tmp_path, lit):
    cw = lit.CurvewatchLogger(tmp_path / "runs", name="half-epoch-val")
    csv_logger = lit.CSVLogger(tmp_path / "csv")
    t = lit.trainer(tmp_path, max_epochs=2, logger=[cw, csv_logger], val_check_interval=0.5)
    t.fit(lit.Digits(), *lit.loaders(256, 32))
    with open(Path(csv_logger.log_dir) / "metrics.csv") as f:
        val = csv_values(list(csv.DictReader(f)), "val_loss")
    assert [len(val[e]) for e in (0, 1)] == [2, 2]
    history = read_history(cw.run.path)
    assert history["val_loss"].tolist() == pytest.approx([val[0][-1], val[1][-1]], rel=1e-6)


def test_a_stop_file_ends_training_at_the_epoch_end_as_stopped(tmp_path, lit):
    cw = lit.CurvewatchLogger(tmp_path / "runs", name="stop-button")
    t = lit.trainer(tmp_path, max_epochs=20, logger=cw,
                    callbacks=[lit.StopAtEpoch(cw, 1), lit.DiagnosisEarlyStopping()])
    t.fit(lit.Digits(), *lit.loaders(64, 64))
    info = read_run(cw.run.path)
    assert info.state == "stopped" and info.status["stop_reason"] == "stop requested (STOP file)"
    assert read_history(cw.run.path)["epoch"].tolist() == [1, 2]


def test_diagnosis_early_stopping_rejects_unknown_kinds(lit):
    with pytest.raises(ValueError, match="'overfit'"):
        lit.DiagnosisEarlyStopping(kinds=("overfit",))


def test_diagnosis_early_stopping_without_a_curvewatch_logger_says_so(tmp_path, lit):
    t = lit.trainer(tmp_path, max_epochs=1, logger=lit.CSVLogger(tmp_path),
                    callbacks=[lit.DiagnosisEarlyStopping()])
    with pytest.raises(ValueError, match="needs a CurvewatchLogger.*CSVLogger"):
        t.fit(lit.Digits(), *lit.loaders(64, 64))


def test_an_exception_in_training_marks_the_run_failed_with_its_traceback(tmp_path, lit):
    cw = lit.CurvewatchLogger(tmp_path / "runs", name="broken")
    t = lit.trainer(tmp_path, max_epochs=3, logger=cw)
    with pytest.raises(RuntimeError, match="the data loader broke"):
        t.fit(lit.Digits(fail_at_epoch=1), *lit.loaders(64, 64))
    info = read_run(cw.run.path)
    assert info.state == "failed"
    assert "the data loader broke" in info.status["error"]
    assert read_history(cw.run.path)["epoch"].tolist() == [1]


def test_metrics_logged_after_fit_are_not_dropped_silently(tmp_path, lit):
    cw = lit.CurvewatchLogger(tmp_path / "runs", name="then-test")
    t = lit.trainer(tmp_path, max_epochs=1, logger=cw)
    model = lit.Digits()
    train, val = lit.loaders(64, 64)
    t.fit(model, train, val)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.validate(model, val, verbose=False)
    assert any("did not record val_acc, val_loss" in str(w.message)
               and "after fit" in str(w.message) for w in caught)


def quick_start() -> str:
    text = (ROOT / "docs" / "integrations.md").read_text()
    return text.split("<!-- lightning quick start -->", 1)[1].split("```python\n", 1)[1] \
        .split("```", 1)[0]


def test_the_quick_start_in_the_docs_is_the_example_and_runs(tmp_path, monkeypatch):
    example = ROOT / "examples" / "lightning_quickstart.py"
    assert quick_start() in example.read_text()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(example), run_name="__main__")  # as `python lightning_quickstart.py` runs it
    [run] = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    info = read_run(run)
    assert info.state in ("completed", "early_stopped")
    history = read_history(run)
    assert len(history) >= 2 and {"train_loss", "val_loss"} <= set(history.columns)
    assert all(math.isfinite(v) for v in history["train_loss"])


#: The DDP fit as a script: ddp_spawn's ranks are fresh interpreters that import their main
#: module, so the fit runs in a process of its own, not inside a pytest(-xdist) worker whose
#: state they would otherwise unpickle (it failed there once in CI with no traceback).
DDP_FIT = """
import sys
from pathlib import Path

import torch

sys.path.insert(0, {tests!r})
import lightning_digits as t
from curvewatch.lightning import CurvewatchLogger, DiagnosisEarlyStopping

if __name__ == "__main__":
    torch.set_num_threads(1)
    # tensors pass to the spawned ranks through files: a small /dev/shm (containers) refuses
    torch.multiprocessing.set_sharing_strategy("file_system")
    tmp = Path({tmp!r})
    cw = CurvewatchLogger(tmp / "runs", name="ddp")
    fit = t.trainer(tmp, max_epochs=100, logger=cw, strategy="ddp_spawn", devices=2,
                    callbacks=[DiagnosisEarlyStopping(kinds=("overfitting",))])
    fit.fit(t.Digits(lr=1e-2, hidden=256), *t.loaders(100, 50, label_noise=0.3))
"""


@pytest.mark.timeout(300)
def test_under_ddp_rank_zero_writes_the_run_and_its_stop_ends_every_rank(tmp_path):
    """Two CPU processes (ddp_spawn, gloo). Only rank zero has the history; had rank one not
    followed its stop, fit would hang here (until the timeout) instead of returning."""
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_FIT.format(tests=str(ROOT / "tests"), tmp=str(tmp_path)))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    info = read_run(run)
    assert info.state == "early_stopped" and info.epoch < 100
    assert read_history(run)["epoch"].tolist() == list(range(1, info.epoch + 1))


def test_with_only_pytorch_lightning_installed_the_logger_is_one_of_its_loggers(
        tmp_path, monkeypatch, lit):
    """The module loaded again with `lightning.pytorch` unimportable, as where only the older
    package is installed: it takes pytorch_lightning's classes, and that Trainer logs with it."""
    pl = pytest.importorskip("pytorch_lightning")
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    spec = importlib.util.spec_from_file_location("curvewatch._lightning_pl",
                                                  ROOT / "curvewatch" / "lightning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert issubclass(module.CurvewatchLogger, pl.loggers.Logger)
    assert issubclass(module.DiagnosisEarlyStopping, pl.callbacks.EarlyStopping)

    class OldDigits(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = lit.nn.Linear(64, 10)

        def training_step(self, batch, _):
            loss = lit.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            self.log("val_loss", lit.nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return lit.torch.optim.Adam(self.parameters(), lr=1e-2)

    cw = module.CurvewatchLogger(tmp_path / "runs", name="old-package")
    t = pl.Trainer(max_epochs=2, logger=cw, enable_progress_bar=False,
                   enable_checkpointing=False, enable_model_summary=False,
                   default_root_dir=tmp_path, accelerator="cpu")
    t.fit(OldDigits(), *lit.loaders(64, 32))
    history = read_history(cw.run.path)
    assert history["epoch"].tolist() == [1, 2]
    assert {"train_loss", "val_loss"} <= set(history.columns)
