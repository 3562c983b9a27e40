"""Models: an MLP, a small CNN for image-shaped data, logistic regression, or a user factory."""
from __future__ import annotations

import math
from typing import Any

from torch import nn

from .config import TrainConfig
from .errors import ConfigError
from .factories import import_factory

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def _mlp(n_in: int, hidden: tuple[int, ...], n_out: int, act: type[nn.Module],
         dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), act()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _cnn(shape: tuple[int, ...], hidden: tuple[int, ...], n_out: int, act: type[nn.Module],
         dropout: float) -> nn.Sequential:
    if len(shape) != 3:
        raise ConfigError(f"model cnn needs image input shaped (channels, height, width), "
                          f"got input shape {shape}")
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1), act(),
        nn.Conv2d(16, 32, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        nn.Linear(32 * (h // 2) * (w // 2), hidden[0]), act(),
        nn.Linear(hidden[0], n_out))


def build_model(cfg: TrainConfig, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """The configured model for inputs of `input_shape` (without batch) and `n_outputs`."""
    act = _ACTIVATIONS[cfg.activation]
    n_in = math.prod(input_shape)
    if cfg.model == "mlp":
        return _mlp(n_in, cfg.hidden, n_outputs, act, cfg.dropout)
    if cfg.model == "logreg":
        return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_outputs))
    if cfg.model == "cnn":
        return _cnn(input_shape, cfg.hidden, n_outputs, act, cfg.dropout)
    factory = import_factory(cfg.model, "model")
    try:
        model = factory(tuple(input_shape), n_outputs)
    except Exception as e:
        raise ConfigError(f"model factory {cfg.model!r} raised {type(e).__name__} when called "
                          f"as {cfg.model.split(':')[1]}(input_shape={tuple(input_shape)}, "
                          f"n_outputs={n_outputs}): {e}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {cfg.model!r} must return a torch.nn.Module, got "
                          f"{type(model).__name__}")
    return model


def model_summary(model: nn.Module, cfg: TrainConfig) -> dict[str, Any]:
    params = [(n, list(p.shape)) for n, p in model.named_parameters() if p.requires_grad]
    return {"name": cfg.model, "n_params": sum(p.numel() for p in model.parameters()),
            "parameters": [{"name": n, "shape": s} for n, s in params],
            "text": str(model)[:4000]}
