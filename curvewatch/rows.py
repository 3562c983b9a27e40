"""wandb-style `log(dict, step, commit)` calls assembled into epoch lines and step lines (pure).

Two layers, each a rule of its own:

- Rows, as wandb makes them: keys logged at the same step merge; a call without `step`
  commits its row (unless `commit=False`), a call with a new `step` commits the previous row.
- Epochs, from the committed rows: a row with an `epoch` key belongs to that epoch (rows with
  the same epoch merge); in a run that has not logged `epoch`, a row with a validation metric
  (`val_loss`, `val/acc`, `eval_loss` ...) closes the next epoch. Keys logged in rows before an
  epoch's row join its line; a key logged twice before the epoch closes is a per-step key
  (a batch loss) and goes, with every later value, to the step lines. An epoch's line is
  complete at the first committed row that is not of that epoch, or at `finish`.
- Names: epoch-line columns take the format's names where a key's words say which
  (`train/loss` -> train_loss, `val/accuracy` -> val_acc, `learning_rate` -> lr); a per-step
  training loss (`batch_loss`, `loss`) is `loss` in the step lines, as the trainer writes it.
  Other keys keep their names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from curvewatch.tracking.import_rows import KNOWN_COLUMNS, SPLITS, column_for, words

#: Keys the epoch lines own: `epoch` is the row's epoch, `layers` is log_epoch's keyword.
_RENAMED = {"layers": "layers_logged"}


@dataclass(frozen=True)
class EpochLine:
    """One finished epoch: its 1-based number and its columns (`step`: wandb's step)."""

    epoch: int
    values: dict[str, Any]


@dataclass(frozen=True)
class StepLine:
    """Values of per-step keys logged at one wandb step."""

    step: int
    values: dict[str, Any]


Line = EpochLine | StepLine


@dataclass
class _Window:
    """The epoch being assembled: its number once known, each key's (step, value)."""

    epoch: int | None = None
    values: dict[str, tuple[int, Any]] = field(default_factory=dict)


class Rows:
    """Assembles log calls into lines; `log` and `finish` return the lines now complete."""

    def __init__(self) -> None:
        self.step = 0  # wandb's step of the row being filled
        self._row: dict[str, Any] = {}
        self._window = _Window()
        self._last_epoch = 0
        self._offset: int | None = None  # +1 when the script counts epochs from 0
        self._epoch_keyed = False
        self._per_step: set[str] = set()
        self._columns: dict[str, str] = {}  # logged key -> epoch-line column
        self._step_columns: dict[str, str] = {}  # logged key -> step-line column

    # ------------------------------------------------------------------ rows (wandb's rule)
    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> list[Line]:
        """One `log` call. Raises ValueError for a step before the current one, naming both."""
        data = flatten(data)
        out: list[Line] = []
        if step is not None:
            step = _whole(step)
            if step < self.step:
                raise ValueError(f"step must not go back: got step {step} after step "
                                 f"{self.step} (steps only increase, as in wandb)")
            if step > self.step:
                out += self._commit()
                self.step = step
        self._row.update(data)
        if commit or (commit is None and step is None):
            out += self._commit()
        return out

    def finish(self) -> tuple[list[Line], dict[str, Any]]:
        """The lines still held, and the values logged after the last epoch (for the run's
        summary: no epoch line takes them)."""
        out = self._commit()
        left: dict[str, Any] = {}
        if self._window.epoch is not None:
            out.append(self._close())
        else:
            left = {k: v for k, (_, v) in self._window.values.items()}
            self._window = _Window()
        return out, left

    def _commit(self) -> list[Line]:
        if not self._row:
            return []
        row, step = self._row, self.step
        self._row, self.step = {}, step + 1
        return self._route(step, row)

    # ------------------------------------------------------------------ epochs
    def _route(self, step: int, row: dict[str, Any]) -> list[Line]:
        out: list[Line] = []
        epoch = self._epoch_of(row)
        win = self._window
        latest = max(self._last_epoch, win.epoch or 0)
        if epoch is not None and epoch != win.epoch and epoch <= latest:
            raise ValueError(f"epoch {self._shown(epoch)} was logged after epoch "
                             f"{self._shown(latest)}: epochs only increase")
        if win.epoch is not None and epoch != win.epoch:
            out.append(self._close())
        steps: dict[str, Any] = {}
        for key, value in row.items():
            if key == "epoch":
                continue
            if key in self._per_step:
                steps[key] = value
            elif key in self._window.values:  # logged twice within one epoch: per step
                self._per_step.add(key)
                first_step, first = self._window.values.pop(key)
                out.append(StepLine(first_step, {self._step_column(key): first}))
                steps[key] = value
            else:
                self._window.values[key] = (step, value)
        if steps:
            out.append(StepLine(step, {self._step_column(k): v for k, v in steps.items()}))
        if epoch is not None:
            self._window.epoch = epoch
        return out

    def _epoch_of(self, row: Mapping[str, Any]) -> int | None:
        """The 1-based epoch a committed row closes, or None for a row inside an epoch."""
        if "epoch" in row:
            value = row["epoch"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value != int(value) or value < 0:
                raise ValueError(f"epoch must be a whole number >= 0, got {value!r} (log a "
                                 f"fractional epoch under another key)")
            if self._offset is None:
                self._offset = 1 if value == 0 else 0
            self._epoch_keyed = True
            return int(value) + self._offset
        if not self._epoch_keyed and any(is_validation(k) for k in row
                                         if k not in self._per_step):
            return (self._window.epoch or self._last_epoch) + 1
        return None

    def _close(self) -> EpochLine:
        win = self._window
        assert win.epoch is not None
        values = {self._column(k): v for k, (_, v) in win.values.items()}
        if win.values:
            values.setdefault("step", max(s for s, _ in win.values.values()))
        self._last_epoch, self._window = win.epoch, _Window()
        return EpochLine(win.epoch, values)

    def _column(self, key: str) -> str:
        """The epoch-line column of a logged key: the format's own name where the key's words
        say which (`train/loss` -> train_loss, `learning_rate` -> lr), once per column;
        otherwise the key itself."""
        if key not in self._columns:
            used = set(self._columns.values())
            col, _ = column_for(key)
            if col not in KNOWN_COLUMNS or col in used:
                col = _RENAMED.get(key, key)
            while col in used:  # `train_loss` after `loss` took that column
                col += "_"
            self._columns[key] = col
        return self._columns[key]

    def _step_column(self, key: str) -> str:
        """The step-line column of a per-step key: `loss` for the training loss (`loss`,
        `batch_loss`, `train/loss`: the name the trainer's steps.jsonl and the dashboard's step
        chart use), `lr` and `grad_norm` by their words, once per column; else the key."""
        if key not in self._step_columns:
            used = set(self._step_columns.values())
            col, _ = column_for(key)
            if col == "train_loss" or ("loss" in words(key) and not is_validation(key)):
                col = "loss"
            elif col not in ("lr", "grad_norm"):
                col = key
            if col in used:
                col = key
            while col in used:
                col += "_"
            self._step_columns[key] = col
        return self._step_columns[key]

    def _shown(self, epoch: int) -> int:
        return epoch - (self._offset or 0)


def _whole(step: Any) -> int:
    """A step as an int: ints, numpy integers, one-element integer tensors; else ValueError."""
    value = scalar("step", step) if not isinstance(step, (bool, int)) else step
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    return value


def is_validation(key: str) -> bool:
    """A key naming a validation metric: `val_loss`, `val/acc`, `eval_loss`, `validation/f1`."""
    return any(w in SPLITS["val"] for w in words(key))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as `outer/inner` keys, each value a number, bool, string or None.
    Raises TypeError naming the key of anything else (images, tables, histograms)."""
    if type(data) is not dict and not isinstance(data, Mapping):
        raise TypeError(f"log() takes a dict of metrics, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if type(key) is not str or not key:
            raise TypeError(f"metric names must be non-empty strings, got {key!r}")
        name = prefix + key if prefix else key
        if type(value) in _PLAIN:  # the common case first: a log call per batch is hot
            out[name] = value
        elif isinstance(value, Mapping):
            out.update(flatten(value, f"{name}/"))
        else:
            out[name] = scalar(name, value)
    return out


_PLAIN = frozenset((float, int, str, bool, type(None)))


def scalar(name: str, value: Any) -> Any:
    """`value` as a JSON scalar: numbers, bools, strings and None as they are; a numpy scalar
    or one-element tensor through `.item()`. TypeError naming `name` for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)
    size = getattr(value, "size", None)
    numel = size if isinstance(size, int) else getattr(value, "numel", lambda: None)()
    if callable(item) and numel in (None, 1):
        got = item()
        if isinstance(got, (bool, int, float)):
            return got
    raise TypeError(f"the value of {name!r} is a {type(value).__name__}: curvewatch.log takes "
                    f"numbers, bools, strings, numpy scalars and one-element tensors (no media, "
                    f"tables or histograms)")
