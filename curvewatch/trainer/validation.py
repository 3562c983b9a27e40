"""Validation schemes: which rows train and which validate, for one run of a scheme.

    holdout        hold out --val-fraction of the rows (one run)
    holdout:F      the same with val_fraction F
    kfold:K        K-fold cross-validation: fold k (1..K) validates on the k-th of K disjoint
                   parts and trains on the rest; the K folds cover every row once
    bootstrap:B    B bootstrap resamples: resample b (1..B) trains on n rows drawn with
                   replacement and validates on the rows never drawn (out-of-bag)

Splits are stratified for classification (StratifiedKFold, stratified train_test_split and
resample) and plain for regression (KFold); they use scikit-learn's splitters, seeded by the
run's seed, so a fold's rows are the same in every member and on every resume.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, did_you_mean, shown

METHODS = ("holdout", "kfold", "bootstrap")
MAX_FOLDS = 100
MAX_RESAMPLES = 1000
ACCEPTED = "holdout, holdout:F (0 < F < 1), kfold:K (2 <= K <= 100) or bootstrap:B " \
           "(1 <= B <= 1000)"


@dataclass(frozen=True)
class ValidationPlan:
    """A parsed --validation value. `k` is the number of folds or resamples (0 for holdout);
    `fraction` the holdout fraction when one was given (holdout:F)."""

    method: str
    k: int = 0
    fraction: float | None = None

    @property
    def is_group(self) -> bool:
        """kfold and bootstrap train one run per fold / resample, as a group."""
        return self.method != "holdout"

    @property
    def member_word(self) -> str:
        return {"kfold": "fold", "bootstrap": "resample"}.get(self.method, "run")

    def __str__(self) -> str:
        return self.method if self.method == "holdout" else f"{self.method}:{self.k}"


def parse_validation(value: object) -> ValidationPlan:
    """Parse holdout | holdout:F | kfold:K | bootstrap:B; ConfigError naming the value."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"validation must be one of {ACCEPTED}, got {shown(value)}")
    method, _, arg = value.strip().lower().partition(":")
    if method not in METHODS:
        raise ConfigError(f"validation must be one of {ACCEPTED}, got {shown(value)}"
                          f"{did_you_mean(method, METHODS)}")
    if method == "holdout":
        if not arg:
            return ValidationPlan("holdout")
        try:
            f = float(arg)
        except ValueError:
            f = -1.0
        if not 0 < f < 1:
            raise ConfigError("validation holdout:F needs a fraction 0 < F < 1, "
                              f"got {shown(value)}")
        return ValidationPlan("holdout", fraction=f)
    lo, hi = (2, MAX_FOLDS) if method == "kfold" else (1, MAX_RESAMPLES)
    letter = "K" if method == "kfold" else "B"
    try:
        k = int(arg)
    except ValueError:
        k = -1
    if not lo <= k <= hi:
        raise ConfigError(f"validation {method}:{letter} needs an integer {lo} <= {letter} <= "
                          f"{hi}, got {shown(value)}")
    return ValidationPlan(method, k=k)


def resample_seed(seed: int, resample: int) -> int:
    """The random_state of bootstrap resample `resample` of a run seeded `seed`."""
    return int(np.random.SeedSequence([seed, resample]).generate_state(1)[0])


def split(plan: ValidationPlan, idx: np.ndarray, strat: np.ndarray | None, *, seed: int,
          val_fraction: float, fold: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows) of `idx` for this plan; `strat` holds the class of each entry of
    `idx` (None for regression). `fold` is 1-based (default 1). Raises ConfigError when the
    data cannot be split so."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
    from sklearn.utils import resample

    fold = 1 if fold is None else fold
    try:
        if plan.method == "holdout":
            train, val = train_test_split(idx, test_size=val_fraction, random_state=seed,
                                          stratify=strat)
            return train, val
        if plan.method == "kfold":
            splitter = (StratifiedKFold if strat is not None else KFold)(
                n_splits=plan.k, shuffle=True, random_state=seed)
            for i, (tr, va) in enumerate(splitter.split(idx, strat), 1):
                if i == fold:
                    return idx[tr], idx[va]
            raise ConfigError(f"fold must be between 1 and {plan.k}, got {fold}")
        drawn = resample(idx, replace=True, n_samples=len(idx), stratify=strat,
                         random_state=resample_seed(seed, fold))
        train = np.sort(drawn)
        val = np.setdiff1d(idx, train)
    except ValueError as e:
        raise ConfigError(f"cannot split {len(idx)} samples for validation {plan}: {e}") \
            from None
    if len(val) == 0:
        raise ConfigError(f"bootstrap resample {fold} drew every one of the {len(idx)} samples: "
                          "no out-of-bag samples are left to validate on")
    return train, val
