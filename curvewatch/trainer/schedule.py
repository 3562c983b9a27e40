"""Optimizers and learning-rate schedules (warm-up included)."""
from __future__ import annotations

import math
from typing import Any

import torch

from .config import TrainConfig

PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.5, 5


def build_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    wd = cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)


def lr_factor(schedule: str, epoch: int, epochs: int, warmup: int) -> float:
    """Multiplier of the base learning rate during `epoch` (1-based) for the epoch-indexed
    schedules. Warm-up ramps linearly: epoch e <= warmup uses e / (warmup + 1)."""
    if epoch <= warmup:
        return epoch / (warmup + 1)
    t, span = epoch - warmup, max(1, epochs - warmup)  # 1-based epoch after warm-up
    if schedule == "step":  # x0.1 at each third of the post-warm-up epochs
        return 0.1 ** ((t - 1) // max(1, math.ceil(span / 3)))
    if schedule == "exponential":
        return 0.95 ** (t - 1)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (t - 1) / span))
    return 1.0  # constant, and plateau before any reduction


class LRSchedule:
    """Sets the learning rate at the start of each epoch; `plateau` halves it when the
    validation loss has not improved for PLATEAU_PATIENCE epochs (torch's ReduceLROnPlateau)."""

    def __init__(self, cfg: TrainConfig, optimizer: torch.optim.Optimizer):
        self.cfg, self.optimizer = cfg, optimizer
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE) \
            if cfg.schedule == "plateau" else None

    def begin_epoch(self, epoch: int) -> float:
        cfg = self.cfg
        if self.plateau is None or epoch <= cfg.warmup_epochs + 1:
            lr = cfg.lr * lr_factor(cfg.schedule, epoch, cfg.epochs, cfg.warmup_epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        return float(self.optimizer.param_groups[0]["lr"])

    def end_epoch(self, epoch: int, val_loss: float) -> None:
        if self.plateau is not None and epoch > self.cfg.warmup_epochs and math.isfinite(val_loss):
            self.plateau.step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        return {"plateau": self.plateau.state_dict() if self.plateau else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.plateau is not None and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])
