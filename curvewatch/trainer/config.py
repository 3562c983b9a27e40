"""Training configuration: every option with its default, its help text and its validation.

The CLI, config files (TOML, JSON, YAML) and the dashboard's Launch form all go through
`resolve_config`, so they accept and reject exactly the same values with the same messages.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from curvewatch.diagnosis import STOP_KINDS

from .errors import ConfigError, did_you_mean, shown
from .validation import parse_validation

DATASETS = ("digits", "digits-images", "breast_cancer", "wine", "spirals", "moons", "blobs")
MODELS = ("mlp", "cnn", "logreg")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")
DEVICES = ("auto", "cpu", "cuda")
#: the kinds --early-stop accepts: diagnosis.STOP_KINDS, the one definition (should_stop's)
EARLY_STOP_KINDS = STOP_KINDS
MAX_EPOCHS = 1_000_000
MAX_EPOCH_PACE = 60.0  # seconds: min_epoch_seconds paces demos; longer is a mistake
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class TrainConfig:
    """The full, resolved configuration of one training run (written into run.json)."""

    dataset: str = field(default="digits", metadata={"help": (
        f"data: one of {', '.join(DATASETS)}; csv:PATH (with --target); or a factory "
        "module:function returning (X, y)")})
    target: str | None = field(default=None, metadata={"help": "target column of a csv: dataset"})
    label_noise: float = field(default=0.0, metadata={"help": (
        "fraction of training labels replaced by a random other class, in [0, 1)")})
    train_size: int | None = field(default=None, metadata={"help": (
        "use only this many training samples (subsample; makes overfitting easy to show)")})
    val_fraction: float = field(default=0.2, metadata={"help": (
        "fraction of the data held out for validation, in (0, 1)")})
    test_fraction: float = field(default=0.0, metadata={"help": (
        "fraction held out as a test split never used for training or selection, in [0, 1)")})
    validation: str = field(default="holdout", metadata={"help": (
        "validation scheme: holdout (hold out --val-fraction), holdout:F, kfold:K (K-fold "
        "cross-validation, one run per fold) or bootstrap:B (B resamples validated on their "
        "out-of-bag samples); kfold and bootstrap start a group of runs")})
    fold: int | None = field(default=None, metadata={"help": (
        "train only this fold (kfold) or resample (bootstrap), 1-based, as a single run; "
        "set by the group launcher for its members")})
    model: str = field(default="mlp", metadata={"help": (
        f"model: one of {', '.join(MODELS)}, or a factory module:function(input_shape, "
        "n_outputs) returning a torch.nn.Module")})
    hidden: tuple[int, ...] = field(default=(128, 64), metadata={"help": (
        "hidden layer widths, comma-separated (mlp; the first is the cnn's dense layer)")})
    activation: str = field(default="relu", metadata={"help": ", ".join(ACTIVATIONS)})
    dropout: float = field(default=0.0, metadata={"help": "dropout probability, in [0, 1)"})
    epochs: int = field(default=30, metadata={"help": f"epochs to train, 1 to {MAX_EPOCHS}"})
    batch_size: int = field(default=64, metadata={"help": "samples per step, >= 1"})
    optimizer: str = field(default="adam", metadata={"help": ", ".join(OPTIMIZERS)})
    lr: float = field(default=1e-3, metadata={"help": "learning rate, > 0 and <= 10"})
    momentum: float = field(default=0.9, metadata={"help": (
        "momentum for sgd and rmsprop, in [0, 1)")})
    weight_decay: float = field(default=0.0, metadata={"help": (
        "L2 penalty (the optimizer's weight_decay), >= 0")})
    l1: float = field(default=0.0, metadata={"help": (
        "L1 penalty on weights added to the training objective, >= 0")})
    schedule: str = field(default="constant", metadata={"help": (
        f"learning-rate schedule: {', '.join(SCHEDULES)}")})
    warmup_epochs: int = field(default=0, metadata={"help": (
        "epochs of linear learning-rate warm-up, >= 0 and < epochs")})
    clip_grad_norm: float = field(default=0.0, metadata={"help": (
        "clip the global gradient norm to this value; 0 turns clipping off")})
    seed: int = field(default=0, metadata={"help": "random seed for splits, init and shuffling"})
    device: str = field(default="auto", metadata={"help": (
        "auto (cuda when available), cpu or cuda")})
    early_stop: tuple[str, ...] = field(default=(), metadata={"help": (
        "stop when diagnosis finds any of these, comma-separated: "
        f"{', '.join(EARLY_STOP_KINDS)} (empty: never)")})
    patience: int = field(default=10, metadata={"help": (
        "epochs without a significant improvement of the smoothed monitored loss before a "
        "plateau is reported (diagnosis patience), >= 1")})
    thresholds: tuple[tuple[str, str], ...] = field(default=(), metadata={"help": (
        "diagnosis threshold override NAME=VALUE, repeatable; names and defaults in "
        "docs/diagnosis.md")})
    log_every_steps: int = field(default=0, metadata={"help": (
        "also log loss and gradient norm every k steps to steps.jsonl; 0 turns it off")})
    min_epoch_seconds: float = field(default=0.0, metadata={"help": (
        "after each epoch is written, wait until it has taken at least this many seconds, "
        "so that its curves can be watched filling (the demo runs use it); 0 turns it off, "
        f"at most {MAX_EPOCH_PACE:g}")})
    threads: int = field(default=0, metadata={"help": (
        "torch CPU threads for this run; 0 keeps torch's default (a group run with --parallel "
        "K sets it so K runs share the cores)")})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["early_stop"] = list(self.early_stop)
        d["thresholds"] = dict(self.thresholds)
        return d


FIELDS = {f.name: f for f in fields(TrainConfig)}
DEFAULTS = TrainConfig()


def _num(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, "
                          f"got {shown(value)}")
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, "
                          f"got {shown(value)}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be a finite number, got {shown(value)}")
    return out


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in choices:
        hint = did_you_mean(value.lower(), choices) if isinstance(value, str) else ""
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {shown(value)}"
                          f"{hint}")
    return value.strip().lower()


def _range(name: str, value: float, lo: float | None, hi: float | None, *,
           lo_open: bool = False, hi_open: bool = False, accepted: str) -> None:
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or \
          (hi is not None and (value >= hi if hi_open else value > hi))
    if bad:
        raise ConfigError(f"{name} must be {accepted}, got {shown(value)}")


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _hidden(value: Any) -> tuple[int, ...]:
    items = _list(value)
    widths = tuple(_num("hidden", v, int) for v in items)
    if not widths or any(w < 1 or w > 65536 for w in widths) or len(widths) > 32:
        raise ConfigError(f"hidden must be 1 to 32 comma-separated widths between 1 and 65536, "
                          f"e.g. 256,128, got {shown(value)}")
    return widths


def _thresholds(value: Any) -> tuple[tuple[str, str], ...]:
    """NAME=VALUE pairs as text; diagnosis.Thresholds checks names and ranges (build_thresholds)."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = []
        for item in _list(value):
            if not isinstance(item, str) or "=" not in item:
                raise ConfigError(f"threshold must be NAME=VALUE, got {shown(item)}")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    return tuple((str(k).strip().replace("-", "_"), str(v)) for k, v in pairs)


def build_thresholds(cfg: TrainConfig) -> Any:
    """The diagnosis Thresholds of this run (patience and overrides), or ConfigError."""
    return run_thresholds(cfg.to_dict())


def run_thresholds(config: Mapping[str, Any]) -> Any:
    """The one definition of the diagnosis Thresholds a run is judged with, from its config
    (run.json's, or a TrainConfig's `to_dict`): the trainer judges with it and the dashboard
    redraws that judgement. A patience that is not a positive int (a user loop's config is
    anything) means the default; bad `thresholds` overrides raise ConfigError naming them."""
    from curvewatch.diagnosis import Thresholds

    patience = config.get("patience")
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        patience = None
    overrides = config.get("thresholds")
    try:
        return Thresholds.for_run(patience, overrides if isinstance(overrides, Mapping)
                                  else _thresholds(overrides or ()))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid diagnosis threshold: {e}") from None


def _source(name: str, value: Any, builtin: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {shown(value)}")
    v = value.strip()
    if v.lower() in builtin:
        return v.lower()
    if name == "dataset" and v.startswith("csv:"):
        if len(v) == 4:
            raise ConfigError("dataset csv: needs a path, e.g. csv:data/train.csv")
        return v
    if _FACTORY_RE.match(v):
        return v
    extra = ", csv:PATH" if name == "dataset" else ""
    raise ConfigError(f"{name} must be one of {', '.join(builtin)}{extra} or a factory "
                      f"module:function, got {shown(value)}{did_you_mean(v.lower(), builtin)}")


def validate(raw: Mapping[str, Any]) -> TrainConfig:
    """Build a TrainConfig from loose values (strings from a CLI or form, config-file types),
    raising ConfigError naming the first offending option, its value and what is accepted."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        hint = did_you_mean(unknown[0], FIELDS) if len(unknown) == 1 else ""
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known options are "
                          f"{', '.join(sorted(FIELDS))}{hint}")
    v = {**DEFAULTS.to_dict(), **{k: val for k, val in raw.items() if val is not None}}
    out: dict[str, Any] = {}
    out["dataset"] = _source("dataset", v["dataset"], DATASETS)
    out["target"] = str(v["target"]) if v.get("target") not in (None, "") else None
    if out["dataset"].startswith("csv:") and not out["target"]:
        raise ConfigError(f"dataset {out['dataset']} needs --target COLUMN naming the column "
                          "to predict")
    out["model"] = _source("model", v["model"], MODELS)
    for name in ("activation", "optimizer", "schedule", "device"):
        choices = {"activation": ACTIVATIONS, "optimizer": OPTIMIZERS,
                   "schedule": SCHEDULES, "device": DEVICES}[name]
        out[name] = _choice(name, v[name], choices)
    for name in ("label_noise", "val_fraction", "test_fraction", "dropout", "lr", "momentum",
                 "weight_decay", "l1", "clip_grad_norm", "min_epoch_seconds"):
        out[name] = _num(name, v[name], float)
    for name in ("epochs", "batch_size", "warmup_epochs", "seed", "patience",
                 "log_every_steps"):
        out[name] = _num(name, v[name], int)
    out["train_size"] = None if v["train_size"] in (None, "", 0) else \
        _num("train_size", v["train_size"], int)
    out["hidden"] = _hidden(v["hidden"])
    out["early_stop"] = tuple(_choice("early_stop", k, EARLY_STOP_KINDS)
                              for k in _list(v["early_stop"]))
    out["thresholds"] = _thresholds(v["thresholds"])
    out["threads"] = _num("threads", v["threads"], int)
    _validation(out, v)
    _check_ranges(out)
    cfg = TrainConfig(**out)
    build_thresholds(cfg)
    return cfg


def _validation(out: dict[str, Any], v: Mapping[str, Any]) -> None:
    """validation in canonical form (holdout:F sets val_fraction), and fold within it."""
    plan = parse_validation(v["validation"])
    if plan.fraction is not None:
        out["val_fraction"] = plan.fraction
    out["validation"] = str(plan)
    fold = v.get("fold")
    out["fold"] = None if fold in (None, "") else _num("fold", fold, int)
    if out["fold"] is not None:
        if not plan.is_group:
            raise ConfigError(f"fold needs --validation kfold:K or bootstrap:B, got fold "
                              f"{out['fold']} with validation {plan}")
        _range("fold", out["fold"], 1, plan.k, accepted=f"between 1 and {plan.k} for "
                                                        f"validation {plan}")


def to_args(cfg: TrainConfig) -> list[str]:
    """Command-line flags that rebuild `cfg` (the options that differ from the defaults):
    validate(parse of these flags) == cfg. Group launchers start members with them."""
    out: list[str] = []
    base = DEFAULTS.to_dict()
    for name, value in cfg.to_dict().items():
        if value == base[name] or value is None:
            continue
        if name == "thresholds":
            for k, val in value.items():
                out += ["--threshold", f"{k}={val}"]
            continue
        if isinstance(value, list):
            value = ",".join(str(x) for x in value)
        out += ["--" + name.replace("_", "-"), repr(value) if isinstance(value, float)
                else str(value)]
    return out


def _check_ranges(c: dict[str, Any]) -> None:
    _range("lr", c["lr"], 0, 10, lo_open=True, accepted="> 0 and <= 10")
    _range("epochs", c["epochs"], 1, MAX_EPOCHS, accepted=f"between 1 and {MAX_EPOCHS}")
    _range("batch_size", c["batch_size"], 1, 1 << 20, accepted="between 1 and 1048576")
    _range("label_noise", c["label_noise"], 0, 1, hi_open=True, accepted="in [0, 1)")
    _range("val_fraction", c["val_fraction"], 0, 1, lo_open=True, hi_open=True,
           accepted="in (0, 1)")
    _range("test_fraction", c["test_fraction"], 0, 1, hi_open=True, accepted="in [0, 1)")
    if c["val_fraction"] + c["test_fraction"] >= 0.9:
        raise ConfigError(f"val_fraction + test_fraction must be < 0.9 to leave data to train "
                          f"on, got {c['val_fraction'] + c['test_fraction']:g}")
    _range("dropout", c["dropout"], 0, 1, hi_open=True, accepted="in [0, 1)")
    _range("momentum", c["momentum"], 0, 1, hi_open=True, accepted="in [0, 1)")
    for name in ("weight_decay", "l1", "clip_grad_norm"):
        _range(name, c[name], 0, None, accepted=">= 0")
    _range("warmup_epochs", c["warmup_epochs"], 0, c["epochs"] - 1,
           accepted=f">= 0 and < epochs ({c['epochs']})")
    _range("patience", c["patience"], 1, MAX_EPOCHS, accepted=">= 1")
    _range("log_every_steps", c["log_every_steps"], 0, None, accepted=">= 0")
    _range("min_epoch_seconds", c["min_epoch_seconds"], 0, MAX_EPOCH_PACE,
           accepted=f"between 0 and {MAX_EPOCH_PACE:g} (0: no waiting)")
    _range("seed", c["seed"], 0, 2**32 - 1, accepted="between 0 and 4294967295")
    _range("threads", c["threads"], 0, 1024, accepted="between 0 and 1024 (0: torch's default)")
    if c["train_size"] is not None:
        _range("train_size", c["train_size"], 2, None, accepted=">= 2 (or omit it)")
    if c["model"] == "cnn" and c["dataset"] != "digits-images" and ":" not in c["dataset"]:
        raise ConfigError(f"model cnn needs image data (dataset digits-images or a factory), "
                          f"got dataset {c['dataset']!r}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, JSON or YAML file of options (same keys as the CLI, '-' or '_')."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {e}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file must end in .toml, .json, .yaml or .yml, "
                              f"got {str(p)!r}")
    except ConfigError:
        raise
    except Exception as e:  # each parser has its own error type
        raise ConfigError(f"config file {str(p)!r} is not valid {suffix[1:].upper()}: {e}") \
            from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a table of options, "
                          f"got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
