"""Dataset factories for the corpus (`--dataset eval.datasets:NAME`): what the built-in
datasets lack, from scikit-learn's bundled data and generators (nothing is downloaded).

Regression targets (diabetes, friedman) give MSE curves; `moons_large` gives validation sets
of thousands of examples.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as skd


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """442 patients, 10 features, a continuous disease-progression target (regression)."""
    x, y = skd.load_diabetes(return_X_y=True)
    return x, y.astype(float)


def friedman() -> tuple[np.ndarray, np.ndarray]:
    """Friedman #1: 2,000 rows, 10 features (5 irrelevant), a noisy nonlinear target."""
    x, y = skd.make_friedman1(n_samples=2000, noise=1.0, random_state=0)
    return x, y


def friedman_small() -> tuple[np.ndarray, np.ndarray]:
    """Friedman #1 with 150 rows and more noise: a regression that overfits."""
    x, y = skd.make_friedman1(n_samples=150, noise=2.0, random_state=1)
    return x, y


def moons_large() -> tuple[np.ndarray, np.ndarray]:
    """8,000 noisy moons: validation sets of thousands of examples."""
    return skd.make_moons(n_samples=8000, noise=0.3, random_state=0)
