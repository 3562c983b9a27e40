"""Gradient norms of a model after backward(), for the trainer and for users' own loops."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GradNorms:
    """The global L2 gradient norm and the L2 norm of each parameter tensor's gradient."""

    total: float
    layers: dict[str, float]


def named_grads(model: Any) -> tuple[list[str], list[Any]]:
    """Names and gradient tensors of the parameters that currently have a gradient."""
    names, grads = [], []
    for name, p in model.named_parameters():
        if p.grad is not None:
            names.append(name)
            grads.append(p.grad.detach())
    return names, grads


def layer_norm_tensor(grads: list[Any]) -> Any:
    """Per-tensor L2 norms as one 1-D tensor on the gradients' device, without a host sync
    (one fused foreach kernel instead of a Python loop of .item() calls)."""
    import torch

    if not grads:
        return torch.zeros(0)
    return torch.stack(torch._foreach_norm(grads, 2.0))


def gradient_norms(model: Any) -> GradNorms:
    """Global and per-parameter-tensor gradient norms of `model`; call after backward()."""
    names, grads = named_grads(model)
    norms = layer_norm_tensor(grads)
    values = norms.double().cpu().tolist()
    total = float(sum(v * v for v in values) ** 0.5)
    return GradNorms(total, dict(zip(names, values, strict=True)))
