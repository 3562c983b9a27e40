"""Hugging Face transformers integration: `Trainer(callbacks=[CurvewatchCallback()])` writes a
Curvewatch run.

    from curvewatch.transformers import CurvewatchCallback
    trainer = Trainer(model, args, ..., callbacks=[CurvewatchCallback(early_stop=("overfitting",))])

A row is an evaluation round (`eval_strategy` "epoch" or "steps"), numbered from 1; HF's own,
fractional epoch is kept in the row's `hf_epoch` column. The training logs between two rounds
(`loss`, `grad_norm`, `learning_rate`) give the row's train_loss, grad_norm and lr and go to
steps.jsonl as they come. Only the world's process zero writes.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from curvewatch.tracking import Run
from curvewatch.tracking.import_rows import column_for

from ._integration import EarlyStop, finish_returned, jsonable

__all__ = ["CurvewatchCallback", "eval_row"]

#: HF's names in the training logs -> the format's (steps.jsonl and the rows).
_TRAIN_NAMES = {"loss": "train_loss", "grad_norm": "grad_norm", "learning_rate": "lr"}
#: Keys of the summary HF logs once at the end of train() (not a training log window).
_SUMMARY_KEYS = ("train_runtime", "train_loss", "total_flos")


def eval_row(metrics: Mapping[str, Any]) -> dict[str, float]:
    """An evaluation round's metrics (`eval_loss`, `eval_accuracy`, `eval_runtime`, `epoch`
    ...) as row columns (pure): known names to the format's (val_loss, val_acc), HF's epoch to
    `hf_epoch`, others by their words (`eval_f1` -> `eval_f1`)."""
    row: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        column = "hf_epoch" if name == "epoch" else column_for(name)[0]
        row[column] = float(value)
    return row


def train_columns(windows: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """The row's training columns from the training logs since the last round (pure): each log
    is (steps it covers, values); train_loss and grad_norm are step-weighted means (HF's loss
    is already a mean over its window), lr the last value."""
    out: dict[str, float] = {}
    for column in ("train_loss", "grad_norm"):
        pairs = [(n, v[column]) for n, v in windows if column in v]
        if pairs and sum(n for n, _ in pairs) > 0:
            out[column] = math.fsum(n * x for n, x in pairs) / sum(n for n, _ in pairs)
    lrs = [v["lr"] for _, v in windows if "lr" in v]
    if lrs:
        out["lr"] = lrs[-1]
    return out


class CurvewatchCallback(TrainerCallback):
    """Writes the Trainer's run into a Curvewatch run folder and can end training on the
    diagnosis.

    Args:
        runs_dir: where runs go; default `$CURVEWATCH_RUNS`, else ./runs.
        name: the run's display name; default the TrainingArguments' run_name, else
            "transformers".
        early_stop: kinds that end training when the diagnosis finds them ongoing after an
            evaluation round ("overfitting", "plateau", "divergence"); default none.
        thresholds: a `diagnosis.Thresholds` for the diagnosis; default the engine's.
        config, tags, notes: added to run.json (the config also holds the TrainingArguments
            and, under `model_config`, the model's config).
    """

    def __init__(self, runs_dir: str | Path | None = None, name: str | None = None, *,
                 early_stop: Iterable[str] = (), thresholds: Any = None,
                 config: Mapping[str, Any] | None = None, tags: Iterable[str] = (),
                 notes: str = "") -> None:
        self.stopper = EarlyStop(early_stop, thresholds)
        self.runs_dir, self.name = runs_dir, name
        self._config, self._tags, self._notes = dict(config or {}), list(tags), notes
        self.run: Run | None = None
        self._windows: list[tuple[int, dict[str, float]]] = []
        self._last_logged_step = 0
        self._training = False  # between on_train_begin and on_train_end, on every process

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: Any = None, **kwargs: Any) -> None:
        self._training = True
        if not state.is_world_process_zero:
            return
        # a second train() with the same callback (a search, a resume) is a run of its own
        self.stopper.finding, self._windows = None, []
        config = {**args.to_sanitized_dict(), **jsonable(self._config)}
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_diff_dict"):
            config["model_config"] = jsonable(model_config.to_diff_dict())
        model_info: dict[str, Any] = {"name": type(model).__name__} if model is not None else {}
        if model is not None and hasattr(model, "num_parameters"):
            model_info["n_params"] = int(model.num_parameters())
        self.run = Run.create(self.runs_dir, name=self.name or _run_name(args),
                              config=config, model=model_info, tags=self._tags,
                              notes=self._notes, epochs=_planned_rounds(args, state))
        self._last_logged_step = state.global_step

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if self.run is None or not logs or any(k.startswith("eval_") for k in logs):
            return  # evaluation logs come to on_evaluate
        if all(k in logs for k in _SUMMARY_KEYS):
            self.run.update_status(summary={k: v for k, v in logs.items()
                                            if isinstance(v, (int, float))})
            return
        values = {_TRAIN_NAMES[k]: float(v) for k, v in logs.items() if k in _TRAIN_NAMES}
        if not values:
            return
        covered = state.global_step - self._last_logged_step
        self._last_logged_step = state.global_step
        self._windows.append((covered, values))
        step_values = {("loss" if k == "train_loss" else k): v for k, v in values.items()}
        if "epoch" in logs:
            step_values["hf_epoch"] = float(logs["epoch"])
        self.run.log_step(state.global_step, **step_values)

    def on_evaluate(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, metrics: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> None:
        if not self._training:
            if self.run is not None and metrics:
                warnings.warn(f"Curvewatch did not record evaluation metrics "
                              f"{', '.join(sorted(metrics))}: they came outside train() (an "
                              f"evaluate() after training is not a round of the run)",
                              stacklevel=2)
            return
        stop = False
        if self.run is not None and metrics:
            row: dict[str, Any] = {**train_columns(self._windows), **eval_row(metrics)}
            self._windows = []
            self.run.log_epoch(None, step=state.global_step, **row)
            stop = self.stopper.check(self.run) is not None or self.run.stop_requested()
        if _agreed(stop):
            control.should_training_stop = True

    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **kwargs: Any) -> None:
        self._training = False
        if self.run is not None and self.run.status.get("state") == "running":
            finish_returned(self.run, self.stopper.finding)


def _agreed(stop: bool) -> bool:
    """Process zero's decision, shared with every process of a distributed run (they all
    evaluate, so all reach this point): one process stopping alone would hang the others."""
    try:
        import torch.distributed as dist
    except ImportError:
        return stop
    if not (dist.is_available() and dist.is_initialized()):
        return stop
    flag = [stop]
    dist.broadcast_object_list(flag, src=0)
    return bool(flag[0])


def _run_name(args: TrainingArguments) -> str:
    name = getattr(args, "run_name", None)
    # HF defaults run_name to output_dir, a path: its last part names the run
    return Path(name).name if name else "transformers"


def _planned_rounds(args: TrainingArguments, state: TrainerState) -> int | None:
    """Rows planned: the epochs when evaluating every epoch, else unknown."""
    strategy = getattr(args, "eval_strategy", None)
    if getattr(strategy, "value", strategy) == "epoch" and args.max_steps <= 0:
        return int(math.ceil(args.num_train_epochs))
    return None
