"""Import TensorBoard logs into run folders, so that runs logged with TensorBoard's
SummaryWriter (PyTorch, tensorboardX, Lightning, Keras, transformers) get Curvewatch's curves,
flags and comparisons.

A TensorBoard run is a directory of `events.out.tfevents.*` files. Some writers put parts of
one run in child directories, read here as that run:
- Keras' splits (`run/train`, `run/validation`): the child's name goes in front of each tag;
- `add_scalars(main, {key: value})`: torch writes `run/<main>_<key>`, tensorboardX
  `run/<main>/<key>`, each holding the one tag `main`; it becomes the tag `main/key`;
- `add_hparams`: a child holding the hyperparameters (and their metrics) fills the run's
  config instead of becoming a run of its own; Lightning's, in the run's own files, and
  transformers' TrainingArguments (the JSON text its TensorBoardCallback writes as `args`)
  too.
Tags are mapped to columns and points placed in rows by `tracking.import_rows`.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .import_rows import Scalar, words
from .import_runs import ImportInputError, ImportPlan, check_overrides, imported_before, plan_run

EVENTS_GLOB = "events.out.tfevents.*"
#: The tag of the TrainingArguments text transformers' TensorBoardCallback writes.
HF_ARGS = "args/text_summary"
SOURCE = "tensorboard"
_SPLIT_WORDS = {"train", "training", "val", "valid", "validation", "eval", "dev"}
#: Words a child directory may consist of (one split word among them at least) to count as a
#: split of its parent's run: `train`, `validation`, `loss_val`; not `train_lr0.1`.
_CHILD_WORDS = _SPLIT_WORDS | {"loss", "losses", "acc", "accuracy", "metric", "metrics",
                               "scalars"}


@dataclass(frozen=True)
class EventDir:
    """One directory's scalars (by tag, in step order, a step logged twice kept twice) and
    the hyperparameters written there, with the final values of their metrics."""
    path: Path
    scalars: Mapping[str, tuple[Scalar, ...]]
    hparams: Mapping[str, Any] = field(default_factory=dict)
    hparam_metrics: Mapping[str, float] = field(default_factory=dict)


def plan_import(logdir: str | Path, runs_dir: str | Path,
                overrides: Mapping[str, str] | None = None) -> list[ImportPlan]:
    """Read every TensorBoard run under `logdir` and convert it, writing nothing; raises
    ImportInputError for a path without event files or an override naming no tag."""
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise ImportInputError(f"{logdir} is not a directory: give the directory "
                               "TensorBoard reads (its --logdir) or one run's folder")
    dirs = sorted({p.parent for p in logdir.rglob(EVENTS_GLOB) if p.is_file()})
    if not dirs:
        raise ImportInputError(f"no TensorBoard event files ({EVENTS_GLOB}) under {logdir}")
    runs = group_runs(logdir, [read_event_dir(d) for d in dirs])
    check_overrides(overrides or {}, (t for r in runs for t in r.scalars))
    before = imported_before(runs_dir, SOURCE)
    return [plan_run(r.path, run_name(logdir, r.path), SOURCE, r.scalars, overrides, before,
                     hparams={**r.hparams, **r.hparam_metrics})
            for r in runs]


def run_name(logdir: Path, root: Path) -> str:
    """TensorBoard's own name for the run: its path under the log directory."""
    rel = root.relative_to(logdir)
    if rel == Path("."):
        return logdir.resolve().name or "tensorboard"
    return rel.as_posix()


def group_runs(logdir: Path, dirs: list[EventDir]) -> list[EventDir]:
    """The runs the event directories make: each child part of a run merged into it."""
    scalars: dict[Path, dict[str, list[Scalar]]] = defaultdict(dict)
    hparams: dict[Path, dict[str, Any]] = defaultdict(dict)
    metrics: dict[Path, dict[str, float]] = defaultdict(dict)
    for d in dirs:
        root, renamed = _owner(logdir, d)
        for tag, points in d.scalars.items():
            scalars[root].setdefault(renamed.get(tag, tag), []).extend(points)
        hparams[root].update(d.hparams)
        metrics[root].update(d.hparam_metrics)
    return [EventDir(root, {t: _ordered(ps) for t, ps in scalars[root].items()},
                     hparams[root], metrics[root]) for root in sorted(scalars)]


def _owner(logdir: Path, d: EventDir) -> tuple[Path, dict[str, str]]:
    """The run directory `d` is part of, and its tags' names in that run."""
    parent = d.path.parent
    inside = d.path != logdir
    if inside and not d.scalars and (d.hparams or d.hparam_metrics):
        return parent, {}  # add_hparams' child
    if inside and len(d.scalars) == 1:
        (tag,) = d.scalars
        key, parts = d.path.name, tag.split("/")
        if key.startswith(tag.replace("/", "_") + "_") and len(key) > len(tag) + 1:
            return parent, {tag: f"{tag}/{key[len(tag) + 1:]}"}  # torch's add_scalars
        rel = d.path.relative_to(logdir).parts
        if len(rel) > len(parts) and list(rel[-len(parts) - 1:-1]) == parts:
            return d.path.parents[len(parts)], {tag: f"{tag}/{key}"}  # tensorboardX's
    ws = set(words(d.path.name))
    if inside and ws <= _CHILD_WORDS and ws & _SPLIT_WORDS:
        return parent, {t: f"{d.path.name}/{t}" for t in d.scalars}
    return d.path, {}


def read_event_dir(d: Path) -> EventDir:
    """The scalars and hyperparameters of one directory's event files."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(d), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    hparams, metric_tags = _hparams(acc)
    out: dict[str, tuple[Scalar, ...]] = {}
    tags = acc.Tags()
    for tag in tags.get("scalars", []):
        out[tag] = _ordered(Scalar(e.step, e.wall_time, _as_logged(e.value))
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
            out[tag] = _ordered(points)
    metrics = {t: out.pop(t)[-1].value for t in metric_tags if t in out}
    if out and HF_ARGS in tags.get("tensors", []):  # a run's, not an add_hparams child's
        hparams = {**_hf_args(acc), **hparams}
    return EventDir(d, out, hparams, metrics)


def _hparams(acc: Any) -> tuple[dict[str, Any], set[str]]:
    """The hyperparameters in the hparams plugin's summaries (add_hparams, Lightning's
    log_hyperparams) and the tags of their metrics."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    try:
        content = acc.PluginTagToContent("hparams")
    except KeyError:
        return {}, set()
    hparams: dict[str, Any] = {}
    metric_tags: set[str] = set()
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("session_start_info"):
            for name, v in data.session_start_info.hparams.items():
                kind = v.WhichOneof("kind")
                value = getattr(v, kind) if kind else None
                if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
                    value = int(value)
                hparams[name] = value
        if data.HasField("experiment"):
            metric_tags |= {m.name.tag for m in data.experiment.metric_infos}
    return hparams, metric_tags


def _hf_args(acc: Any) -> dict[str, Any]:
    """transformers' TrainingArguments, logged as JSON text: its plain values."""
    try:
        args = json.loads(acc.Tensors(HF_ARGS)[-1].tensor_proto.string_val[0])
    except (IndexError, ValueError):
        return {}
    if not isinstance(args, dict):
        return {}
    return {str(k): v for k, v in args.items()
            if isinstance(v, (str, bool, int)) or (isinstance(v, float) and math.isfinite(v))}


def _as_logged(value: float) -> float:
    """A float32 from an event file as the shortest decimal that is that float32 (0.001, not
    0.0010000000474974513): the value the user logged, to the precision TensorBoard kept."""
    return float(str(np.float32(value)))


def _ordered(points: Any) -> tuple[Scalar, ...]:
    """In step order; points at one step stay in the order they were logged."""
    return tuple(sorted(points, key=lambda p: p.step))
