"""The trainer's command line: validation before anything starts, what a run writes, the
semantics of training and validation, detached runs, stop and resume."""
from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, only_run, run_python_m_trainer, run_trainer, wait_for
from curvewatch.tracking import list_runs, read_history, read_layers, read_run
from curvewatch.tracking.jsonl import read_from
from curvewatch.trainer.cli import main

FAST = ["--epochs", "3", "--hidden", "32"]


def test_help_documents_every_option_with_its_default():
    from curvewatch.trainer.config import FIELDS
    done = run_trainer("run", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for name in FIELDS:
        flag = "--threshold" if name == "thresholds" else "--" + name.replace("_", "-")
        assert flag in text, flag
    assert "(default: adam)" in text and "(default: 0.001)" in text


@pytest.mark.parametrize("args, message", [
    (["--lr", "-1"], "lr must be > 0 and <= 10, got -1"),
    (["--lr", "nan"], "lr must be a finite number, got 'nan'"),
    (["--batch-size", "0"], "batch_size must be between 1 and 1048576, got 0"),
    (["--epochs", "abc"], "epochs must be an integer, got 'abc'"),
    (["--optimizer", "lbfgs"], "optimizer must be one of sgd, adam, adamw, rmsprop, got 'lbfgs'"),
    (["--dataset", "mnist"], "dataset must be one of digits, digits-images, breast_cancer"),
    (["--activation", "swish"], "activation must be one of relu, tanh, sigmoid, gelu"),
    (["--schedule", "linear"], "schedule must be one of constant, step, exponential, cosine"),
    (["--device", "tpu"], "device must be one of auto, cpu, cuda, got 'tpu'"),
    (["--dropout", "1"], "dropout must be in [0, 1), got 1"),
    (["--label-noise", "-0.1"], "label_noise must be in [0, 1)"),
    (["--val-fraction", "0"], "val_fraction must be in (0, 1), got 0"),
    (["--hidden", "128,x"], "hidden must be an integer, got 'x'"),
    (["--hidden", "0"], "hidden must be 1 to 32 comma-separated widths"),
    (["--warmup-epochs", "30"], "warmup_epochs must be >= 0 and < epochs (3), got 30"),
    (["--early-stop", "banana"], "early_stop must be one of overfitting, plateau"),
    (["--model", "cnn"], "model cnn needs image data"),
    (["--dataset", "no_such_module_xyz:make"], "dataset factory 'no_such_module_xyz:make' "
                                                "cannot be imported"),
    (["--model", "trainer_fixtures:missing"], "has no callable 'missing'"),
    (["--dataset", "trainer_fixtures:broken_data"], "the data server is unreachable"),
    (["--dataset", "csv:nowhere.csv", "--target", "y"], "csv:nowhere.csv: no such file"),
    (["--dataset", "csv:{csv}", "--target", "nope"], "target column 'nope' is not in"),
    (["--dataset", "csv:{csv}"], "needs --target COLUMN"),
    (["--name", "bad\x00name"], "must not contain control or invisible characters"),
    (["--name", "x" * 201], "at most 200 characters"),
    (["--train-size", "1"], "train_size must be >= 2"),
    (["--label-noise", "0.2", "--dataset", "trainer_fixtures:regression_data"],
     "label_noise applies to classification only"),
])
def test_invalid_input_is_rejected_before_anything_starts(args, message, runs_dir, tmp_path,
                                                          capsys, monkeypatch):
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    args = [a.replace("{csv}", str(csv)) for a in args]
    code = main(["run", "--runs-dir", str(runs_dir), *FAST, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert list(runs_dir.iterdir()) == []


@pytest.mark.parametrize("text, message", [
    ("epochs = [", "is not valid TOML"),
    ("learning_rate = 0.1", "unknown option(s) learning_rate"),
    ("lr = 'fast'", "lr must be a number, got 'fast'"),
])
def test_bad_config_file_is_rejected_with_its_message(text, message, runs_dir, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert main(["run", "--runs-dir", str(runs_dir), "--config", str(cfg)]) == 2
    assert message in capsys.readouterr().err
    assert list(runs_dir.iterdir()) == []


def test_bad_input_exits_with_code_2_from_the_shell(runs_dir):
    done = run_python_m_trainer("run", "--optimizer", "lbfgs", runs_dir=runs_dir)
    assert done.returncode == 2
    assert "optimizer must be one of sgd, adam, adamw, rmsprop, got 'lbfgs'" in done.stderr
    assert not any(runs_dir.iterdir())


@pytest.mark.parametrize("module", ["curvewatch.trainer", "trainer"])
def test_an_error_names_the_command_as_the_user_typed_it(module, runs_dir):
    """`python -m curvewatch.trainer` (anywhere) and the checkout's shim `python -m trainer`
    each put their own name before `run: error:`."""
    done = subprocess.run([sys.executable, "-m", module, "run", "--lr", "-1", "--runs-dir",
                           str(runs_dir)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"python -m {module} run: error: lr must be > 0"), done.stderr
    assert not any(runs_dir.iterdir())


def test_a_run_writes_every_epoch_with_all_fields(runs_dir):
    done = run_trainer("run", "--epochs", "4", "--batch-size", "100", "--hidden", "32,16",
                       runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    run = only_run(runs_dir)
    info = read_run(run)
    assert info.state == "completed" and info.epoch == 4
    steps = info.data["steps_per_epoch"]
    assert steps == math.ceil(info.data["n_train"] / 100)
    h = read_history(run)
    for col in ("epoch", "step", "time", "train_loss", "val_loss", "train_acc", "val_acc",
                "grad_norm", "grad_norm_max", "lr", "epoch_seconds", "samples_per_second"):
        assert col in h.columns, col
    assert h["epoch"].tolist() == [1, 2, 3, 4]
    assert h["step"].tolist() == [steps * e for e in (1, 2, 3, 4)]
    assert (h["grad_norm_max"] >= h["grad_norm"]).all() and (h["grad_norm"] > 0).all()
    # it learns: over seeds 0-4 and 1-2 threads the val loss falls by 20-25% in these four
    # epochs (bench/test_margins.py, check `writes`), never near the 0% this asserts
    assert h["val_loss"].iloc[-1] < h["val_loss"].iloc[0]
    layers = read_layers(run)
    assert set(layers.columns) - {"epoch"} == {p["name"] for p in info.model["parameters"]}
    assert (run / "checkpoints" / "best.pt").exists() and (run / "checkpoints" / "last.pt").exists()


def test_logged_best_val_loss_equals_the_loss_recomputed_from_best_pt(runs_dir):
    import torch

    from curvewatch.tracking import load_checkpoint
    from curvewatch.trainer.config import validate
    from curvewatch.trainer.runner import prepare

    done = run_trainer("run", "--dataset", "wine", "--epochs", "25", "--lr", "0.05",
                       "--hidden", "64", "--train-size", "40", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    run = only_run(runs_dir)
    info = read_run(run)
    trainer = prepare(validate(info.config))
    best = load_checkpoint(run, "best.pt")
    trainer.model.load_state_dict(best["model"])
    loss, acc = (float(t) for t in trainer.evaluate(trainer.val_t))
    h = read_history(run).set_index("epoch")
    assert best["epoch"] == info.best_epoch == int(h["val_loss"].idxmin())
    assert loss == pytest.approx(info.best_val_loss, rel=1e-5)
    assert acc == pytest.approx(h.loc[info.best_epoch, "val_acc"], abs=1e-6)
    assert isinstance(best["model"], dict) and all(isinstance(v, torch.Tensor)
                                                   for v in best["model"].values())


def test_training_runs_in_train_mode_and_validation_in_eval_mode_without_grad(runs_dir):
    done = run_trainer("run", "--model", "trainer_fixtures:mode_checking_mlp", "--epochs", "2",
                       runs_dir=runs_dir, cwd=ROOT / "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_run(only_run(runs_dir)).state == "completed"


def test_a_parameter_without_gradient_is_logged_with_norm_zero(runs_dir):
    done = run_trainer("run", "--model", "trainer_fixtures:unused_head_model", "--epochs", "2",
                       "--dataset", "wine", runs_dir=runs_dir, cwd=ROOT / "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    layers = read_layers(only_run(runs_dir))
    assert list(layers["epoch"]) == [1, 2]
    assert (layers["aux.weight"] == 0).all() and (layers["aux.bias"] == 0).all()
    assert (layers["lin.weight"] > 0).all()


def test_train_loss_is_the_sample_weighted_mean_over_the_epoch(monkeypatch):
    """With a negligible learning rate the weights stay put, so the epoch's train loss must
    equal the full-data loss; a plain mean of batch means would over-weight the last,
    partial batch (here 1 sample of 301)."""
    import torch

    from curvewatch.trainer.config import validate
    from curvewatch.trainer.runner import prepare

    trainer = prepare(validate({"dataset": "digits", "train_size": 301, "batch_size": 100,
                                "lr": 1e-12, "epochs": 1, "hidden": "16"}))
    assert trainer.steps_per_epoch == 4
    trainer.model.eval()
    with torch.no_grad():
        full = float(trainer.loss_fn(trainer.model(trainer.train_t.x), trainer.train_t.y))
    record, _ = trainer.train_epoch(1)
    assert record["train_loss"] == pytest.approx(full, rel=1e-5)


def test_each_epoch_draws_a_fresh_shuffle():
    import torch

    from curvewatch.trainer.config import validate
    from curvewatch.trainer.runner import prepare

    trainer = prepare(validate({"dataset": "digits", "epochs": 2, "hidden": "8"}))
    seen = []
    real = torch.randperm
    try:
        torch.randperm = lambda *a, **k: seen.append(real(*a, **k)) or seen[-1]
        trainer.train_epoch(1)
        trainer.train_epoch(2)
    finally:
        torch.randperm = real
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])


def test_config_files_in_toml_json_and_yaml_give_options_and_flags_override(runs_dir, tmp_path):
    files = {"c.toml": 'epochs = 2\nhidden = "16"\nlr = 0.01\n',
             "c.json": json.dumps({"epochs": 2, "hidden": [16], "lr": 0.01}),
             "c.yaml": "epochs: 2\nhidden: 16\nlr: 0.01\n"}
    for fname, text in files.items():
        (tmp_path / fname).write_text(text)
        done = run_trainer("run", "--config", str(tmp_path / fname), "--lr", "0.02",
                           "--name", fname, runs_dir=runs_dir)
        assert done.returncode == 0, done.stderr
    for info in (read_run(p) for p in runs_dir.iterdir()):
        assert (info.config["epochs"], info.config["hidden"], info.config["lr"]) == (2, [16], 0.02)


def test_regression_csv_uses_mse_and_reports_r2(runs_dir, tmp_path):
    import numpy as np
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2))
    y = 2 * x[:, 0] - x[:, 1] + rng.normal(0, 0.1, 300)
    csv = tmp_path / "reg.csv"
    csv.write_text("a,b,target\n"
                   + "".join(f"{a},{b},{t}\n" for (a, b), t in zip(x, y, strict=True)))
    done = run_trainer("run", "--dataset", f"csv:{csv}", "--target", "target", "--epochs", "30",
                       "--lr", "0.01", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    info = read_run(only_run(runs_dir))
    h = read_history(info.path)
    assert info.data["task"] == "regression" and "val_acc" not in h.columns
    # over seeds 0-4 and 1-2 threads the run ends at val R2 >= 0.9955 and MSE <= 0.0041
    # (bench/test_margins.py, check `regression`): far from both thresholds
    assert h["val_r2"].iloc[-1] > 0.9 and h["val_loss"].iloc[-1] < 0.1


def test_csv_with_text_labels_is_classification(runs_dir, tmp_path):
    csv = tmp_path / "cls.csv"
    rows = "".join(f"{i % 7},{(i * 3) % 5},{'big' if i % 7 > 3 else 'small'}\n" for i in range(200))
    csv.write_text("a,b,label\n" + rows)
    done = run_trainer("run", "--dataset", f"csv:{csv}", "--target", "label", "--epochs", "3",
                       runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    info = read_run(only_run(runs_dir))
    assert info.data["task"] == "classification" and info.data["n_classes"] == 2


def test_train_size_and_label_noise_shape_the_training_split(runs_dir):
    done = run_trainer("run", "--train-size", "120", "--label-noise", "0.3", "--epochs", "2",
                       "--test-fraction", "0.2", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    info = read_run(only_run(runs_dir))
    assert info.data["n_train"] == 120 and info.data["n_test"] > 0
    idx = info.data["split_index"]
    assert not set(idx["train"]) & set(idx["val"])
    assert {"test_loss", "test_acc"} <= set(read_history(info.path).columns)


def test_a_failure_inside_a_user_model_ends_as_failed_with_the_message(runs_dir):
    done = run_trainer("run", "--model", "trainer_fixtures:out_of_memory_model", "--epochs", "5",
                       runs_dir=runs_dir, cwd=ROOT / "tests")
    assert done.returncode == 1
    info = read_run(only_run(runs_dir))
    assert info.state == "failed" and "CUDA out of memory" in info.status["error"]
    assert info.epoch >= 1  # the epochs finished before the failure are kept


def test_a_nan_loss_ends_the_run_as_divergence_and_keeps_the_nan(runs_dir):
    done = run_trainer("run", "--model", "trainer_fixtures:nan_model", "--epochs", "10",
                       runs_dir=runs_dir, cwd=ROOT / "tests")
    assert done.returncode == 1
    info = read_run(only_run(runs_dir))
    assert info.state == "failed" and info.status["stop_reason"] == "divergence"
    h = read_history(info.path)
    assert math.isnan(h["train_loss"].iloc[-1]) and h["epoch"].iloc[-1] < 10


def _detach(runs_dir: Path, *args: str) -> Path:
    done = run_trainer("run", "--detach", *args, runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("started ")
    return only_run(runs_dir)


def _epochs_written(run: Path) -> list[int]:
    return [r["epoch"] for r in read_from(run / "metrics.jsonl").records]


def test_detach_returns_at_once_while_the_run_proceeds(runs_dir):
    run = _detach(runs_dir, "--epochs", "3000", "--hidden", "16")
    assert read_run(run).state == "running" and len(_epochs_written(run)) < 3000
    wait_for(lambda: len(_epochs_written(run)) >= 3, what="epochs from the detached run")
    assert (run / "trainer.log").exists()
    assert run_trainer("stop", run.name, "--wait", "60", runs_dir=runs_dir).returncode == 0


# The stop and kill tests configure far more epochs than they train, so the stop or kill
# always lands before the run could end on its own, however fast its epochs and however slow
# the machine; resume --epochs N then ends the run a few epochs later.
ENDLESS = "100000"


def test_a_detached_runs_stop_hint_is_a_command_that_works_from_another_folder(runs_dir,
                                                                                 tmp_path):
    """Started as `python -m curvewatch.trainer run --detach` (a fresh interpreter, as a user
    starts it), the run prints how to stop it in the same words with the --runs-dir given;
    that line, typed in another folder without PYTHONPATH (a user's project), stops it."""
    done = run_python_m_trainer("run", "--detach", "--runs-dir", str(runs_dir), "--epochs",
                                ENDLESS, "--hidden", "16", "--threads", "1")
    assert done.returncode == 0, done.stderr
    run = only_run(runs_dir)
    (hint,) = [ln.split("stop:", 1)[1].strip() for ln in done.stdout.splitlines()
               if ln.strip().startswith("stop:")]
    assert hint.startswith(f"python -m curvewatch.trainer stop {run.name}"), hint
    python, *words = shlex.split(hint)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CURVEWATCH_RUNS")}
    stopped = subprocess.run([sys.executable, *words, "--wait", "60"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=240,
                             stdin=subprocess.DEVNULL)
    assert python == "python" and stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert read_run(run).state == "stopped"


@pytest.mark.slow
def test_stop_is_graceful_and_resume_continues_with_contiguous_epochs(runs_dir):
    run = _detach(runs_dir, "--epochs", ENDLESS, "--hidden", "16", "--batch-size", "16")
    wait_for(lambda: len(_epochs_written(run)) >= 2, what="two epochs")
    stopped = run_trainer("stop", run.name, "--wait", "60", runs_dir=runs_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    info = read_run(run)
    assert info.state == "stopped" and not (run / "STOP").exists()
    written = _epochs_written(run)
    assert written == list(range(1, info.epoch + 1)) and info.epoch >= 2
    from curvewatch.tracking import load_checkpoint
    assert load_checkpoint(run, "last.pt")["epoch"] == info.epoch
    end = info.epoch + 3
    done = run_trainer("resume", run.name, "--epochs", str(end), runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    assert _epochs_written(run) == list(range(1, end + 1))
    assert read_run(run).state == "completed" and read_run(run).status["resumes"] == 1


@pytest.mark.slow
def test_resume_after_kill_9_continues_with_contiguous_epochs(runs_dir):
    run = _detach(runs_dir, "--epochs", ENDLESS, "--hidden", "16", "--batch-size", "16")
    wait_for(lambda: len(_epochs_written(run)) >= 3, what="three epochs")
    pid = wait_for(lambda: read_run(run).status.get("pid"), what="the worker's pid")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: read_run(run).state == "crashed", timeout=30, what="state crashed")
    end = len(_epochs_written(run)) + 3
    done = run_trainer("resume", run.name, "--epochs", str(end), runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    assert _epochs_written(run) == list(range(1, end + 1))
    assert read_run(run).state == "completed"


@pytest.mark.slow
def test_resume_after_kill_9_replays_to_the_same_weights_as_an_unbroken_run(runs_dir,
                                                                          monkeypatch):
    """With checkpoints far apart, a killed run has logged epochs that last.pt does not
    hold yet. Resume trains them again without logging them twice; on the CPU training is
    deterministic, so the finished run matches one that was never interrupted. Both runs
    use one torch thread (the same reduction order whichever way each process was started)
    and a constant learning rate (the configured epoch count changes nothing)."""
    args = ["--hidden", "16", "--batch-size", "16", "--seed", "3", "--threads", "1"]
    monkeypatch.setenv("CURVEWATCH_CHECKPOINT_SECONDS", "1000")
    run = _detach(runs_dir, *args, "--epochs", ENDLESS, "--name", "killed")
    wait_for(lambda: len(_epochs_written(run)) >= 5, what="five epochs")
    os.kill(wait_for(lambda: read_run(run).status.get("pid"), what="pid"), signal.SIGKILL)
    wait_for(lambda: read_run(run).state == "crashed", timeout=30, what="state crashed")
    before = (run / "metrics.jsonl").read_bytes()
    from curvewatch.tracking import load_checkpoint
    assert load_checkpoint(run, "last.pt")["epoch"] < len(_epochs_written(run))
    end = str(len(_epochs_written(run)) + 5)
    assert run_trainer("resume", "killed", "--epochs", end, runs_dir=runs_dir).returncode == 0
    assert (run / "metrics.jsonl").read_bytes().startswith(before)
    assert _epochs_written(run) == list(range(1, int(end) + 1))
    assert run_trainer("run", *args, "--epochs", end, "--name", "unbroken",
                       runs_dir=runs_dir).returncode == 0
    unbroken = next(p for p in runs_dir.iterdir() if p != run)
    a, b = read_history(run), read_history(unbroken)
    assert a["val_loss"].tolist() == pytest.approx(b["val_loss"].tolist(), rel=1e-6)


def test_resume_refuses_a_completed_run_without_more_epochs(runs_dir):
    assert run_trainer("run", *FAST, runs_dir=runs_dir).returncode == 0
    run = only_run(runs_dir)
    done = run_trainer("resume", run.name, runs_dir=runs_dir)
    assert done.returncode == 2 and "already trained 3 of 3 epochs" in done.stderr
    more = run_trainer("resume", run.name, "--epochs", "5", runs_dir=runs_dir)
    assert more.returncode == 0, more.stderr
    assert _epochs_written(run) == [1, 2, 3, 4, 5]
    assert read_run(run).config["epochs"] == 5


def test_a_run_killed_after_its_last_epoch_is_finished_by_resume(runs_dir):
    """Killed after the last metrics line but before the final state was recorded."""
    import json as _json
    assert run_trainer("run", *FAST, runs_dir=runs_dir).returncode == 0
    run = only_run(runs_dir)
    status = _json.loads((run / "status.json").read_text())
    status.update(state="running", pid=None, updated_at=0)  # as a kill would leave it
    (run / "status.json").write_text(_json.dumps(status))
    assert read_run(run).state == "crashed"
    done = run_trainer("resume", run.name, runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    assert read_run(run).state == "completed" and _epochs_written(run) == [1, 2, 3]


@pytest.mark.parametrize("command", ["stop", "resume"])
@pytest.mark.parametrize("ref", ["../etc", "/etc/passwd", "no-such-run"])
def test_unknown_or_escaping_run_references_are_usage_errors(command, ref, runs_dir):
    code = main([command, ref, "--runs-dir", str(runs_dir)])
    assert code == 2


def test_list_shows_each_run_with_state_and_best_loss(runs_dir, capsys):
    assert run_trainer("run", *FAST, "--name", "listed", runs_dir=runs_dir).returncode == 0
    assert main(["list", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "listed" in out and "completed" in out and "3/3" in out


def test_list_into_a_closed_pipe_ends_quietly_like_other_unix_tools(runs_dir):
    """`trainer list | grep -q NAME` closes the pipe early: no traceback on stderr."""
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        done = subprocess.run([sys.executable, "-m", "curvewatch.trainer", "list", "--runs-dir",
                               str(runs_dir)], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60, cwd=ROOT)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == ""


def test_early_stopping_stops_on_the_finding_and_keeps_best_pt(runs_dir):
    from curvewatch.diagnosis import Finding, diagnose, stopping_finding
    from curvewatch.tracking import load_checkpoint

    # one torch thread: on a loaded 2-core machine this test took 127 s with a thread a core, 21 s
    # with one (the margin below was measured with both)
    done = run_trainer("run", "--dataset", "digits", "--train-size", "300", "--label-noise",
                       "0.1", "--hidden", "256,256", "--batch-size", "16", "--epochs", "120",
                       "--early-stop", "overfitting,plateau", "--threads", "1",
                       runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    info = read_run(only_run(runs_dir))
    # over seeds 0-4 and 1-2 threads this run stops at epoch 16-27 (bench/test_margins.py,
    # check `early_stop`): 93 epochs or more before the end
    assert info.state == "early_stopped" and info.epoch < 120
    finding = Finding.from_dict(info.status["stopped_by"])
    assert finding.end_epoch is None  # ongoing when it stopped the run
    assert info.status["stop_reason"] == finding.message
    assert finding.message in done.stdout  # the log says why in one sentence
    # The dashboard's judgement of the same rows is the trainer's judgement: the finding that
    # --early-stop overfitting,plateau stops on. Not a fixed kind: a plateau at or below 20%
    # of the first loss is reported as converged (which stops it too), and this run's plateau
    # sits at 20-26% of its first loss, so plateau or converged is the CPU's rounding.
    again = stopping_finding(diagnose(read_history(info.path)), ("overfitting", "plateau"))
    assert again is not None
    assert (again.kind, again.start_epoch) == (finding.kind, finding.start_epoch)
    assert load_checkpoint(info.path, "best.pt")["epoch"] == info.best_epoch
    # status.json carries the flags and best accuracy, so listings need no metrics file
    assert finding.kind in {f["kind"] for f in info.status["flags"]}
    assert info.status["best_val_acc"] == max(read_history(info.path)["val_acc"])


def test_bad_diagnosis_thresholds_are_usage_errors(runs_dir, capsys):
    assert main(["run", "--runs-dir", str(runs_dir), "--threshold", "bogus=1"]) == 2
    assert "unknown threshold 'bogus'" in capsys.readouterr().err
    assert main(["run", "--runs-dir", str(runs_dir), "--patience", "0"]) == 2
    assert "patience must be >= 1, got 0" in capsys.readouterr().err
    assert list(runs_dir.iterdir()) == []


@pytest.mark.slow
def test_the_demo_runs_show_what_their_names_promise(runs_dir):
    """`make run`'s three demo runs, trained for real: the healthy one raises no problem, the
    overfitting one is flagged overfitting and the plateauing one plateau (flags as the
    trainer writes them into status.json, which the Runs page shows). Findings of real runs:
    they hold on any CPU because each holds with a margin of epochs over seeds 0-4 and torch
    threads 1-2, which bench/demo_margins.py measures."""
    done = run_trainer("demo", "--seconds", "0", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    runs = wait_for(lambda: (rs := list_runs(runs_dir)) and len(rs) == 3
                    and all(r.state == "completed" for r in rs) and rs,
                    timeout=240, every=0.2, what="the three demo runs to finish")
    assert all(r.config["min_epoch_seconds"] == 0 for r in runs)  # --seconds 0: unpaced
    flags = {r.name: {f["kind"] for f in r.status.get("flags", [])} for r in runs}
    problems = {"overfitting", "plateau", "divergence", "unstable", "underfitting",
                "exploding_gradients", "vanishing_gradients"}
    assert not flags["demo-healthy-cnn"] & problems, flags
    assert "overfitting" in flags["demo-overfitting-mlp"], flags
    assert "plateau" in flags["demo-plateau-sgd"], flags


def test_min_epoch_seconds_paces_the_epochs_without_counting_the_wait_as_training(runs_dir):
    pace, epochs = 2.0, 3
    # One torch thread: with the default (one a core), a loaded machine's scheduler can make
    # the threads of one epoch wait on each other for seconds (bench/test_margins.py saw an
    # epoch take 2.03 s with 2 threads at load 11 on 2 cores, and 0.046 s with 1 thread).
    done = run_trainer("run", "--epochs", str(epochs), "--hidden", "16", "--min-epoch-seconds",
                       str(pace), "--threads", "1", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    info = read_run(only_run(runs_dir))
    h = read_history(info.path)
    assert h["epoch"].tolist() == [1, 2, 3]
    # The promise: each epoch but the last takes at least `pace` from its start to the next
    # epoch's start, so the run lasts at least (epochs - 1) * pace however slow the machine
    # (unpaced, these epochs are milliseconds apart). Gaps between log times are not the
    # promise: a slow epoch followed by a fast one is logged less than `pace` after it.
    assert info.status["ended_at"] - info.status["started_at"] >= (epochs - 1) * pace
    # epoch_seconds measures the training, not the wait: were the wait counted, every epoch
    # but the last would report at least `pace`. A bound on a time, so it has a margin: one
    # such epoch trains in 0.02-0.05 s, on a loaded machine included (bench/test_margins.py).
    assert (h["epoch_seconds"].iloc[:-1] < pace).all(), h["epoch_seconds"].tolist()


@pytest.mark.slow
def test_a_stop_during_the_pace_wait_ends_the_run_without_another_epoch(runs_dir):
    run = _detach(runs_dir, "--epochs", "50", "--hidden", "16", "--min-epoch-seconds", "20")
    wait_for(lambda: _epochs_written(run) == [1], timeout=60, what="the first epoch")
    stopped = run_trainer("stop", run.name, "--wait", "15", runs_dir=runs_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    info = read_run(run)
    assert info.state == "stopped" and _epochs_written(run) == [1]
    from curvewatch.tracking import load_checkpoint
    assert load_checkpoint(run, "last.pt")["epoch"] == 1  # resumable from where it stopped


@pytest.mark.parametrize("seconds", ["-1", "nan", "1e9"])
def test_demo_refuses_a_pace_out_of_range(seconds, runs_dir, capsys):
    assert main(["demo", "--runs-dir", str(runs_dir), "--seconds", seconds]) == 2
    assert "--seconds must be between 0 and" in capsys.readouterr().err
    assert list(runs_dir.iterdir()) == []
