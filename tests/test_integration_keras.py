"""curvewatch.keras with the real Keras 3 on the torch backend: one row per epoch equal to
Keras' own History, epochs without validation leave val absent, and the diagnosis ends an
overfitting fit through model.stop_training."""
from __future__ import annotations

import importlib.util
import os
import runpy
from types import ModuleType

import numpy as np
import pytest

from conftest import ROOT
from curvewatch.diagnosis import diagnose
from curvewatch.tracking import read_history, read_run

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported
# Keras is imported by the fixture, not here: collection imports every module on every
# worker, and keras with what it pulls in costs seconds of CPU; its group keeps its tests,
# and so that import, on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.xdist_group("keras"),
              pytest.mark.skipif(importlib.util.find_spec("keras") is None,
                                 reason="keras is not installed"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")]


@pytest.fixture(scope="module")
def keras() -> ModuleType:
    import keras
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras runs on {keras.backend.backend()} here, not torch")
    return keras


@pytest.fixture(scope="module")
def CurvewatchCallback(keras):  # the class, under its own name
    from curvewatch.keras import CurvewatchCallback
    return CurvewatchCallback


def digits(n_train: int, label_noise: float = 0.0):
    """Train and validation splits of sklearn's digits; `label_noise` of the training labels
    redrawn at random (a big enough model memorises them: it overfits)."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = (x / 16.0).astype("float32"), y.astype("int64")
    tr, va = order[:n_train], order[n_train:n_train + 500]
    y_tr = y[tr].copy()
    noisy = rng.random(n_train) < label_noise
    y_tr[noisy] = rng.integers(0, 10, int(noisy.sum()))
    return (x[tr], y_tr), (x[va], y[va])


def mlp(keras: ModuleType, hidden: int, lr: float):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(10)], name="digits_mlp")
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_one_row_per_epoch_with_keras_own_values_and_val_absent_between_validations(
        tmp_path, keras, CurvewatchCallback):
    (x, y), val = digits(400)
    callback = CurvewatchCallback(tmp_path / "runs", config={"hidden": 32}, tags=["keras"])
    fitted = mlp(keras, 32, 3e-3).fit(x, y, validation_data=val, validation_freq=2, epochs=4,
                               batch_size=64, verbose=0, callbacks=[callback])
    history = read_history(callback.run.path)
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # Keras' epochs 0-3
    kept = fitted.history
    assert history["train_loss"].tolist() == pytest.approx(kept["loss"], rel=1e-6)
    assert history["train_acc"].tolist() == pytest.approx(kept["accuracy"], rel=1e-6)
    assert history["lr"].tolist() == pytest.approx([3e-3] * 4)
    assert history["val_loss"].iloc[1::2].tolist() == pytest.approx(kept["val_loss"], rel=1e-6)
    assert history["absent"].tolist()[0::2] == ["val_acc,val_loss"] * 2
    assert "divergence" not in {f.kind for f in diagnose(history)}
    info = read_run(callback.run.path)
    assert info.state == "completed" and info.name == "digits_mlp" and info.tags == ("keras",)
    assert info.config["hidden"] == 32 and info.config["epochs"] == 4
    assert info.config["optimizer"]["name"] == "adam" and info.epochs == 4


def test_the_diagnosis_ends_an_overfitting_fit(tmp_path, keras, CurvewatchCallback):
    (x, y), val = digits(100, label_noise=0.3)
    callback = CurvewatchCallback(tmp_path / "runs", name="memorise",
                                  early_stop=("overfitting",))
    fitted = mlp(keras, 256, 1e-2).fit(x, y, validation_data=val, epochs=100, batch_size=100,
                                verbose=0, callbacks=[callback])
    trained = len(fitted.history["loss"])
    assert trained < 100
    info = read_run(callback.run.path)
    assert info.state == "early_stopped" and info.status["stopped_by"]["kind"] == "overfitting"
    assert read_history(callback.run.path)["epoch"].iloc[-1] == trained


def test_a_stop_file_ends_the_fit_after_the_epoch_as_stopped(tmp_path, keras,
                                                             CurvewatchCallback):
    class StopAtEpoch(keras.callbacks.Callback):
        """Asks the run to stop as the dashboard's Stop button does (a STOP file)."""

        def __init__(self, callback, epoch: int):
            super().__init__()
            self.callback, self.epoch = callback, epoch

        def on_epoch_end(self, epoch, logs=None):
            if epoch == self.epoch:
                (self.callback.run.path / "STOP").touch()

    (x, y), val = digits(64)
    callback = CurvewatchCallback(tmp_path / "runs", name="stop-button")
    mlp(keras, 16, 1e-3).fit(x, y, validation_data=val, epochs=20, verbose=0,
                             callbacks=[StopAtEpoch(callback, 1), callback])
    info = read_run(callback.run.path)
    assert info.state == "stopped" and info.status["stop_reason"] == "stop requested (STOP file)"
    assert read_history(callback.run.path)["epoch"].tolist() == [1, 2]


def test_unknown_early_stop_kinds_are_rejected_by_name(CurvewatchCallback):
    with pytest.raises(ValueError, match="'overfit'"):
        CurvewatchCallback(early_stop=("overfit",))


def quick_start() -> str:
    text = (ROOT / "docs" / "integrations.md").read_text()
    return text.split("<!-- keras quick start -->", 1)[1].split("```python\n", 1)[1] \
        .split("```", 1)[0]


def test_the_quick_start_in_the_docs_is_the_example_and_runs(tmp_path, monkeypatch, keras):
    example = ROOT / "examples" / "keras_quickstart.py"
    assert quick_start() in example.read_text()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(example), run_name="__main__")  # as `python keras_quickstart.py`
    [run] = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert read_run(run).state in ("completed", "early_stopped")
    history = read_history(run)
    assert len(history) >= 2 and {"train_loss", "val_loss", "val_acc"} <= set(history.columns)
