"""The wandb-style API (`import curvewatch as wandb`): how log calls become epoch lines and step
lines (curvewatch.rows, pure), and the run folder a script leaves behind (curvewatch.wandb_api,
real files; scripts that crash or forget finish() run as real processes)."""
import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import curvewatch
from conftest import ROOT, only_run
from curvewatch.diagnosis import diagnose
from curvewatch.rows import EpochLine, Rows, StepLine
from curvewatch.tracking import read_history, read_layers, read_run, read_steps


def assemble(calls, *, finish=True):
    """Feed (data, kwargs) calls to a Rows; the epoch lines and step lines it gives."""
    rows, lines = Rows(), []
    for data, kwargs in calls:
        lines += rows.log(data, **kwargs)
    if finish:
        lines += rows.finish()[0]
    epochs = [(ln.epoch, ln.values) for ln in lines if isinstance(ln, EpochLine)]
    steps = [(ln.step, ln.values) for ln in lines if isinstance(ln, StepLine)]
    return epochs, steps


# ---------------------------------------------------------------- rows (pure)
def test_a_row_with_an_epoch_key_is_that_epochs_line_and_a_batch_loss_goes_to_the_steps():
    calls = []
    for epoch in range(2):
        calls += [({"batch_loss": 1.0 + b}, {}) for b in range(3)]
        calls += [({"epoch": epoch, "train_loss": 0.5, "val_loss": 0.7 - epoch / 10}, {})]
    epochs, steps = assemble(calls)
    assert [e for e, _ in epochs] == [1, 2], "epochs counted from 0 are written from 1"
    assert epochs[1][1] == {"train_loss": 0.5, "val_loss": 0.6, "step": 7}
    assert [s for s, _ in steps] == [0, 1, 2, 4, 5, 6]
    assert [v for _, v in steps[:3]] == [{"loss": 1.0}, {"loss": 2.0}, {"loss": 3.0}]


def test_keys_logged_at_the_same_step_merge_and_a_new_step_commits_the_row():
    epochs, _ = assemble([({"epoch": 1, "train_loss": 0.9}, {"step": 10}),
                          ({"val_loss": 1.1}, {"step": 10}),
                          ({"epoch": 2, "train_loss": 0.8}, {"step": 20}),
                          ({"val_loss": 1.0}, {"step": 20})])
    assert epochs == [(1, {"train_loss": 0.9, "val_loss": 1.1, "step": 10}),
                      (2, {"train_loss": 0.8, "val_loss": 1.0, "step": 20})]


def test_commit_false_holds_the_row_until_a_call_that_commits():
    rows = Rows()
    assert rows.log({"epoch": 1, "train_loss": 0.9}, commit=False) == []
    assert rows.log({"val_loss": 1.1}, commit=False) == []
    rows.log({"val_acc": 0.5})  # commits the row: epoch 1 may still get keys of its own
    lines = rows.log({"epoch": 2, "train_loss": 0.8})
    assert lines == [EpochLine(1, {"train_loss": 0.9, "val_loss": 1.1, "val_acc": 0.5,
                                   "step": 0})]


def test_keys_logged_once_before_the_epoch_row_join_that_epochs_line():
    epochs, steps = assemble([({"lr": 0.1}, {}), ({"train_loss": 0.9}, {}),
                              ({"epoch": 1, "val_loss": 1.1}, {}),
                              ({"lr": 0.05}, {}), ({"epoch": 2, "val_loss": 1.0}, {})])
    assert epochs == [(1, {"lr": 0.1, "train_loss": 0.9, "val_loss": 1.1, "step": 2}),
                      (2, {"lr": 0.05, "val_loss": 1.0, "step": 4})]
    assert steps == []


def test_an_epoch_line_is_written_as_soon_as_a_row_of_another_epoch_is_committed():
    rows = Rows()
    assert rows.log({"epoch": 1, "val_loss": 1.0}) == []  # more keys of epoch 1 may follow
    assert rows.log({"batch_loss": 0.3}) == [EpochLine(1, {"val_loss": 1.0, "step": 0})]


def test_an_epoch_key_on_every_batch_row_keeps_the_batch_keys_per_step():
    calls = []
    for epoch in (1, 2):
        calls += [({"epoch": epoch, "loss": 1.0 / b}, {}) for b in (1, 2)]
        calls += [({"epoch": epoch, "val_loss": 0.5}, {})]
    epochs, steps = assemble(calls)
    assert epochs == [(1, {"val_loss": 0.5, "step": 2}), (2, {"val_loss": 0.5, "step": 5})]
    assert steps == [(0, {"loss": 1.0}), (1, {"loss": 0.5}), (3, {"loss": 1.0}),
                     (4, {"loss": 0.5})]


def test_without_an_epoch_key_each_row_with_a_validation_metric_closes_an_epoch():
    calls = []
    for _ in range(3):
        calls += [({"loss": 0.9}, {}), ({"loss": 0.8}, {})]
        calls += [({"val_loss": 1.0, "val_accuracy": 0.5}, {})]
    epochs, steps = assemble(calls)
    assert [e for e, _ in epochs] == [1, 2, 3]
    assert epochs[0][1] == {"val_loss": 1.0, "val_acc": 0.5, "step": 2}
    assert len(steps) == 6


def test_one_dict_per_epoch_with_train_and_validation_metrics_is_one_line_each():
    logged = [(1.0, 1.2), (0.5, 0.6), (0.25, 0.3)]
    epochs, steps = assemble([({"train_loss": t, "val_loss": v}, {}) for t, v in logged])
    assert [(values["train_loss"], values["val_loss"]) for _, values in epochs] == logged
    assert steps == []


def test_wandb_style_names_take_the_formats_columns_and_other_keys_keep_theirs():
    epochs, _ = assemble([({"epoch": 1, "train/loss": 0.9, "val/accuracy": 0.5,
                            "learning_rate": 0.1, "grad_norm": 2.0, "f1": 0.4,
                            "val": {"loss": 1.1}}, {})])
    assert epochs[0][1] == {"train_loss": 0.9, "val_acc": 0.5, "lr": 0.1, "grad_norm": 2.0,
                            "f1": 0.4, "val_loss": 1.1, "step": 0}


def test_two_keys_naming_the_same_column_keep_one_column_each():
    epochs, _ = assemble([({"epoch": 1, "loss": 0.9, "train_loss": 0.8}, {})])
    assert epochs[0][1]["train_loss"] == 0.9
    assert sorted(epochs[0][1]) == ["step", "train_loss", "train_loss_"]


def test_numpy_scalars_and_one_element_tensors_are_logged_as_numbers():
    epochs, _ = assemble([({"epoch": np.int64(1), "val_loss": np.float32(0.5),
                            "train_loss": torch.tensor(0.25)}, {"step": np.int64(4)})])
    assert epochs == [(1, {"val_loss": 0.5, "train_loss": 0.25, "step": 4})]


def test_values_logged_after_the_last_epoch_are_left_for_the_summary():
    rows = Rows()
    rows.log({"epoch": 1, "val_loss": 1.0})
    rows.log({"test_acc": 0.9})
    lines, left = rows.finish()
    assert lines == [] and left == {"test_acc": 0.9}


@pytest.mark.parametrize("calls, message", [
    ([({"a": 1}, {"step": 5}), ({"a": 2}, {"step": 3})],
     "step must not go back: got step 3 after step 5"),
    ([({"epoch": 3, "val_loss": 1}, {}), ({"epoch": 2, "val_loss": 1}, {})],
     "epoch 2 was logged after epoch 3"),
    ([({"epoch": 0.5, "val_loss": 1}, {})], "epoch must be a whole number >= 0, got 0.5"),
    ([({"a": 1}, {"step": -1})], "step must be an int >= 0, got -1"),
    ([({"a": 1}, {"step": 2.5})], "step must be an int >= 0, got 2.5"),
])
def test_steps_and_epochs_that_go_back_or_are_not_whole_are_refused(calls, message):
    with pytest.raises(ValueError, match=message):
        assemble(calls)


@pytest.mark.parametrize("data, message", [
    ({"examples": object()}, "the value of 'examples' is a object"),
    ({"hist": np.zeros(3)}, "the value of 'hist' is a ndarray"),
    ([("loss", 1.0)], "log\\(\\) takes a dict of metrics, got list"),
])
def test_media_arrays_and_non_dicts_are_refused_naming_the_key(data, message):
    with pytest.raises(TypeError, match=message):
        Rows().log(data)


# ---------------------------------------------------------------- the API, real run folders
@pytest.fixture(autouse=True)
def no_active_run():
    yield
    curvewatch.finish()


def test_log_before_init_says_to_call_init_first():
    assert curvewatch.run is None
    with pytest.raises(curvewatch.NotInitialized, match=r"curvewatch.log\(\) was used before "
                                                        r"curvewatch.init\(\)"):
        curvewatch.log({"loss": 1.0})
    assert not hasattr(curvewatch, "config")
    with pytest.raises(AttributeError, match="curvewatch.config was used before"):
        curvewatch.config.lr = 0.1


def test_init_log_finish_writes_a_run_folder_with_one_line_per_epoch(runs_dir):
    run = curvewatch.init(project="proj", name="wb", config={"lr": 0.1}, runs_dir=runs_dir,
                          tags=["t"])
    assert curvewatch.run is run
    for epoch in range(3):
        curvewatch.log({"batch_loss": 1.0})
        curvewatch.log({"batch_loss": 0.5})
        curvewatch.log({"epoch": epoch, "train_loss": 1 - epoch / 10, "val_loss": 1.0})
    assert read_history(run.path)["epoch"].tolist() == [1, 2], "live: epochs 1-2 are written"
    curvewatch.finish()
    info = read_run(run.path)
    assert info.state == "completed" and info.name == "wb" and set(info.tags) == {"t", "proj"}
    assert read_history(run.path)["epoch"].tolist() == [1, 2, 3], "finish wrote the last one"
    assert read_steps(run.path)["loss"].tolist() == [1.0, 0.5] * 3
    assert curvewatch.run is None


def test_config_by_attribute_item_and_update_is_written_to_run_json(runs_dir):
    run = curvewatch.init(config={"lr": 0.1}, runs_dir=runs_dir)
    curvewatch.config.batch_size = 32
    curvewatch.config["hidden"] = 64
    curvewatch.config.update({"dropout": 0.2})
    assert curvewatch.config.lr == 0.1 and curvewatch.config["hidden"] == 64
    with pytest.raises(AttributeError, match="config has no key 'momentum'"):
        getattr(curvewatch.config, "momentum")  # noqa: B009
    assert read_run(run.path).config == {"lr": 0.1, "batch_size": 32, "hidden": 64,
                                         "dropout": 0.2}


def test_an_argparse_namespace_is_a_config_and_values_json_cannot_hold_are_strings(runs_dir):
    args = argparse.Namespace(lr=0.1, data=Path("/data/x.csv"), hidden=(64, 32))
    run = curvewatch.init(config=args, runs_dir=runs_dir)
    assert read_run(run.path).config == {"lr": 0.1, "data": "/data/x.csv", "hidden": [64, 32]}
    with pytest.raises(TypeError, match="config must be a dict or an argparse Namespace, got "
                                        "int"):
        curvewatch.init(config=3, runs_dir=runs_dir)


def test_summary_and_values_after_the_last_epoch_go_to_status_json(runs_dir):
    run = curvewatch.init(runs_dir=runs_dir)
    curvewatch.log({"epoch": 1, "val_loss": 0.5})
    curvewatch.log({"test_acc": 0.9})
    curvewatch.summary["best_val_loss"] = 0.5
    curvewatch.finish()
    status = json.loads((run.path / "status.json").read_text())
    assert status["summary"] == {"best_val_loss": 0.5, "test_acc": 0.9}


def test_finish_with_a_non_zero_exit_code_marks_the_run_failed(runs_dir):
    run = curvewatch.init(runs_dir=runs_dir)
    curvewatch.finish(exit_code=3)
    info = read_run(run.path)
    assert info.state == "failed" and "exit code 3" in info.status["error"]


def test_init_twice_finishes_the_first_run(runs_dir):
    first = curvewatch.init(name="first", runs_dir=runs_dir)
    curvewatch.log({"epoch": 1, "val_loss": 1.0})
    second = curvewatch.init(name="second", runs_dir=runs_dir)
    assert curvewatch.run is second
    assert read_run(first.path).state == "completed"
    assert read_history(first.path)["val_loss"].tolist() == [1.0]
    with pytest.raises(curvewatch.NotInitialized, match="after finish"):
        first.log({"epoch": 2})


def test_the_run_as_a_context_manager_records_a_failure(runs_dir):
    with pytest.raises(ZeroDivisionError):
        with curvewatch.init(runs_dir=runs_dir) as run:
            curvewatch.log({"epoch": 1, "val_loss": 1.0})
            raise ZeroDivisionError("in the training step")
    info = read_run(run.path)
    assert info.state == "failed" and "ZeroDivisionError" in info.status["error"]
    assert read_history(run.path)["epoch"].tolist() == [1]


def test_runs_dir_defaults_to_the_env_variable_then_to_runs_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CURVEWATCH_RUNS", raising=False)
    assert curvewatch.init().path.parent.resolve() == (tmp_path / "runs").resolve()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(tmp_path / "elsewhere"))
    assert curvewatch.init().path.parent == tmp_path / "elsewhere"


@pytest.mark.parametrize("kwargs, error, message", [
    ({"resume": "allow"}, TypeError, "unsupported argument\\(s\\) resume"),
    ({"mode": "disabled"}, ValueError, "mode must be one of online, offline"),
    ({"name": "a\x07b"}, ValueError, "run name must not contain control"),
])
def test_init_refuses_what_it_cannot_honour(runs_dir, kwargs, error, message):
    with pytest.raises(error, match=message):
        curvewatch.init(runs_dir=runs_dir, **kwargs)
    assert list(runs_dir.iterdir()) == []


def test_watch_records_each_epochs_gradient_norms_as_the_trainer_does(runs_dir):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    run = curvewatch.init(runs_dir=runs_dir)
    curvewatch.watch(model)
    seen = []  # what gradient_norms says after each backward
    for epoch in range(2):
        for _ in range(3):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            seen.append(curvewatch.gradient_norms(model))
            curvewatch.log({"batch_loss": loss.item()})
        curvewatch.log({"epoch": epoch, "val_loss": loss.item()})  # no backward since
    curvewatch.finish()
    history, layers = read_history(run.path), read_layers(run.path)
    for epoch, norms in ((1, seen[:3]), (2, seen[3:])):
        row = history[history["epoch"] == epoch].iloc[0]
        assert row["grad_norm"] == pytest.approx(np.mean([n.total for n in norms]))
        assert row["grad_norm_max"] == pytest.approx(max(n.total for n in norms))
        by_layer = layers[layers["epoch"] == epoch].iloc[0]
        for name in norms[0].layers:
            rms = np.sqrt(np.mean([n.layers[name] ** 2 for n in norms]))
            assert by_layer[name] == pytest.approx(rms)


@pytest.mark.parametrize("args, error, message", [
    ((torch.nn.Linear(2, 1),), None, None),
    ((torch.nn.Linear(2, 1),), ValueError, "watch\\(log=...\\) must be one of"),
    (("model",), TypeError, "watch\\(\\) takes torch modules, got str"),
])
def test_watch_with_parameters_records_nothing_and_refuses_what_is_not_a_module(
        runs_dir, args, error, message):
    run = curvewatch.init(runs_dir=runs_dir)
    log = "parameters" if error is None else "histograms"
    if error is None:
        curvewatch.watch(*args, log=log)
        args[0](torch.ones(1, 2)).sum().backward()
        curvewatch.log({"epoch": 1, "val_loss": 1.0})
        curvewatch.finish()
        assert "grad_norm" not in read_history(run.path)
    else:
        with pytest.raises(error, match=message):
            curvewatch.watch(*args, log="gradients" if error is TypeError else log)


def run_script(tmp_path, code):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CURVEWATCH_RUNS")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_an_uncaught_exception_in_the_script_marks_its_run_failed(tmp_path):
    done = run_script(tmp_path, """
        import curvewatch as wandb
        wandb.init(name="crashes")
        wandb.log({"epoch": 1, "val_loss": 1.0})
        raise RuntimeError("out of memory, say")
        """)
    assert done.returncode == 1 and "out of memory, say" in done.stderr
    info = read_run(only_run(tmp_path / "runs"))
    assert info.state == "failed" and "RuntimeError: out of memory, say" in info.status["error"]
    assert info.epoch == 1


def test_a_script_that_never_calls_finish_ends_completed_with_its_last_epoch(tmp_path):
    done = run_script(tmp_path, """
        import curvewatch as wandb
        wandb.init(name="no-finish")
        for epoch in range(3):
            wandb.log({"epoch": epoch, "train_loss": 1.0, "val_loss": 1.0})
        """)
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path / "runs")
    assert read_run(run).state == "completed"
    assert read_history(run)["epoch"].tolist() == [1, 2, 3]


@pytest.mark.slow
def test_the_wandb_style_example_runs_unchanged_and_is_diagnosed(tmp_path):
    """examples/wandb_style.py is a wandb script with `import curvewatch as wandb`."""
    source = (ROOT / "examples" / "wandb_style.py").read_text()
    assert sum("# +wandb" in line for line in source.splitlines()) <= 10
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "wandb_style.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={k: v for k, v in os.environ.items() if k != "CURVEWATCH_RUNS"})
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path / "runs")
    info = read_run(run)
    assert info.state == "completed" and info.config["epochs"] == 20
    history = read_history(run)
    assert history["epoch"].tolist() == list(range(1, 21))
    assert history[["train_loss", "val_loss", "val_acc", "grad_norm"]].notna().all().all()
    assert len(read_layers(run)) == 20, "wandb.watch: per-layer gradient norms every epoch"
    assert len(read_steps(run)) == 20 * 14, "one step line per batch (426 rows, 32 a batch)"
    findings = diagnose(history)
    assert all(f.kind != "divergence" for f in findings), [f.message for f in findings]
