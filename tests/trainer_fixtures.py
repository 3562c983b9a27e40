"""User factories imported by the trainer in tests (`--model trainer_fixtures:...`)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ModeCheckingMLP(nn.Module):
    """Fails loudly unless training forward passes run in train() mode with autograd on, and
    validation passes run in eval() mode with autograd off."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, 32), nn.ReLU(),
                                 nn.Dropout(0.5), nn.Linear(32, n_out))

    def forward(self, x):
        grad = torch.is_grad_enabled()
        if grad and not self.training:
            raise AssertionError("forward with autograd on in eval() mode")
        if not grad and self.training:
            raise AssertionError("forward without autograd in train() mode "
                                 "(validation in train mode)")
        return self.net(x)


def mode_checking_mlp(input_shape, n_outputs):
    return ModeCheckingMLP(int(np.prod(input_shape)), n_outputs)


class FailsAtStep(nn.Module):
    def __init__(self, n_in, n_out, fail_at, error):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.calls, self.fail_at, self.error = 0, fail_at, error

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.error
        return self.lin(x.flatten(1))


def out_of_memory_model(input_shape, n_outputs):
    """Raises the error PyTorch raises when memory runs out, on the 30th training step."""
    return FailsAtStep(int(np.prod(input_shape)), n_outputs, 30,
                       torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))


class GoesNaN(nn.Module):
    def __init__(self, n_in, n_out, after):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.calls, self.after = 0, after

    def forward(self, x):
        self.calls += self.training
        out = self.lin(x.flatten(1))
        return out * float("nan") if self.calls > self.after else out


def nan_model(input_shape, n_outputs):
    """Produces NaN outputs from its 40th training step on."""
    return GoesNaN(int(np.prod(input_shape)), n_outputs, 40)


def regression_data():
    """y = a smooth function of 3 features plus noise: a regression target."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2 - x[:, 2] + rng.normal(0, 0.1, 400)
    return x, y


def broken_data():
    raise RuntimeError("the data server is unreachable")


def fails_for_seed_1(input_shape, n_outputs):
    """A linear model whose training raises at its 3rd step when the run's seed is 1 (the
    trainer seeds torch with the run's seed before building the model): the one failing
    member of a `--repeat 3` group."""
    fail_at = 3 if torch.initial_seed() == 1 else 0  # 0: never
    return FailsAtStep(int(np.prod(input_shape)), n_outputs, fail_at,
                       RuntimeError("member with seed 1 fails on purpose"))


class WithUnusedHead(nn.Module):
    """A model with a parameter its forward never touches (an unused auxiliary head), so its
    .grad stays None after backward."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.aux = nn.Linear(n_in, 1)

    def forward(self, x):
        return self.lin(x.flatten(1))


def unused_head_model(input_shape, n_outputs):
    return WithUnusedHead(int(np.prod(input_shape)), n_outputs)
