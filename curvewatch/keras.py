"""Keras 3 integration: `model.fit(..., callbacks=[CurvewatchCallback()])` writes a Curvewatch run.

    import os; os.environ["KERAS_BACKEND"] = "torch"   # before importing keras
    from curvewatch.keras import CurvewatchCallback
    model.fit(x, y, validation_data=(xv, yv), epochs=50, callbacks=[CurvewatchCallback()])

One row per epoch from the logs Keras gives `on_epoch_end`: Keras counts epochs from 0, so its
epoch e is the run's row e + 1. Names map to the format's columns by their words (`loss` ->
train_loss, `val_accuracy` -> val_acc, `learning_rate` -> lr); the optimizer's learning rate
fills lr when the logs lack it; an epoch Keras did not validate (`validation_freq=2`) leaves
val_* absent.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import keras  # type: ignore[import-untyped]

from curvewatch.tracking import Run
from curvewatch.tracking.import_rows import column_for

from ._integration import EarlyStop, finish_returned, jsonable

__all__ = ["CurvewatchCallback", "epoch_row"]


def epoch_row(logs: Mapping[str, Any]) -> dict[str, float]:
    """The row of one epoch's Keras logs (pure): each number under its column."""
    return {column_for(name)[0]: float(value) for name, value in logs.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


class CurvewatchCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Writes a Keras `fit` into a Curvewatch run folder and can end it on the diagnosis.

    Args:
        runs_dir: where runs go; default `$CURVEWATCH_RUNS`, else ./runs.
        name: the run's display name; default the model's name.
        early_stop: kinds that end training (`model.stop_training`) when the diagnosis finds
            them ongoing after an epoch ("overfitting", "plateau", "divergence"); default none.
        thresholds: a `diagnosis.Thresholds`; default the engine's.
        config, tags, notes: added to run.json (the config also holds fit's epochs and
            steps, and the optimizer's settings under `optimizer`).
    """

    def __init__(self, runs_dir: str | Path | None = None, name: str | None = None, *,
                 early_stop: Iterable[str] = (), thresholds: Any = None,
                 config: Mapping[str, Any] | None = None, tags: Iterable[str] = (),
                 notes: str = "") -> None:
        super().__init__()
        self.stopper = EarlyStop(early_stop, thresholds)
        self.runs_dir, self.name = runs_dir, name
        self._config, self._tags, self._notes = dict(config or {}), list(tags), notes
        self.run: Run | None = None

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        # each fit() is a run of its own
        self.stopper.finding = None
        params = dict(self.params or {})
        config = {"epochs": params.get("epochs"), "steps": params.get("steps"),
                  **jsonable(self._config)}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "get_config"):
            config["optimizer"] = jsonable(optimizer.get_config())
        model = {"name": self.model.name, "n_params": int(self.model.count_params())}
        self.run = Run.create(self.runs_dir, name=self.name or self.model.name, config=config,
                              model=model, tags=self._tags, notes=self._notes,
                              epochs=params.get("epochs"))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is None:
            return
        row: dict[str, Any] = epoch_row(logs or {})
        optimizer = getattr(self.model, "optimizer", None)
        if "lr" not in row and optimizer is not None:  # Keras' logs hold it only with a
            # ReduceLROnPlateau; a schedule's value is the one the epoch's last step used
            row["lr"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        self.run.log_epoch(epoch + 1, **row)
        if self.stopper.check(self.run) is not None or self.run.stop_requested():
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is not None and self.run.status.get("state") == "running":
            finish_returned(self.run, self.stopper.finding)
