"""Import CSV logs into run folders: Lightning's CSVLogger (`metrics.csv`: one line per log
call, `epoch` and `step` columns, empty cells where a metric was not logged), Keras'
CSVLogger (one line per epoch, `epoch` first, counting from 0) and any other CSV of numbers
whose columns are named by `--map` or by their words (`train_loss`, `val_acc` ...).

Each column becomes a series of points at the line's step (Keras: its epoch; a CSV without
either: the line number), assembled into rows by `tracking.import_rows`, as TensorBoard's are.
Lightning's `hparams.yaml` beside the file fills the run's config."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .import_rows import KNOWN_COLUMNS, Scalar, column_for
from .import_runs import ImportInputError, ImportPlan, check_overrides, imported_before, plan_run

SOURCE = "csv"
KINDS = ("Lightning's CSVLogger metrics.csv (epoch and step columns)",
         "Keras' CSVLogger log (epoch first)",
         "a CSV of numbers with a header whose columns --map names or that name "
         f"{', '.join(KNOWN_COLUMNS)}")
#: Bytes of a CSV log read at most: a log of a few million lines.
MAX_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class CsvLog:
    """A CSV log as series: its kind, its columns' points, and where its epochs start."""
    kind: str
    scalars: Mapping[str, tuple[Scalar, ...]]
    epoch_base: int


def plan_csv(paths: list[Path], runs_dir: str | Path,
             overrides: Mapping[str, str] | None = None) -> list[ImportPlan]:
    """Read CSV logs and convert each into a run, writing nothing; ImportInputError when
    one is none of the kinds accepted (naming what it found) or `--map` names no column."""
    logs = [read_csv_log(p, overrides or {}) for p in paths]
    check_overrides(overrides or {}, (c for log in logs for c in log.scalars))
    before = imported_before(runs_dir, SOURCE)
    return [plan_run(p, _name(p), SOURCE, log.scalars, overrides, before,
                     hparams=_hparams_yaml(p), epoch_base=log.epoch_base)
            for p, log in zip(paths, logs, strict=True)]


def _name(path: Path) -> str:
    """Lightning's version folder (lightning_logs/version_0/metrics.csv), else the stem."""
    return path.resolve().parent.name if path.name == "metrics.csv" else path.stem or "csv"


def read_csv_log(path: Path, overrides: Mapping[str, str]) -> CsvLog:
    """The series of a CSV log, by its kind (see the module's docstring)."""
    header, lines = _read(path)
    has = set(header)
    if {"epoch", "step"} <= has:
        return CsvLog("lightning", _series(path, header, lines, "step", "epoch"), 0)
    if header[0] == "epoch":
        return CsvLog("keras", _series(path, header, lines, "epoch", "epoch"), 0)
    named = [c for c in header if c in overrides or column_for(c)[0] in KNOWN_COLUMNS]
    if not named:
        raise ImportInputError(
            f"{path} has the columns {', '.join(header)}: none of the kinds of CSV log "
            f"accepted, which are {'; '.join(KINDS)}. Say which column is which with "
            f"--map COLUMN=val_loss (or train_loss, ...)")
    axis = "step" if "step" in has else "epoch" if "epoch" in has else None
    scalars = _series(path, header, lines, axis, "epoch" if "epoch" in has else None)
    firsts = scalars.get("epoch", ())
    return CsvLog("csv", scalars, 0 if firsts and firsts[0].value == 0 else 1)


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            text = f.read(MAX_BYTES + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise ImportInputError(f"{path} cannot be read as a CSV log: {e}") from None
    if len(text) > MAX_BYTES:
        raise ImportInputError(f"{path} is over {MAX_BYTES // 2 ** 20} MiB: not read")
    rows = [r for r in csv.reader(text.splitlines()) if r]
    if not rows or len(rows[0]) < 2 or any(not c.strip() for c in rows[0]):
        found = f"the header {rows[0]!r}" if rows else "no lines"
        raise ImportInputError(f"{path}: found {found}; a CSV log needs a header of two or "
                               f"more named columns, being one of: {'; '.join(KINDS)}")
    return [c.strip() for c in rows[0]], rows[1:]


def _series(path: Path, header: list[str], lines: list[list[str]], axis: str | None,
            epoch: str | None) -> dict[str, tuple[Scalar, ...]]:
    """Each column's points at its line's `axis` value (the line number without one); the
    `epoch` column is kept as the series of the epoch tag."""
    out: dict[str, list[Scalar]] = {c: [] for c in header if c != axis or c == epoch}
    for n, line in enumerate(lines, start=2):
        cells = dict(zip(header, line, strict=False))  # short lines: empty cells
        step = n - 2 if axis is None else _number(path, n, axis, cells.get(axis, ""))
        if step is None:
            continue  # a line without a step (Lightning writes none)
        if not float(step).is_integer():
            raise ImportInputError(f"{path} line {n}: {axis} must be a whole number, got "
                                   f"{step!r}")
        for col in out:
            value = _number(path, n, col, cells.get(col, ""))
            if value is not None:  # an empty cell: not logged on this line
                out[col].append(Scalar(int(step), None, value))
    return {c: tuple(ps) for c, ps in out.items() if ps}


def _number(path: Path, n: int, col: str, cell: str) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    try:
        return float(cell)  # "nan" and "inf" too: a logged NaN is a divergence, kept
    except ValueError:
        raise ImportInputError(f"{path} line {n}, column {col!r}: {cell!r} is not a number; "
                               "a CSV log holds numbers (or empty cells)") from None


def _hparams_yaml(path: Path) -> dict[str, Any]:
    """Lightning's hparams.yaml beside metrics.csv, when it holds a mapping of plain values."""
    import yaml

    try:
        data = yaml.safe_load((path.parent / "hparams.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items()
            if isinstance(v, (str, bool, int)) or (isinstance(v, float) and math.isfinite(v))}
