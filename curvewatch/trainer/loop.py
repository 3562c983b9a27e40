"""The training loop: train() mode for training steps, eval() + inference_mode for validation,
per-epoch metrics accumulated on the device with one host sync per epoch.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .config import MODELS, TrainConfig
from .data import CLASSIFICATION, Dataset, Split
from .distributed import Job
from .errors import ConfigError
from .gradstats import grad_stats
from .models import build_model
from .schedule import LRSchedule, build_optimizer

EVAL_BATCH = 4096


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but torch sees no CUDA device; use auto "
                          "or cpu")
    return torch.device(name)


@dataclass
class Tensors:
    x: torch.Tensor
    y: torch.Tensor
    sst: float = 1.0  # a regression target's total sum of squares, the denominator of R^2

    @classmethod
    def of(cls, split: Split, device: torch.device) -> "Tensors":
        x, y = torch.as_tensor(split.x, device=device), torch.as_tensor(split.y, device=device)
        if not y.is_floating_point():
            return cls(x, y)
        yd = y.double()
        return cls(x, y, max(float(((yd - yd.mean()) ** 2).sum()), 1e-12))

    def __len__(self) -> int:
        return len(self.y)


class Trainer:
    """Owns the model, optimizer, schedule and data tensors of one run, and trains epochs."""

    def __init__(self, cfg: TrainConfig, data: Dataset, device: torch.device,
                 job: Job | None = None):
        self.cfg, self.data, self.device, self.job = cfg, data, device, job
        torch.manual_seed(cfg.seed)
        self.classify = data.task == CLASSIFICATION
        self.model = build_model(cfg, data.input_shape, data.n_classes if self.classify else 1)
        self.model.to(device)
        self.net: nn.Module = self.model  # what training steps call: DDP's wrapper under torchrun
        loss_cls = nn.CrossEntropyLoss if self.classify else nn.MSELoss
        self.loss_fn, self.loss_sum_fn = loss_cls(), loss_cls(reduction="sum")
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.l1_params = [p for n, p in self.model.named_parameters()
                          if p.requires_grad and p.dim() > 1]  # weights, not biases
        self.optimizer = build_optimizer(cfg, self.params)
        self.schedule = LRSchedule(cfg, self.optimizer)
        self.shuffle = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        self.train_t = Tensors.of(data.train, device)
        self.val_t = Tensors.of(data.val, device)
        self.test_t = Tensors.of(data.test, device) if data.test is not None else None
        n, bs = len(self.train_t), cfg.batch_size
        self.steps_per_epoch = math.ceil(n / bs)
        whole = [min(bs, n - i * bs) for i in range(self.steps_per_epoch)]
        # Under torchrun this process trains on its share of each batch (distributed.py)
        self.positions, sizes = job.shard.batch_positions(n, bs) if job else (None, whole)
        self.bounds = [0, *itertools.accumulate(sizes)]
        self.batch_sizes = torch.tensor(sizes, dtype=torch.float32, device=device)
        self.loss_scale = [s * job.world / w for s, w in zip(sizes, whole, strict=True)] \
            if job else None
        # The built-in models use every parameter on every step; a user's model may not.
        self.grads = grad_stats(self.params, self.steps_per_epoch, cfg.model in MODELS)
        self.step = 0

    @property
    def chance_loss(self) -> float | None:
        """The loss of a model that has learned nothing: ln K for K classes (cross-entropy of
        a uniform guess), the training target's variance for MSE (guessing its mean); None
        when that is not positive (one class, a constant target)."""
        if self.classify:
            value = math.log(self.data.n_classes) if self.data.n_classes > 1 else 0.0
        else:
            value = float(self.data.train.y.astype("float64").var())
        return value if math.isfinite(value) and value > 0 else None

    # ------------------------------------------------------------------ one epoch
    def train_epoch(self, epoch: int,
                    on_step: Callable[..., None] | None = None
                    ) -> tuple[dict[str, Any], dict[str, float]]:
        """Train one epoch; return the epoch record and each parameter tensor's gradient norm
        (RMS over the epoch's steps, see gradstats)."""
        cfg, t, dev = self.cfg, self.train_t, self.device
        started = time.perf_counter()
        lr = self.schedule.begin_epoch(epoch)
        self.model.train()
        n = len(t)
        order = torch.randperm(n, generator=self.shuffle)
        if self.positions is not None:
            order = order[self.positions]
        order = order.to(dev)
        # Per-step values are kept as the tensors the step produced anyway (appending to a
        # list costs no kernel); they are stacked and reduced once at the end of the epoch.
        step_losses: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        clipped = torch.zeros(1, device=dev)  # 1-d: it joins the epoch's one packed tensor
        clip, want_total = cfg.clip_grad_norm, cfg.clip_grad_norm > 0 or on_step is not None
        for i in range(self.steps_per_epoch):
            idx = order[self.bounds[i]:self.bounds[i + 1]]
            xb, yb = t.x[idx], t.y[idx]
            out = self.net(xb)
            loss = self._loss(out, yb)
            # DDP averages over processes: weighting each share by its size makes that the
            # gradient of the whole batch's mean loss
            objective = loss if self.loss_scale is None else loss * self.loss_scale[i]
            if cfg.l1 > 0:
                objective = objective + cfg.l1 * sum(p.abs().sum() for p in self.l1_params)
            self.grads.zero_grad()
            objective.backward()
            total = self.grads.after_backward(i, want_total)
            if clip > 0:
                torch.nn.utils.clip_grads_with_norm_(self.params, clip, total)
                clipped += total > clip
            self.optimizer.step()
            step_losses.append(loss.detach())
            if self.classify:
                outputs.append(out.detach())
            self.step += 1
            if on_step is not None:
                on_step(self.step, loss, total, lr)
        step_totals, layer_norms = self.grads.end_epoch()
        # Sums on the device, divided on the host after the epoch's one sync. The train loss
        # is sample-weighted: each batch counts by its size, the last partial one included.
        loss_sum = (torch.stack(step_losses) * self.batch_sizes).sum()
        correct = (torch.cat(outputs).argmax(1) == t.y[order]).sum() if self.classify \
            else loss_sum
        sums = torch.stack([loss_sum, correct, *self._eval_sums(self.val_t),
                            *(self._eval_sums(self.test_t) if self.test_t is not None else ())])
        if self.job is not None:  # every process's sums, added up: exact epoch means
            self.job.sum_(sums)
        # one host sync for everything; the steps' norms are summed and maxed on the host
        packed = torch.cat([sums, clipped, step_totals, layer_norms]).tolist()
        k, steps = len(sums), self.steps_per_epoch
        train_loss, train_correct, val_loss, val_correct = packed[:4]
        n_clipped, totals = packed[k], packed[k + 1:k + 1 + steps]
        gsum, gmax = math.fsum(totals), _max(totals)
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, "step": self.step, "time": time.time(),
                  **self._pair("train", *self._scores(t, train_loss, train_correct)),
                  **self._pair("val", *self._scores(self.val_t, val_loss, val_correct)),
                  "grad_norm": gsum / steps, "grad_norm_max": gmax, "lr": lr,
                  "epoch_seconds": seconds, "samples_per_second": n / seconds if seconds else 0.0}
        if cfg.clip_grad_norm > 0:
            record["clipped_fraction"] = n_clipped / steps
        if self.test_t is not None:
            record.update(self._pair("test", *self._scores(self.test_t, *packed[4:6])))
        self.schedule.end_epoch(epoch, record["val_loss"])
        return record, dict(zip(self.names, packed[k + 1 + steps:], strict=True))

    def _scores(self, t: Tensors, loss_sum: float, correct: float) -> tuple[float, float]:
        """(mean loss, accuracy or R^2) of a split from its summed loss and correct count."""
        if self.classify:
            return loss_sum / len(t), correct / len(t)
        return loss_sum / len(t), 1 - loss_sum / t.sst

    def _pair(self, split: str, loss: float, score: float) -> dict[str, float]:
        return {f"{split}_loss": loss, f"{split}_{'acc' if self.classify else 'r2'}": score}

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(out if self.classify else out.squeeze(-1), y)

    @torch.inference_mode()
    def _eval_sums(self, t: Tensors) -> list[torch.Tensor]:
        """[summed loss, correct count] over a split (this process's share under torchrun)
        in eval() mode, on the device (the count is the loss sum again for regression)."""
        lo, hi = self.job.shard.rows(len(t)) if self.job is not None else (0, len(t))
        if lo == hi:
            return [torch.zeros((), device=self.device)] * 2
        was_training = self.model.training
        self.model.eval()
        losses, correct = [], []
        for i in range(lo, hi, EVAL_BATCH):
            xb, yb = t.x[i:min(i + EVAL_BATCH, hi)], t.y[i:min(i + EVAL_BATCH, hi)]
            out = self.model(xb)
            losses.append(self.loss_sum_fn(out if self.classify else out.squeeze(-1), yb))
            if self.classify:
                correct.append((out.argmax(1) == yb).sum())
        self.model.train(was_training)
        loss_sum = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        if not self.classify:
            return [loss_sum, loss_sum]
        return [loss_sum, correct[0] if len(correct) == 1 else torch.stack(correct).sum()]

    def evaluate(self, t: Tensors) -> tuple[float, float]:
        """(mean loss, accuracy or R^2) over a split, in eval() mode with inference_mode."""
        return self._scores(t, *torch.stack(self._eval_sums(t)).tolist())

    # ------------------------------------------------------------------ checkpoints
    def state(self, epoch: int, record: dict[str, Any], best_val_loss: float | None
              ) -> dict[str, Any]:
        """Everything `resume` needs, as tensors and plain containers (weights_only-loadable)."""
        state = {"epoch": epoch, "step": self.step, "record": record,
                 "best_val_loss": best_val_loss, "config": self.cfg.to_dict(),
                 "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                 "optimizer": _clone(self.optimizer.state_dict()),
                 "schedule": self.schedule.state_dict(),
                 "rng": {"torch": torch.get_rng_state(), "shuffle": self.shuffle.get_state()}}
        if self.device.type == "cuda":
            state["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state.get("schedule") or {})
        torch.set_rng_state(state["rng"]["torch"])
        self.shuffle.set_state(state["rng"]["shuffle"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step = int(state["step"])


def _max(values: list[float]) -> float:
    """max() that is NaN where any value is (as torch's max is; Python's depends on order)."""
    return math.nan if any(v != v for v in values) else max(values)


def _clone(obj: Any) -> Any:
    """Deep copy of the tensors in a state dict: a checkpoint written in the background must
    not see the next step's in-place updates (Adam's moments, say)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj
