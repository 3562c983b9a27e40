"""`curvewatch.watch(model)`, wandb.watch's counterpart: the gradient norms of watched models
over an epoch, as the trainer records them (grad_norm: mean of the global norm, grad_norm_max,
and each parameter tensor's norm as the root mean square over the samples)."""
from __future__ import annotations

import math
from typing import Any

from curvewatch.tracking.grads import gradient_norms

#: wandb.watch's `log` values: these two record gradient norms; "parameters" and None record
#: nothing (parameter histograms are not kept here)
GRADIENT_LOGS = ("gradients", "all")
LOGS = (*GRADIENT_LOGS, "parameters", None)


class GradWatch:
    """Samples the watched models' gradients (once per new backward pass) and sums them up
    per epoch."""

    def __init__(self) -> None:
        self.models: list[Any] = []
        self._backwards = 0  # backward passes seen by the hooks, and at the last sample
        self._sampled = 0
        self._handles: list[Any] = []
        self._n, self._sum, self._max = 0, 0.0, 0.0
        self._squares: dict[str, float] = {}

    def add(self, models: Any, log: str | None) -> None:
        if log not in LOGS:
            raise ValueError(f"watch(log=...) must be one of {', '.join(map(repr, LOGS))}, "
                             f"got {log!r}")
        found = list(models) if isinstance(models, (list, tuple)) else [models]
        for model in found:
            if not callable(getattr(model, "named_parameters", None)):
                raise TypeError(f"watch() takes torch modules, got {type(model).__name__}")
        if log in GRADIENT_LOGS:
            for model in found:
                self._hook(model)
            self.models += found

    def _hook(self, model: Any) -> None:
        """Count backward passes: a hook on the model's first trainable parameter."""
        first = next((p for p in model.parameters() if p.requires_grad), None)
        if first is not None:
            self._handles.append(first.register_post_accumulate_grad_hook(self._count))

    def close(self) -> None:
        """Remove the hooks (the run has ended; the models may train on)."""
        for handle in self._handles:
            handle.remove()
        self._handles, self.models = [], []

    def _count(self, _: Any) -> None:
        self._backwards += 1

    def sample(self) -> None:
        """Add the current gradients, unless no backward ran since the last sample."""
        if self._backwards == self._sampled:
            return
        self._sampled = self._backwards
        many = len(self.models) > 1
        total2 = 0.0
        for i, model in enumerate(self.models):
            norms = gradient_norms(model)
            total2 += norms.total ** 2
            for name, value in norms.layers.items():
                key = f"{i}.{name}" if many else name
                self._squares[key] = self._squares.get(key, 0.0) + value * value
        total = math.sqrt(total2)
        self._n += 1
        self._sum += total
        self._max = max(self._max, total)

    def take(self) -> tuple[dict[str, float], dict[str, float]]:
        """The epoch's columns (grad_norm, grad_norm_max) and per-tensor norms; then resets.
        Both empty when nothing was sampled."""
        if not self._n:
            return {}, {}
        columns = {"grad_norm": self._sum / self._n, "grad_norm_max": self._max}
        layers = {k: math.sqrt(v / self._n) for k, v in self._squares.items()}
        self._reset()
        return columns, layers

    def _reset(self) -> None:
        self._n, self._sum, self._max = 0, 0.0, 0.0
        self._squares = {}
