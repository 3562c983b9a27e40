"""Imported logs (TensorBoard scalars, CSV logs) as the run format's rows: which column a tag
fills, and which row each logged point belongs to. Pure; the importers read, this assembles.

A row is an epoch when the log counts epochs (an `epoch` tag or column, Lightning's and Keras'
counting from 0), else a validation round (the steps at which val_loss was logged). Every
point is placed in a row or kept in steps.jsonl, and each point that is not in a row is said
in a note: nothing is dropped silently, and no gap becomes NaN (a metric a row has no point
of is absent from it)."""
from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

SPLITS = {"train": ("train", "training"),
          "val": ("val", "valid", "validation", "eval", "dev")}
METRICS = {"loss": ("loss",), "acc": ("acc", "accuracy")}
_SPLIT_WORDS = {w for ws in SPLITS.values() for w in ws}
#: The format's columns that tags are recognised for (besides `epoch`, below).
KNOWN_COLUMNS = ("train_loss", "val_loss", "train_acc", "val_acc", "lr", "grad_norm")
#: Columns that come from the log itself (and log_epoch's own `layers` keyword): no tag
#: fills them. `epoch` can be filled, by a tag that counts epochs (Lightning's).
RESERVED = ("step", "time", "layers")
#: In steps.jsonl the training loss is `loss`, as the trainer writes it.
_STEP_NAMES = {"train_loss": "loss"}


@dataclass(frozen=True)
class Scalar:
    """One logged point; `wall_time` is None where the log keeps none (a CSV)."""
    step: int
    wall_time: float | None
    value: float


@dataclass(frozen=True)
class Assembly:
    """A log as rows (for log_epoch), per-step records (for log_step) and one note per
    column with points that are in no row or not a row's value, saying why."""
    rows: tuple[dict[str, float | int], ...]
    steps: tuple[dict[str, float | int], ...]
    notes: tuple[str, ...]


def words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def column_for(tag: str) -> tuple[str, int]:
    """The column a tag fills and its priority among tags that fill the same one (higher
    wins: a Lightning `..._epoch` tag over its `..._step` twin). An `add_scalars` tag
    (`Loss/train`, `Training vs. Validation Loss/Validation`) takes its split from its last
    part. Unrecognised tags become a column of their own, named by their words."""
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
    last = set(words(tag.rpartition("/")[2]))
    if "/" in tag and last and last <= _SPLIT_WORDS and "vs" in plain:
        plain = (plain - _SPLIT_WORDS - {"vs"}) | last  # "Training vs. Validation Loss/..."
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


def keeps_last(column: str) -> bool:
    """Whether a row holds the last of its points of `column` rather than their mean: a
    state (lr, an epoch counter such as transformers' fractional one) or an evaluation
    (val_*: with two validations in an epoch, the epoch's last is the row's)."""
    ws = column.split("_")
    return column == "lr" or ws[0] in SPLITS["val"] or "epoch" in ws


def assemble(scalars: Mapping[str, Sequence[Scalar]], mapping: Mapping[str, str],
             epoch_base: int = 0) -> Assembly:
    """The rows, step records and notes of one run's series (tag -> points in step order,
    a step logged twice kept twice) under `mapping` (tag -> column). A tag mapped to `epoch`
    groups the points by epoch (row epoch = logged epoch + 1 - `epoch_base`); without one a
    row is a validation round, which the points up to its step count towards."""
    series = {col: tuple(scalars[tag]) for tag, col in mapping.items() if scalars.get(tag)}
    tag_of = {col: tag for tag, col in mapping.items()}
    epoch_points = tuple(p for p in series.pop("epoch", ()) if math.isfinite(p.value))
    if not series:
        return Assembly((), (), ())
    key_of, keys, shift, elsewhere = _row_keys(series, epoch_points, epoch_base)
    placed, unplaced = _place(series, key_of, elsewhere)
    validated = [k for k in keys if k in placed.get("val_loss", {})]
    last = validated[-1] if validated else None
    if last is not None:  # a row after the last validation is an epoch not finished yet
        for col, by_key in placed.items():
            for k in [k for k in by_key if k > last]:
                unplaced[col].extend(by_key.pop(k))
    return Assembly(tuple(_rows(placed, shift)),
                    tuple(_step_records(series, placed, unplaced)),
                    tuple(_notes(series, placed, unplaced, elsewhere, tag_of, last, shift)))


RowKey = Callable[[int], "int | None"]


def _row_keys(series: Mapping[str, tuple[Scalar, ...]], epoch_points: tuple[Scalar, ...],
              epoch_base: int) -> tuple[RowKey, list[int], int | None, set[str]]:
    """(step -> row key, the keys in order, key + shift = the row's epoch (None: rows are
    rounds, numbered from 1), the columns counted on another step axis than the rows)."""
    if epoch_points:
        epoch_of = epoch_lookup(epoch_points)
        keys = sorted({epoch_of(p.step) for s in series.values() for p in s})
        return epoch_of, keys, 1 - epoch_base, set()
    grid = series.get("val_loss") or max(series.values(), key=len)
    keys = sorted({p.step for p in grid})
    # a series most of whose points lie after the last round counts on another axis (a
    # global step beside a val loss logged at the epoch number; Keras' batch_* tags)
    elsewhere = {col for col, s in series.items()
                 if sum(p.step > keys[-1] for p in s) * 2 > len(s)}

    def key_of(step: int) -> int | None:
        i = bisect.bisect_left(keys, step)
        return keys[i] if i < len(keys) else None
    return key_of, keys, None, elsewhere


def epoch_lookup(points: Sequence[Scalar]) -> Callable[[int], int]:
    """step -> epoch from a logged epoch series. A step logged with an epoch has it; other
    steps (Lightning's LearningRateMonitor logs at the first step of an epoch, with no epoch)
    go by the steps per epoch that every logged (step, epoch) agrees with, or, when none
    does, to the epoch of the next logged step."""
    tagged = {p.step: int(p.value) for p in points if math.isfinite(p.value)}
    if not tagged:
        return lambda step: 0
    steps = sorted(tagged)
    lo = max((s // (e + 1) + 1 for s, e in tagged.items() if e >= 0), default=1)
    his = [s // e for s, e in tagged.items() if e > 0]
    per_epoch = lo if not his or lo <= min(his) else None

    def epoch_of(step: int) -> int:
        if step in tagged:
            return tagged[step]
        if per_epoch is not None:
            return step // per_epoch
        i = bisect.bisect_left(steps, step)
        return tagged[steps[i]] if i < len(steps) else tagged[steps[-1]] + 1
    return epoch_of


Placed = dict[str, dict[int, list[Scalar]]]


def _place(series: Mapping[str, tuple[Scalar, ...]], key_of: RowKey, elsewhere: set[str]
           ) -> tuple[Placed, defaultdict[str, list[Scalar]]]:
    """Each point into its row; a point at a step its series logged before (transformers'
    final evaluate() after load_best_model_at_end) and the points of a series on another
    axis go to no row."""
    placed: Placed = {}
    unplaced: defaultdict[str, list[Scalar]] = defaultdict(list)
    for col, points in series.items():
        seen: set[int] = set()
        for p in points:
            k = None if col in elsewhere or p.step in seen else key_of(p.step)
            seen.add(p.step)
            if k is None:
                unplaced[col].append(p)
            else:
                placed.setdefault(col, {}).setdefault(k, []).append(p)
    return placed, unplaced


def _rows(placed: Placed, shift: int | None) -> list[dict[str, float | int]]:
    cells: dict[int, dict[str, list[Scalar]]] = defaultdict(dict)
    for col, by_key in placed.items():
        for k, ps in by_key.items():
            cells[k][col] = ps
    out: list[dict[str, float | int]] = []
    for k in sorted(cells):
        in_row = [p for ps in cells[k].values() for p in ps]
        rec: dict[str, float | int] = {"epoch": len(out) + 1 if shift is None else k + shift,
                                       "step": max(p.step for p in in_row)}
        times = [p.wall_time for p in in_row if p.wall_time is not None]
        if times:
            rec["time"] = max(times)
        for col, ps in cells[k].items():
            values = [p.value for p in ps]
            rec[col] = values[-1] if keeps_last(col) else math.fsum(values) / len(values)
            if col == "grad_norm":
                rec["grad_norm_max"] = max(values, key=lambda v: -math.inf if v != v else v)
        out.append(rec)
    return out


def _in_steps(col: str, placed: Placed, unplaced: Mapping[str, list[Scalar]]) -> bool:
    """A series is kept whole in steps.jsonl when its rows do not hold each of its points
    as a value: several points in a row (a mean, or the last), or points in no row."""
    return bool(unplaced.get(col)) or any(len(ps) > 1 for ps in placed.get(col, {}).values())


def _step_records(series: Mapping[str, tuple[Scalar, ...]], placed: Placed,
                  unplaced: Mapping[str, list[Scalar]]) -> list[dict[str, float | int]]:
    """One record per step, in step order. A series that logged a step twice keeps the later
    point as `<name>_again` (readers keep one line per step, as for a resumed run)."""
    by_step: dict[int, dict[str, float | int]] = {}
    for col, points in series.items():
        if not _in_steps(col, placed, unplaced):
            continue
        name = _STEP_NAMES.get(col, col)
        for p in points:
            rec = by_step.setdefault(p.step, {"step": p.step})
            key, n = name, 1
            while key in rec:
                key, n = f"{name}_again{n if n > 1 else ''}", n + 1
            rec[key] = p.value
    return [by_step[s] for s in sorted(by_step)]


def _notes(series: Mapping[str, tuple[Scalar, ...]], placed: Placed,
           unplaced: Mapping[str, list[Scalar]], elsewhere: set[str],
           tag_of: Mapping[str, str], last: int | None, shift: int | None) -> list[str]:
    out = []
    for col, points in series.items():
        tag, n = tag_of[col], len(points)
        name = tag if tag == col else f"{col} <- {tag}"
        left = unplaced.get(col, [])
        if col in elsewhere:
            out.append(f"{name}: {n} points counted on another step axis (most lie after "
                       f"the last validation round), in no row; kept in steps.jsonl")
            continue
        again = _repeats(points)
        after = len(left) - len(again)
        if again:
            out.append(f"{name}: {len(again)} of {n} points logged again at a step logged "
                       f"before (step {again[0].step}); the row keeps the first, steps.jsonl "
                       f"the later as {_STEP_NAMES.get(col, col)}_again")
        if after:
            where = ("the last validation round" if shift is None or last is None
                     else f"epoch {last + shift}, the last validated")
            out.append(f"{name}: {after} of {n} points after {where}, in no row (an epoch "
                       "not finished or validated yet, or a test after training); kept in "
                       "steps.jsonl")
        most = max((len(ps) for ps in placed.get(col, {}).values()), default=0)
        if most > 1 and keeps_last(col):
            out.append(f"{name}: up to {most} points in a row, which keeps the last; all are "
                       "in steps.jsonl")
    return out


def _repeats(points: Iterable[Scalar]) -> list[Scalar]:
    """The points at a step their series logged before."""
    seen: set[int] = set()
    out: list[Scalar] = []
    for p in points:
        if p.step in seen:
            out.append(p)
        seen.add(p.step)
    return out
