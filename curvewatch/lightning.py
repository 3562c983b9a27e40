"""Lightning integration: `Trainer(logger=CurvewatchLogger())` writes a Curvewatch run.

    from curvewatch.lightning import CurvewatchLogger, DiagnosisEarlyStopping, GradNormMonitor
    trainer = L.Trainer(logger=CurvewatchLogger(name="my-model"),
                        callbacks=[GradNormMonitor(), DiagnosisEarlyStopping()])

Works with `lightning.pytorch` or, when that is absent, `pytorch_lightning`. Lightning counts
epochs from 0; Curvewatch's rows are 1-based, so Lightning's epoch e is row e + 1. One row is
written per epoch, from everything Lightning logged in it (docs/integrations.md says which
value a column takes); per-step records go to steps.jsonl. Only rank zero writes.
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.loggers.logger import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the older package name, same API
    from pytorch_lightning import Callback, LightningModule, Trainer  # type: ignore[assignment]
    from pytorch_lightning.callbacks import EarlyStopping  # type: ignore[assignment]
    from pytorch_lightning.loggers.logger import Logger  # type: ignore[assignment]
    from pytorch_lightning.utilities import rank_zero_only

from curvewatch.diagnosis import Finding
from curvewatch.tracking import Run, gradient_norms
from curvewatch.tracking.import_rows import column_for, keeps_last
from curvewatch.tracking.writer import error_tail

from ._integration import EarlyStop, finish_returned, jsonable

__all__ = ["CurvewatchLogger", "DiagnosisEarlyStopping", "GradNormMonitor", "epoch_row"]

#: Lightning's `finalize` statuses; "failed" is also what Ctrl-C gives (told apart below).
_FINAL = {"success": "completed", "finished": "stopped", "failed": "failed"}


def epoch_row(records: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """One epoch's Curvewatch row from the metric dicts Lightning logged in it (pure).

    Names map to columns as the TensorBoard import maps tags (`column_for`): among names for
    the same column the epoch-level one wins (`train_loss_epoch` over `train_loss` over
    `train_loss_step`). Its value is the last logged in the epoch for validation metrics and
    the lr (`keeps_last`: with val_check_interval < 1 the epoch's last validation), else the
    mean of the epoch's values (a metric logged on step only has no epoch value). Names that
    lose their column to another are step twins and stay out of the row."""
    values: dict[str, list[float]] = {}
    for record in records:
        for name, value in record.items():
            if name != "epoch":
                values.setdefault(name, []).append(float(value))
    chosen: dict[str, tuple[tuple[int, int], str]] = {}
    for name in values:
        column, priority = column_for(name)
        rank = (priority, -len(name))
        if column not in chosen or rank > chosen[column][0]:
            chosen[column] = (rank, name)
    return {column: values[name][-1] if keeps_last(column)
            else math.fsum(values[name]) / len(values[name])
            for column, (_, name) in sorted(chosen.items())}


def _is_epoch_end_record(metrics: Mapping[str, Any]) -> bool:
    """Lightning's train epoch record (`*_epoch` names of training metrics), the epoch's last."""
    return any(name.endswith("_epoch") and not column_for(name)[0].startswith(("val_", "test_"))
               for name in metrics)


class CurvewatchLogger(Logger):
    """A Lightning logger writing one Curvewatch run folder (created on first use).

    `runs_dir`: default `$CURVEWATCH_RUNS`, else ./runs. `name`: the run's display name
    (default "lightning"). `config`, `tags`, `notes` go to run.json; hyperparameters Lightning
    logs (`save_hyperparameters`) are merged into the config."""

    def __init__(self, runs_dir: str | Path | None = None, name: str | None = None, *,
                 config: Mapping[str, Any] | None = None, tags: Iterable[str] = (),
                 notes: str = "") -> None:
        super().__init__()
        self._runs_dir = runs_dir
        self._name = name or "lightning"
        self._create = {"config": jsonable(dict(config or {})), "tags": list(tags),
                        "notes": notes}
        self._run: Run | None = None
        self._epoch: int | None = None  # Lightning's (0-based) epoch being buffered
        self._records: list[dict[str, float]] = []
        self._last_step: int | None = None  # Lightning's step of the epoch's last record
        self._pending: list[tuple[dict[str, float], int | None]] = []  # records without epoch
        self._layers: dict[str, float] | None = None
        self._written: set[int] = set()
        self._finding: Finding | None = None
        self._warned = False

    # ------------------------------------------------------------ Logger's members
    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        """The run's id (folder name); empty on ranks other than zero, which write nothing."""
        run = self.run
        return run.id if run is not None else ""

    @property
    def save_dir(self) -> None:
        """None: Lightning keeps its own files (checkpoints) under `default_root_dir`."""
        return None

    @property
    def log_dir(self) -> str | None:
        run = self.run
        return str(run.path) if run is not None else None

    @property
    def run(self) -> Run | None:
        """The open run (created here on first use), None on ranks other than zero."""
        if self._run is None and getattr(rank_zero_only, "rank", 0) == 0:
            self._run = Run.create(self._runs_dir, name=self._name, **self._create)
        return self._run

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(params, argparse.Namespace):
            params = vars(params)
        run = self.run
        # validate()/test() after fit log them again, into a run that has ended
        if run is not None and params and run.status.get("state") == "running":
            run.update_config(jsonable(dict(params)))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        run = self.run
        if run is None:
            return
        if run.status.get("state") != "running":  # trainer.validate() or test() after fit
            self._drop(metrics, "the run had ended (logged after fit)")
            return
        if "epoch" not in metrics:
            # LearningRateMonitor calls loggers directly, without Lightning's epoch, at an
            # epoch's or a batch's start: the record belongs to the next record's epoch
            self._pending.append((dict(metrics), step))
            return
        self._add(int(metrics["epoch"]), metrics, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        run = self._run
        if run is None or run.status.get("state") != "running":
            return
        if self._pending and self._epoch is not None:
            self._add(self._epoch, {}, None)
        elif self._pending:
            self._drop({k: 0.0 for m, _ in self._pending for k in m}, "no epoch followed them")
        self._flush()
        state = _FINAL.get(status, "completed")
        exc = sys.exc_info()[1]  # Lightning finalizes "failed" inside its except block
        if state == "failed" and isinstance(exc, KeyboardInterrupt):
            run.finish("stopped", stop_reason="interrupted (Ctrl-C)")
        elif state == "failed":
            run.finish("failed", error=error_tail(exc) if exc else "Lightning reported a failure")
        elif state == "completed":
            finish_returned(run, self._finding)
        else:
            run.finish(state)

    # ------------------------------------------------------------ for the callbacks
    def end_epoch(self, epoch: int, metrics: Mapping[str, float], step: int) -> None:
        """Write Lightning's epoch `epoch` now, with `metrics` (its epoch-end values, which
        Lightning logs only after the epoch-end hooks). DiagnosisEarlyStopping calls it so the
        diagnosis sees the epoch it decides on; the epoch record that follows adds nothing.
        `step`: the optimizer steps done (Lightning's global_step)."""
        if self._run is None or epoch in self._written:
            return
        self._add(epoch, {}, None)
        self._last_step = step - 1
        logged = {name for record in self._records for name in record}
        # a name logged on step has no epoch value: its callback metric is the last step's
        self._records.append({k: v for k, v in metrics.items() if k not in logged})
        self._flush()

    def note_layers(self, epoch: int, layers: Mapping[str, float]) -> None:
        """Per-parameter-tensor gradient norms of Lightning's epoch `epoch` (GradNormMonitor)."""
        if epoch == self._epoch or self._epoch is None:
            self._layers = dict(layers)

    def note_stop(self, finding: Finding) -> None:
        """The finding that ended the run early: finalize records `early_stopped` with it."""
        self._finding = finding

    # ------------------------------------------------------------ internals
    def _add(self, epoch: int, metrics: Mapping[str, float], step: int | None) -> None:
        """Buffer a record of Lightning's epoch `epoch` (after the records waiting for an
        epoch); the epoch before it is complete, and so is this one at its epoch record."""
        pending, self._pending = self._pending, []
        for record, at in [*pending, (metrics, step)]:
            if not record:
                continue
            if epoch in self._written:
                self._late(epoch, record, at)
                continue
            if self._epoch is not None and epoch != self._epoch:
                self._flush()
            self._epoch = epoch
            self._records.append({k: v for k, v in record.items() if k != "epoch"})
            if at is not None:
                self._last_step = max(at, self._last_step or 0)
            self._log_step(epoch, record, at)
            if _is_epoch_end_record(record):
                self._flush()
        if epoch not in self._written and self._epoch != epoch:
            self._flush()  # the epoch before, if still open
            self._epoch = epoch

    def _flush(self) -> None:
        if self._run is None or self._epoch is None or not self._records:
            return
        row = epoch_row(self._records)
        if self._last_step is not None:  # Lightning's steps start at 0: steps done so far
            row["step"] = self._last_step + 1
        self._run.log_epoch(self._epoch + 1, layers=self._layers, **row)
        self._written.add(self._epoch)
        self._records, self._layers, self._epoch, self._last_step = [], None, None, None

    def _log_step(self, epoch: int, metrics: Mapping[str, float], step: int | None) -> None:
        """Training-step records (names ending in `_step`, or plain ones logged on step) go to
        steps.jsonl with the trainer's names: train loss as `loss`."""
        names = [n for n in metrics if n != "epoch"
                 and not column_for(n)[0].startswith(("val_", "test_"))
                 and not n.endswith("_epoch")]
        if step is None or not names or _is_epoch_end_record(metrics):
            return
        values = {column_for(n)[0]: float(metrics[n]) for n in names}
        if "train_loss" in values:
            values["loss"] = values.pop("train_loss")
        assert self._run is not None
        self._run.log_step(int(step), epoch=epoch + 1, **values)

    def _late(self, epoch: int, metrics: Mapping[str, float], step: int | None) -> None:
        """A record for an epoch already written: the epoch record after end_epoch repeats
        values the row has; anything new is kept in steps.jsonl, never lost silently."""
        row = epoch_row([metrics])
        new = {k: v for k, v in row.items() if k not in self._row_columns()}
        if new and self._run is not None:
            self._run.log_step(int(step or 0), epoch=epoch + 1, **new)
            self._warn(f"metrics {', '.join(sorted(new))} arrived after epoch {epoch + 1} was "
                       "written; they are in steps.jsonl")

    def _row_columns(self) -> set[str]:
        run = self._run
        return set(run.status.get("latest", {})) if run is not None else set()

    def _drop(self, metrics: Mapping[str, float], why: str) -> None:
        names = ", ".join(sorted(k for k in metrics if k != "epoch"))
        self._warn(f"Curvewatch did not record {names}: {why}")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(message, stacklevel=3)


class GradNormMonitor(Callback):
    """Logs the global gradient norm before each optimizer step (`grad_norm`, per step and as
    the epoch mean, to every logger) and gives a CurvewatchLogger the per-tensor norms of the
    epoch (root mean square over its steps) for layers.jsonl. Norms are before clipping."""

    def __init__(self) -> None:
        self._squares: dict[str, float] = {}
        self._steps = 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._squares, self._steps = {}, 0

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule,
                                 optimizer: Any) -> None:
        norms = gradient_norms(pl_module)
        pl_module.log("grad_norm", norms.total, on_step=True, on_epoch=True)
        for name, value in norms.layers.items():
            self._squares[name] = self._squares.get(name, 0.0) + value * value
        self._steps += 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = _curvewatch_logger(trainer)
        if logger is not None and self._steps:
            logger.note_layers(trainer.current_epoch,
                               {k: math.sqrt(v / self._steps) for k, v in self._squares.items()})


class DiagnosisEarlyStopping(EarlyStopping):
    """Stops training when Curvewatch's diagnosis finds one of `kinds` ongoing (as the
    trainer's --early-stop: "overfitting", "plateau", "divergence") or a STOP file asks
    (the dashboard's Stop), deciding after each epoch's end hooks; ranks agree as with
    Lightning's EarlyStopping (any rank's stop stops all). Needs a CurvewatchLogger in the
    Trainer's loggers. An EarlyStopping subclass so that Lightning runs it after the
    LightningModule's on_train_epoch_end, as it does its own."""

    def __init__(self, kinds: Iterable[str] = ("overfitting", "plateau"),
                 thresholds: Any = None) -> None:
        super().__init__(monitor="curvewatch-diagnosis", strict=False)
        self.stopper = EarlyStop(kinds, thresholds)
        self.kinds = self.stopper.kinds
        self.finding: Finding | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(kinds=self.kinds)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if _curvewatch_logger(trainer) is None:
            got = ", ".join(type(x).__name__ for x in trainer.loggers) or "none"
            raise ValueError("DiagnosisEarlyStopping needs a CurvewatchLogger among the "
                             f"Trainer's loggers, got {got}")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pass  # decided once per epoch, at its end (the row needs the train epoch values)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or getattr(trainer, "fast_dev_run", False):
            return
        finding, stop_file = self._decide(trainer)
        stop = trainer.strategy.reduce_boolean_decision(finding is not None or stop_file,
                                                        all=False)
        trainer.should_stop = trainer.should_stop or stop
        if stop:
            self.stopped_epoch = trainer.current_epoch
            self.finding = finding

    def _decide(self, trainer: Trainer) -> tuple[Finding | None, bool]:
        """On rank zero: write this epoch's row, diagnose the history; the finding that stops
        the run, and whether a STOP file asks to stop (None, False elsewhere)."""
        logger = _curvewatch_logger(trainer)
        if logger is None or logger.run is None:
            return None, False
        logger.end_epoch(trainer.current_epoch, _epoch_values(trainer.callback_metrics),
                         trainer.global_step)
        if logger.run.stop_requested():
            return None, True
        finding = self.stopper.check(logger.run)
        if finding is not None:
            logger.note_stop(finding)
        return finding, False


def _epoch_values(callback_metrics: Mapping[str, Any]) -> dict[str, float]:
    """The training side of Lightning's callback metrics at an epoch's end: their epoch values.
    Validation names are left out: they hold the last validation's values, which may be an
    earlier epoch's (check_val_every_n_epoch > 1); the logger has this epoch's, if any."""
    out = {}
    for name, value in callback_metrics.items():
        column = column_for(name)[0]
        if name.endswith("_step") or column.startswith(("val_", "test_")):
            continue
        out[name] = float(value)
    return out


def _curvewatch_logger(trainer: Trainer) -> CurvewatchLogger | None:
    return next((x for x in trainer.loggers if isinstance(x, CurvewatchLogger)), None)
