"""Datasets from what is on the machine: scikit-learn's bundled sets, synthetic generators,
a user's CSV or a user's factory. Nothing is downloaded.

Splits are stratified for classification (the validation schemes are in validation.py) and
standardisation is fitted on the training split only, so nothing about validation or test data
leaks into training.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curvewatch.tracking.safeio import file_kind

from .config import TrainConfig
from .errors import ConfigError
from .factories import import_factory
from .validation import parse_validation, split as split_rows

CLASSIFICATION, REGRESSION = "classification", "regression"
#: A numeric target with at most this many distinct integer values is taken as class labels.
MAX_CLASSES = 100


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray  # row numbers in the full dataset, to audit splits


@dataclass(frozen=True)
class Dataset:
    """A task split into train / val (/ test), features float32, ready to become tensors."""

    name: str
    task: str
    train: Split
    val: Split
    test: Split | None
    n_classes: int  # 0 for regression
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {"dataset": self.name, "task": self.task, "n_train": len(self.train.y),
                "n_val": len(self.val.y), "n_test": 0 if self.test is None else len(self.test.y),
                "n_features": int(np.prod(self.input_shape)),
                "input_shape": list(self.input_shape), "n_classes": self.n_classes}


def _spirals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved noisy spirals: not linearly separable, needs a non-linear model."""
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0.05, 1, n)) * 3 * np.pi
    label = rng.integers(0, 2, n)
    angle = t + np.pi * label
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], 1) / (3 * np.pi)
    return x + rng.normal(0, 0.05, x.shape), label


def _builtin(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets as skd

    if name in ("digits", "digits-images"):
        d = skd.load_digits()
        x = d.data / 16.0
        return (x.reshape(-1, 1, 8, 8) if name == "digits-images" else x), d.target
    if name == "breast_cancer":
        d = skd.load_breast_cancer()
        return d.data, d.target
    if name == "wine":
        d = skd.load_wine()
        return d.data, d.target
    if name == "moons":
        return skd.make_moons(n_samples=1000, noise=0.25, random_state=seed)
    if name == "blobs":
        return skd.make_blobs(n_samples=1000, centers=4, cluster_std=2.5, random_state=seed)
    if name == "spirals":
        return _spirals(1000, seed)
    raise AssertionError(name)  # validate() only lets known names through


_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip", ".zst": "zstd"}


def _open_csv(path_str: str) -> Any:
    """A binary file object for a csv: dataset, which must be a regular file: a FIFO would
    block and a device (/dev/zero) would be read without end, so both are refused before a
    byte is read (the open is non-blocking and the type is checked on the open descriptor)."""
    path = Path(path_str)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"dataset csv:{path_str}: no such file") from None
    except OSError as e:
        raise ConfigError(f"dataset csv:{path_str} cannot be opened: {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ConfigError(f"dataset csv:{path_str} is {file_kind(mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def _from_csv(path_str: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    with _open_csv(path_str) as f:
        try:
            frame = pd.read_csv(f, compression=_COMPRESSION.get(Path(path_str).suffix.lower()))
        except Exception as e:
            raise ConfigError(f"dataset csv:{path_str} cannot be read as CSV: {e}") from None
    if target not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:30]))
        raise ConfigError(f"target column {target!r} is not in csv:{path_str}; its columns "
                          f"are {cols}")
    y = frame.pop(target)
    if y.isna().any():
        raise ConfigError(f"target column {target!r} has {int(y.isna().sum())} empty values")
    if frame.shape[1] == 0:
        raise ConfigError(f"csv:{path_str} has no feature columns besides {target!r}")
    x = pd.get_dummies(frame, dtype=float)
    bad = [c for c in x.columns if x[c].isna().any()]
    if bad:
        raise ConfigError(f"feature column(s) {', '.join(map(str, bad[:10]))} of csv:{path_str}"
                          " have empty values; fill or drop them first")
    return x.to_numpy(dtype=float), y.to_numpy()


def _from_factory(spec: str) -> tuple[np.ndarray, np.ndarray]:
    factory = import_factory(spec, "dataset")
    try:
        out = factory()
    except Exception as e:
        raise ConfigError(f"dataset factory {spec!r} raised {type(e).__name__}: {e}") from None
    if isinstance(out, dict):
        out = (out.get("X"), out.get("y"))
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ConfigError(f"dataset factory {spec!r} must return (X, y), got "
                          f"{type(out).__name__}")
    return np.asarray(out[0]), np.asarray(out[1])


def _encode_target(y: np.ndarray) -> tuple[str, np.ndarray, tuple[str, ...]]:
    """Decide the task from the target and encode it: labels -> 0..k-1, numbers -> float."""
    if y.dtype.kind in "fc":
        if np.all(np.isfinite(y)) and np.all(y == np.round(y)) and \
                len(np.unique(y)) <= MAX_CLASSES:
            y = y.astype(np.int64)
        else:
            return REGRESSION, y.astype(np.float32), ()
    classes, codes = np.unique(y.astype(str) if y.dtype.kind in "OUS" else y,
                               return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(f"the target has a single class ({classes[0]!r}); classification "
                          "needs at least 2")
    return CLASSIFICATION, codes.astype(np.int64), tuple(map(str, classes))


def load_dataset(cfg: TrainConfig) -> Dataset:
    """Load and split the configured data; raises ConfigError for data that cannot be used."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if cfg.dataset.startswith("csv:"):
        x, y = _from_csv(cfg.dataset[4:], cfg.target or "")
    elif ":" in cfg.dataset:
        x, y = _from_factory(cfg.dataset)
    else:
        x, y = _builtin(cfg.dataset, cfg.seed)
    if x.ndim < 2 or len(x) != len(y) or len(x) < 10:
        raise ConfigError(f"dataset {cfg.dataset!r} must give X with shape (n, features...) "
                          f"and y with n entries, n >= 10; got X {x.shape}, y {y.shape}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"dataset {cfg.dataset!r} has NaN or infinite feature values")
    task, y, class_names = _encode_target(y)
    if task == REGRESSION and cfg.label_noise > 0:
        raise ConfigError(f"label_noise applies to classification only; dataset "
                          f"{cfg.dataset!r} has a regression target")
    idx = np.arange(len(y))
    strat = y if task == CLASSIFICATION else None
    try:
        test_idx = None
        if cfg.test_fraction > 0:
            idx, test_idx = train_test_split(idx, test_size=cfg.test_fraction,
                                             random_state=cfg.seed, stratify=strat)
        rest_strat = y[idx] if strat is not None else None
        val_share = cfg.val_fraction / (1 - cfg.test_fraction)
        train_idx, val_idx = split_rows(parse_validation(cfg.validation), idx, rest_strat,
                                        seed=cfg.seed, val_fraction=val_share, fold=cfg.fold)
        if cfg.train_size is not None and cfg.train_size < len(train_idx):
            train_idx, _ = train_test_split(
                train_idx, train_size=cfg.train_size, random_state=cfg.seed,
                stratify=y[train_idx] if strat is not None else None)
    except ConfigError as e:
        raise ConfigError(f"dataset {cfg.dataset!r}: {e}") from None
    except ValueError as e:
        raise ConfigError(f"cannot split dataset {cfg.dataset!r} ({len(y)} samples) with "
                          f"val_fraction={cfg.val_fraction}, test_fraction={cfg.test_fraction}"
                          f", train_size={cfg.train_size}: {e}") from None
    y_train = y[train_idx].copy()
    if cfg.label_noise > 0:
        y_train = _noisy_labels(y_train, cfg.label_noise, len(class_names), cfg.seed)
    flat = x.reshape(len(x), -1)
    scaler = StandardScaler().fit(flat[train_idx])
    xs = scaler.transform(flat).astype(np.float32).reshape(x.shape)
    if task == REGRESSION:  # standardise the target too, so losses are comparable across sets
        mu, sd = y[train_idx].mean(), y[train_idx].std() or 1.0
        y = ((y - mu) / sd).astype(np.float32)
        y_train = y[train_idx]

    def split(i: np.ndarray, yy: np.ndarray | None = None) -> Split:
        return Split(xs[i], y[i] if yy is None else yy, i)

    return Dataset(
        name=cfg.dataset, task=task, train=split(train_idx, y_train), val=split(val_idx),
        test=None if test_idx is None else split(test_idx),
        n_classes=len(class_names), input_shape=tuple(x.shape[1:]), class_names=class_names)


def _noisy_labels(y: np.ndarray, fraction: float, n_classes: int, seed: int) -> np.ndarray:
    """Replace round(fraction * n) labels by a uniformly drawn *different* class."""
    rng = np.random.default_rng(seed + 1)
    flip = rng.choice(len(y), size=int(round(fraction * len(y))), replace=False)
    shift = rng.integers(1, n_classes, size=len(flip))
    y = y.copy()
    y[flip] = (y[flip] + shift) % n_classes
    return y
