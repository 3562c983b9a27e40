"""Logs written by the real tools, for the import tests: Lightning (TensorBoardLogger and
CSVLogger), tensorboardX and torch's SummaryWriter, each from a short real training on
scikit-learn's bundled breast_cancer data, or called exactly as the tool's own code calls it
(transformers' TensorBoardCallback and Keras' callbacks write through these writers).

Each writer returns what it logged, as the tool reported it, so that tests compare the import
with the log's source rather than with numbers pinned by hand."""
from __future__ import annotations

import csv
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def f32(x: float) -> float:
    """A float as TensorBoard stores it: float32, shown as its shortest decimal."""
    return float(str(np.float32(x)))


def breast_cancer_tensors(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Standardised train/val/test splits of breast_cancer: (xt, yt, xv, yv, xs, ys)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    xt, xv, yt, yv = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    xv, xs, yv, ys = train_test_split(xv, yv, test_size=0.5, random_state=seed, stratify=yv)
    scaler = StandardScaler().fit(xt)
    xs_ = [torch.tensor(scaler.transform(a), dtype=torch.float32) for a in (xt, xv, xs)]
    ys_ = [torch.tensor(a) for a in (yt, yv, ys)]
    return xs_[0], ys_[0], xs_[1], ys_[1], xs_[2], ys_[2]


@dataclass
class Logged:
    """What a module reported through `self.log`, as (global step, epoch, name, value)."""
    points: list[tuple[int, int, str, float]] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        return [v for _, _, n, v in self.points if n == name]

    def epochs(self, name: str) -> list[int]:
        return [e for _, e, n, _ in self.points if n == name]


def lightning_run(save_dir: Path, *, epochs: int = 6, check_val_every_n_epoch: int = 1,
                  val_check_interval: float = 1.0, lr_interval: str | None = None,
                  test: bool = False, log_every_n_steps: int = 50,
                  epoch_train_loss: bool = False) -> Logged:
    """Train a small MLP with Lightning 2.x, logging to TensorBoardLogger and CSVLogger under
    `save_dir` (`tb/version_0`, `csv/version_0/metrics.csv`). `self.log("train_loss", ...)`
    per step as by default (every `log_every_n_steps`), val_loss/val_acc per validation,
    LearningRateMonitor with a StepLR halving the lr every 2 epochs when `lr_interval` is
    given ("default" for Lightning's default interval)."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    xt, yt, xv, yv, xs, ys = breast_cancer_tensors()
    logged = Logged()

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"hidden": 16, "lr": 0.05})
            self.net = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(),
                                           torch.nn.Linear(16, 2))

        def _record(self, name: str, value: torch.Tensor, **kw: Any) -> None:
            self.log(name, value, **kw)
            logged.points.append((self.global_step, self.current_epoch, name,
                                  f32(value.item())))

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, on_epoch=epoch_train_loss)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            out = self.net(batch[0])
            self._record("val_loss", torch.nn.functional.cross_entropy(out, batch[1]))
            self._record("val_acc", (out.argmax(1) == batch[1]).float().mean())

        def test_step(self, batch: Any, _: int) -> None:
            self._record("test_loss", torch.nn.functional.cross_entropy(self.net(batch[0]),
                                                                        batch[1]))

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            return {"optimizer": opt,
                    "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)}

    torch.manual_seed(0)
    callbacks = []
    if lr_interval is not None:
        callbacks.append(LearningRateMonitor(
            logging_interval=None if lr_interval == "default" else lr_interval))
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, callbacks=callbacks,
        logger=[TensorBoardLogger(str(save_dir), name="tb", version=0),
                CSVLogger(str(save_dir), name="csv", version=0)],
        check_val_every_n_epoch=check_val_every_n_epoch, val_check_interval=val_check_interval,
        log_every_n_steps=log_every_n_steps, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    train = DataLoader(TensorDataset(xt, yt), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=len(xv))
    module = Module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the few-workers and small-log-interval advice
        trainer.fit(module, train, val)
        if test:
            trainer.test(module, DataLoader(TensorDataset(xs, ys), batch_size=len(xs)),
                         verbose=False)
    return logged


def steps_per_epoch(batch_size: int = 32) -> int:
    """Optimizer steps in one epoch of `lightning_run` (its training split, batch 32)."""
    n = len(breast_cancer_tensors()[0])
    return -(-n // batch_size)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def sgd_loop(epochs: int, on_step: Any = None, on_epoch: Any = None, seed: int = 0,
             batch_size: int = 32) -> float:
    """A plain SGD loop on breast_cancer (MLP 16) calling `on_step(step, loss)` after every
    optimizer step and `on_epoch(epoch, step, val_loss, val_acc, lr)` after each epoch's
    validation (epochs and steps counted from 0, as Keras and transformers count them).
    Returns the trained model's loss on the test split."""
    xt, yt, xv, yv, xs, ys = breast_cancer_tensors()
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = torch.nn.CrossEntropyLoss()
    step = 0
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(batch_size):
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            if on_step is not None:
                on_step(step, loss.item())
            step += 1
        model.eval()
        with torch.no_grad():
            out = model(xv)
            vl, va = loss_fn(out, yv).item(), (out.argmax(1) == yv).float().mean().item()
        if on_epoch is not None:
            on_epoch(epoch, step, vl, va, opt.param_groups[0]["lr"])
    with torch.no_grad():
        return loss_fn(model(xs), ys).item()


def add_scalars_run(logdir: Path, writer: str, main_tag: str, keys: tuple[str, str],
                    epochs: int = 4, hparams: bool = True) -> dict[str, list[float]]:
    """Train/validation loss logged once an epoch through one `add_scalars(main_tag, {...})`
    call of torch's ("torch") or tensorboardX's ("tensorboardX") SummaryWriter, as the
    PyTorch tutorial does, then `add_hparams`. Returns the logged values by key."""
    if writer == "torch":
        from torch.utils.tensorboard import SummaryWriter
    else:
        from tensorboardX import SummaryWriter
    w = SummaryWriter(str(logdir))
    logged: dict[str, list[float]] = {k: [] for k in keys}
    losses: list[float] = []

    def on_epoch(epoch: int, step: int, vl: float, va: float, lr: float) -> None:
        values = {keys[0]: sum(losses) / len(losses), keys[1]: vl}
        w.add_scalars(main_tag, values, epoch + 1)
        for k, v in values.items():
            logged[k].append(f32(v))
        losses.clear()

    sgd_loop(epochs, on_step=lambda s, loss: losses.append(loss), on_epoch=on_epoch)
    if hparams:
        w.add_hparams({"lr": 0.05, "optimizer": "sgd", "hidden": 16},
                      {"hparam/val_loss": logged[keys[1]][-1]})
    w.close()
    return logged


def keras_style_run(logdir: Path, epochs: int = 2) -> dict[str, list[float]]:
    """The tags and folders Keras 3's TensorBoard(update_freq="batch") callback writes
    (`train/epoch_loss` and `validation/epoch_loss` at the epoch counted from 0,
    `train/batch_loss` at the iteration, `validation/evaluation_loss_vs_iterations` at the
    iteration of the validation), through torch's SummaryWriter (Keras' own needs
    TensorFlow's writer, which this project does not install)."""
    from torch.utils.tensorboard import SummaryWriter
    train, val = (SummaryWriter(str(logdir / d)) for d in ("train", "validation"))
    logged: dict[str, list[float]] = {"batch_loss": [], "train": [], "val": []}
    losses: list[float] = []

    def on_step(step: int, loss: float) -> None:
        train.add_scalar("batch_loss", loss, step)
        logged["batch_loss"].append(f32(loss))
        losses.append(loss)

    def on_epoch(epoch: int, step: int, vl: float, va: float, lr: float) -> None:
        train.add_scalar("epoch_loss", sum(losses) / len(losses), epoch)
        val.add_scalar("epoch_loss", vl, epoch)
        val.add_scalar("evaluation_loss_vs_iterations", vl, step)
        logged["train"].append(f32(sum(losses) / len(losses)))
        logged["val"].append(f32(vl))
        losses.clear()

    sgd_loop(epochs, on_step, on_epoch)
    train.close()
    val.close()
    return logged


def transformers_run(output_dir: Path, epochs: int = 3, eval_steps: int | None = None
                     ) -> dict[str, Any]:
    """transformers' Trainer with `report_to=["tensorboard"]`, evaluating every epoch,
    `load_best_model_at_end=True`, then `trainer.evaluate(test_set)`, which logs `eval/loss`
    again at the last step; with `eval_steps`, evaluating every that many steps instead (and
    no final evaluate). The model is a plain MLP on breast_cancer (no download). Its
    TensorBoard run is under `output_dir/runs`. Returns the trainer's `log_history` and the
    final evaluate()'s metrics."""
    from transformers import Trainer, TrainingArguments

    xt, yt, xv, yv, xs, ys = breast_cancer_tensors()

    class Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
            self.x, self.y = x, y

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"x": self.x[i], "labels": self.y[i]}

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(),
                                           torch.nn.Linear(16, 2))

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            out = self.net(x)
            return {"loss": torch.nn.functional.cross_entropy(out, labels), "logits": out}

    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(output_dir), report_to=["tensorboard"], num_train_epochs=epochs,
        per_device_train_batch_size=32, per_device_eval_batch_size=256, learning_rate=0.05,
        optim="sgd", lr_scheduler_type="constant", logging_steps=5, use_cpu=True,
        disable_tqdm=True, seed=0,
        **({"eval_strategy": "epoch", "save_strategy": "epoch", "save_total_limit": 1,
            "load_best_model_at_end": True} if eval_steps is None else
           {"eval_strategy": "steps", "eval_steps": eval_steps, "save_strategy": "no"}))
    trainer = Trainer(model=Model(), args=args, train_dataset=Rows(xt, yt),
                      eval_dataset=Rows(xv, yv))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
        if eval_steps is not None:
            return {"log_history": trainer.state.log_history}
        final = trainer.evaluate(Rows(xs, ys))
    return {"log_history": trainer.state.log_history[:-1], "final": final}


def keras_csv_run(path: Path, epochs: int = 4) -> dict[str, Any]:
    """Keras 3 (torch backend) fitting an MLP 16 on breast_cancer with its CSVLogger writing
    `path` (`epoch` counted from 0, then the logs' keys). Returns Keras' own history (by
    metric, per epoch) and `more(n)`, which trains n epochs more, appending to the log."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    xt, yt, xv, yv, _, _ = (t.numpy() for t in breast_cancer_tensors())
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history: dict[str, list[float]] = {}
    done = 0

    def more(n: int) -> None:
        nonlocal done
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2's copy keyword
            fit = model.fit(xt, yt, validation_data=(xv, yv), batch_size=32, verbose=0,
                            initial_epoch=done, epochs=done + n,
                            callbacks=[keras.callbacks.CSVLogger(str(path), append=done > 0)])
        for k, values in fit.history.items():
            history.setdefault(k, []).extend(values)
        done += n

    more(epochs)
    return {"history": history, "more": more}
