"""Import TensorBoard logs into run folders, so that runs logged with TensorBoard's
SummaryWriter (PyTorch, Lightning, Keras) get Curvewatch's curves, flags and comparisons.

A TensorBoard run is a directory of `events.out.tfevents.*` files. Two layouts put one run's
splits in child directories, and are read as one run with the child's name in front of each
tag: Keras (`run/train`, `run/validation`) and PyTorch's `add_scalars` (`run/loss_train`,
`run/loss_val`). Tags are mapped to the format's columns by their words (`loss/train`,
`train_loss`, `Loss/val`, `validation/epoch_loss`, `lr-Adam` ...); the rest stay as columns
of their own. Rows are validation rounds: see `to_epochs`.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .reader import list_runs
from .writer import Run

EVENTS_GLOB = "events.out.tfevents.*"
SPLITS = {"train": ("train", "training"),
          "val": ("val", "valid", "validation", "eval", "dev")}
METRICS = {"loss": ("loss",), "acc": ("acc", "accuracy")}
_SPLIT_WORDS = {w for ws in SPLITS.values() for w in ws}
#: Words a child directory may consist of (one split word among them at least) to count as a
#: split of its parent's run: `train`, `validation`, `loss_val`; not `train_lr0.1`.
_CHILD_WORDS = _SPLIT_WORDS | {"loss", "losses", "acc", "accuracy", "metric", "metrics",
                               "scalars"}
#: The format's columns that tags are recognised for (besides `epoch`, below).
KNOWN_COLUMNS = ("train_loss", "val_loss", "train_acc", "val_acc", "lr", "grad_norm")
#: Columns that come from the events themselves (and log_epoch's own `layers` keyword): no
#: tag fills them. `epoch` can be filled, by a tag that counts epochs (Lightning's).
RESERVED = ("step", "time", "layers")
#: Columns whose value for a row is the last of its round's points, not their mean.
_LAST = ("lr",)


class TensorBoardImportError(ValueError):
    """Bad input to the import: names the path or value and what is accepted."""


@dataclass(frozen=True)
class Scalar:
    step: int
    wall_time: float
    value: float


@dataclass(frozen=True)
class ImportPlan:
    """What importing one TensorBoard run writes: its name, which tag fills which column, the
    rows, and the run already imported from the same directory (then nothing is written)."""
    root: Path
    name: str
    mapping: Mapping[str, str]
    rows: tuple[Mapping[str, Any], ...]
    imported_as: str | None = None


def plan_import(logdir: str | Path, runs_dir: str | Path,
                overrides: Mapping[str, str] | None = None) -> list[ImportPlan]:
    """Read every TensorBoard run under `logdir` and convert it, writing nothing; raises
    TensorBoardImportError for a path without event files or an override naming no tag."""
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise TensorBoardImportError(f"{logdir} is not a directory: give the directory "
                                     "TensorBoard reads (its --logdir) or one run's folder")
    found = find_runs(logdir)
    if not found:
        raise TensorBoardImportError(f"no TensorBoard event files ({EVENTS_GLOB}) under "
                                     f"{logdir}")
    before = {r.config.get("logdir"): r.id for r in list_runs(runs_dir)
              if r.config.get("source") == "tensorboard" and r.state == "completed"}
    plans, seen = [], set()
    for root, event_dirs in found:
        scalars = read_scalars(root, event_dirs)
        seen |= set(scalars)
        mapping = map_tags(scalars, overrides)
        plans.append(ImportPlan(root, run_name(logdir, root), mapping,
                                tuple(to_epochs(scalars, mapping)),
                                before.get(str(root.resolve()))))
    unknown = sorted(set(overrides or {}) - seen)
    if unknown:
        raise TensorBoardImportError(f"--map names {', '.join(map(repr, unknown))}, which no "
                                     f"run has; its tags are: {', '.join(sorted(seen))}")
    return plans


def run_name(logdir: Path, root: Path) -> str:
    """TensorBoard's own name for the run: its path under the log directory."""
    rel = root.relative_to(logdir)
    if rel == Path("."):
        return logdir.resolve().name or "tensorboard"
    return rel.as_posix()


def write_run(runs_dir: str | Path, plan: ImportPlan, tags: Iterable[str] = ()) -> str:
    """Write one planned import as a completed run; returns its id."""
    config = {"source": "tensorboard", "logdir": str(plan.root.resolve()),
              "tag_map": dict(plan.mapping)}
    with Run.create(runs_dir, name=plan.name, config=config, epochs=len(plan.rows),
                    tags=["tensorboard", *tags], heartbeat_seconds=0) as run:
        for row in plan.rows:
            run.log_epoch(**row)
    return run.id


def parse_map(pairs: Iterable[str]) -> dict[str, str]:
    """`--map TAG=COLUMN` pairs (an empty COLUMN leaves the tag out) as tag -> column."""
    out = {}
    for pair in pairs:
        tag, sep, col = pair.rpartition("=")
        col = col.strip()
        if not sep or not tag:
            raise TensorBoardImportError(f"--map must be TAG=COLUMN (e.g. Loss/valid=val_loss,"
                                         f" or TAG= to leave it out), got {pair!r}")
        if col and (not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", col) or col in RESERVED):
            raise TensorBoardImportError(
                f"--map column must be a name of letters, digits and _ other than "
                f"{', '.join(RESERVED)} (e.g. {', '.join(KNOWN_COLUMNS)}, epoch), got {col!r}")
        out[tag] = col
    return out


def words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def find_runs(logdir: Path) -> list[tuple[Path, list[Path]]]:
    """(run root, its event directories) for every TensorBoard run under `logdir`."""
    event_dirs = sorted({p.parent for p in logdir.rglob(EVENTS_GLOB) if p.is_file()})
    runs: dict[Path, list[Path]] = {}
    for d in event_dirs:
        ws = set(words(d.name))
        is_child = d != logdir and ws <= _CHILD_WORDS and bool(ws & _SPLIT_WORDS)
        runs.setdefault(d.parent if is_child else d, []).append(d)
    return sorted(runs.items())


def read_scalars(root: Path, event_dirs: Iterable[Path]) -> dict[str, tuple[Scalar, ...]]:
    """Every scalar series of a run, by tag (a child directory's name in front), in step
    order; for a step logged twice the later point wins, as in TensorBoard."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    out: dict[str, tuple[Scalar, ...]] = {}
    for d in event_dirs:
        acc = ea.EventAccumulator(str(d), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
        acc.Reload()
        prefix = "" if d == root else f"{d.name}/"
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            out[prefix + tag] = _ordered(Scalar(e.step, e.wall_time, _as_logged(e.value))
                                         for e in acc.Scalars(tag))
        for tag in tags.get("tensors", []):  # TF2's tf.summary.scalar writes 0-d tensors
            points = []
            for e in acc.Tensors(tag):
                arr = tensor_util.make_ndarray(e.tensor_proto)
                if arr.size == 1 and arr.dtype.kind in "fiu":
                    value = arr.reshape(())
                    points.append(Scalar(e.step, e.wall_time, _as_logged(value)
                                         if arr.dtype == np.float32 else float(value)))
            if points:
                out[prefix + tag] = _ordered(points)
    return out


def _as_logged(value: float) -> float:
    """A float32 from an event file as the shortest decimal that is that float32 (0.001, not
    0.0010000000474974513): the value the user logged, to the precision TensorBoard kept."""
    return float(str(np.float32(value)))


def _ordered(points: Iterable[Scalar]) -> tuple[Scalar, ...]:
    by_step: dict[int, Scalar] = {}
    for p in points:
        by_step[p.step] = p
    return tuple(by_step[s] for s in sorted(by_step))


def column_for(tag: str) -> tuple[str, int]:
    """The column a tag fills and its priority among tags that fill the same one (higher
    wins: a Lightning `..._epoch` tag over its `..._step` twin). Unrecognised tags become a
    column of their own, named by their words."""
    ws = words(tag)
    plain = set(ws) - {"epoch", "step", "avg", "mean"}
    priority = 2 if "epoch" in ws else 0 if "step" in ws else 1
    if ws == ["epoch"]:
        return "epoch", 1
    if plain & {"lr"} or {"learning", "rate"} <= plain:
        rest = plain - {"lr", "learning", "rate", "train"}
        if len(rest) <= 1:  # lr-Adam, lr/group0: the optimizer's name or group at most
            return "lr", priority
    if {"grad", "norm"} <= plain or {"gradient", "norm"} <= plain:
        if plain <= {"grad", "gradient", "norm", "total", "global", "train"}:
            return "grad_norm", priority
    split = [s for s, names in SPLITS.items() if plain & set(names)]
    metric = [m for m, names in METRICS.items() if plain & set(names)]
    known = {w for names in (*SPLITS.values(), *METRICS.values()) for w in names}
    if len(metric) == 1 and len(split) <= 1 and plain <= known:
        return f"{split[0] if split else 'train'}_{metric[0]}", priority
    return own_column(tag), 1


def own_column(tag: str) -> str:
    """The column of a tag that fills none of the known ones: its words joined by _, with _tb
    after a name that is taken (val/loss/reg -> val_loss_reg, time -> time_tb)."""
    name = "_".join(words(tag)) or "value"
    return f"{name}_tb" if name in (*RESERVED, "epoch", *KNOWN_COLUMNS) else name


def map_tags(tags: Iterable[str], overrides: Mapping[str, str] | None = None
             ) -> dict[str, str]:
    """Tag -> column for every tag but those `overrides` drop (an empty column): `overrides`
    first, then `column_for`, one tag per column (the highest priority, then the shortest).
    A tag that loses its column to another keeps a column of its own: nothing is lost."""
    overrides = dict(overrides or {})
    chosen: dict[str, tuple[tuple[int, int, str], str]] = {}
    losers = []
    for tag in tags:
        if tag in overrides and not overrides[tag]:
            continue
        col, prio = (overrides[tag], 9) if tag in overrides else column_for(tag)
        rank = (prio, -len(tag), tag)
        if col in chosen and rank < chosen[col][0]:
            losers.append(tag)
            continue
        if col in chosen:
            losers.append(chosen[col][1])
        chosen[col] = (rank, tag)
    mapping = {tag: col for col, (_, tag) in chosen.items()}
    for tag in losers:
        col = own_column(tag)
        while col in mapping.values():
            col += "_tb"
        mapping[tag] = col
    return dict(sorted(mapping.items(), key=lambda kv: kv[1]))


def to_epochs(scalars: Mapping[str, tuple[Scalar, ...]], mapping: Mapping[str, str]
              ) -> list[dict[str, float | int]]:
    """Rows of the run's history. A row is a validation round: its step is the step of a
    val_loss point (with no val_loss, of each point of the longest series). A tag mapped to
    `epoch` (Lightning's) groups steps by epoch instead. Every other point counts towards the
    first round at or after its step; a row holds the mean of its points (the last, for lr),
    and grad_norm_max their max. Points after the last round are an unfinished epoch: left
    out."""
    series = {col: scalars[tag] for tag, col in mapping.items() if scalars.get(tag)}
    if not series:
        return []
    epoch_of = _epoch_lookup(series.pop("epoch", ()))
    key_of: Callable[[int], int | None]
    if epoch_of is not None:
        keys = sorted({epoch_of(p.step) for s in series.values() for p in s})
        key_of = epoch_of
    else:
        grid = series.get("val_loss") or max(series.values(), key=len)
        keys = [p.step for p in grid]
        key_of = _round_lookup(keys)
    rows: dict[int, dict[str, list[Scalar]]] = {k: {} for k in keys}
    for col, points in series.items():
        for p in points:
            k = key_of(p.step)
            if k is not None and k in rows:
                rows[k].setdefault(col, []).append(p)
    filled = [k for k in keys if rows[k]]
    if any("val_loss" in rows[k] for k in filled):  # an epoch not validated yet is unfinished
        while "val_loss" not in rows[filled[-1]]:
            filled.pop()
    out = []
    for i, k in enumerate(filled, start=1):
        cells = rows[k]
        in_round = [p for ps in cells.values() for p in ps]
        rec: dict[str, float | int] = {"epoch": i, "step": max(p.step for p in in_round),
                                       "time": max(p.wall_time for p in in_round)}
        for col, ps in cells.items():
            values = [p.value for p in ps]
            rec[col] = values[-1] if col in _LAST else _mean(values)
            if col == "grad_norm":
                rec["grad_norm_max"] = max(values, key=lambda v: -math.inf if v != v else v)
        out.append(rec)
    return out


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _round_lookup(keys: list[int]) -> Callable[[int], int | None]:
    def key_of(step: int) -> int | None:
        i = bisect.bisect_left(keys, step)
        return keys[i] if i < len(keys) else None
    return key_of


def _epoch_lookup(points: tuple[Scalar, ...]) -> Callable[[int], int] | None:
    """step -> epoch from a logged `epoch` series (the latest one logged at or before the
    step), or None when there is none."""
    if not points:
        return None
    steps = [p.step for p in points]
    epochs = [int(p.value) for p in points]

    def epoch_of(step: int) -> int:
        i = bisect.bisect_right(steps, step) - 1
        return epochs[max(i, 0)]
    return epoch_of
