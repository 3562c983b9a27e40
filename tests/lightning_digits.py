"""The Lightning model, data and Trainer of tests/test_integration_lightning.py, in a module of
their own: that test module imports it from a fixture, so collecting the suite (every module,
on every worker) does not import Lightning, and the DDP script's ranks import it by name."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor  # noqa: F401 (for the tests)
from lightning.pytorch.loggers import CSVLogger  # noqa: F401 (for the tests)
from sklearn.datasets import load_digits
from torch import nn

from curvewatch.lightning import (  # noqa: F401 (for the tests)
    CurvewatchLogger,
    DiagnosisEarlyStopping,
    GradNormMonitor,
)


class Digits(L.LightningModule):
    """An MLP on sklearn's digits; `step_loss` also logs the training loss on every step."""

    def __init__(self, lr: float = 1e-2, hidden: int = 64, step_loss: bool = False,
                 fail_at_epoch: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, 10))

    def training_step(self, batch, _):
        if self.current_epoch == self.hparams.fail_at_epoch:
            raise RuntimeError("the data loader broke")
        x, y = batch
        out = self.net(x)
        loss = nn.functional.cross_entropy(out, y)
        self.log("train_loss", loss, on_step=self.hparams.step_loss, on_epoch=True)
        self.log("train_acc", (out.argmax(1) == y).float().mean(), on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        out = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def loaders(n_train: int, batch_size: int, label_noise: float = 0.0):
    """Train and validation loaders on digits (fixed split; `label_noise` of the training
    labels redrawn at random, which a big enough model memorises: it overfits)."""
    x, y = load_digits(return_X_y=True)
    g = torch.Generator().manual_seed(0)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(x), generator=g)
    tr, va = perm[:n_train], perm[n_train:n_train + 500]
    y_tr = y[tr].clone()
    noisy = torch.rand(n_train, generator=g) < label_noise
    y_tr[noisy] = torch.randint(0, 10, (int(noisy.sum()),), generator=g)
    data = torch.utils.data
    return (data.DataLoader(data.TensorDataset(x[tr], y_tr), batch_size=batch_size,
                            shuffle=True, generator=g),
            data.DataLoader(data.TensorDataset(x[va], y[va]), batch_size=500))


def trainer(tmp: Path, **kw) -> L.Trainer:
    opts = dict(enable_progress_bar=False, enable_checkpointing=False,
                enable_model_summary=False, default_root_dir=tmp, accelerator="cpu",
                log_every_n_steps=2)
    return L.Trainer(**{**opts, **kw})


class Scheduled(Digits):
    """Digits with the lr halved after every epoch, logging its loss on step only (as
    Lightning does by default in training_step): no epoch record closes an epoch, the next
    epoch's first record does."""

    def training_step(self, batch, _):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]


class StopAtEpoch(L.Callback):
    """Asks the run to stop as the dashboard's Stop button does (a STOP file)."""

    def __init__(self, logger: CurvewatchLogger, epoch: int):
        self.logger, self.epoch = logger, epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            (self.logger.run.path / "STOP").touch()
