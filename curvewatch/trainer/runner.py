"""Runs a training job into a run folder: validation first, then epochs, checkpoints, stop
requests, early stopping and the final state. Used by foreground, detached and resumed runs.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable

import torch

from curvewatch.tracking import BEST, LAST, Run, load_checkpoint, save_checkpoint
from curvewatch.tracking.writer import error_tail

from .config import MODELS, TrainConfig, build_thresholds, validate
from .data import load_dataset
from .distributed import Job
from .errors import ConfigError
from .launch import SigtermStop
from .loop import Trainer, pick_device
from .models import model_summary


def prepare(cfg: TrainConfig, job: Job | None = None) -> Trainer:
    """Load data and build model and optimizer; raises ConfigError before any folder exists.
    Under torchrun (`job`) the trainer trains this process's share of each batch."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    data = load_dataset(cfg)
    if cfg.label_noise > 0 and data.n_classes < 2:
        raise ConfigError("label_noise needs at least 2 classes")
    device = pick_device(cfg.device)
    return Trainer(cfg, data, job.device(device) if job else device, job)


def describe(trainer: Trainer) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data and model summaries written into run.json."""
    data = {**trainer.data.summary(), "batch_size": trainer.cfg.batch_size,
            "steps_per_epoch": trainer.steps_per_epoch,
            **({} if trainer.chance_loss is None else {"chance_loss": trainer.chance_loss}),
            "split_index": {"train": trainer.data.train.index.tolist(),
                            "val": trainer.data.val.index.tolist()}}
    model = {**model_summary(trainer.model, trainer.cfg), "device": str(trainer.device),
             **({"distributed": trainer.job.describe()} if trainer.job else {})}
    return data, model


#: last.pt is refreshed at most this often (and always at the end of a run), so that
#: checkpointing costs well under 1% of training however short an epoch is. After kill -9,
#: resume replays the epochs trained since (at most this many seconds), without re-logging them.
CHECKPOINT_SECONDS = 2.0
CHECKPOINT_ENV = "CURVEWATCH_CHECKPOINT_SECONDS"
#: How often a running trainer refreshes the diagnosis flags in status.json ...
FLAGS_SECONDS = 2.0
#: ... and at most this share of the run's time goes into it: diagnosing a history takes
#: longer as it grows (about 20 ms at 3,000 epochs), so a long run refreshes less often.
FLAGS_SHARE = 0.005
#: After an epoch the trainer looks for a STOP file at most this often (the look, a stat, cost
#: 70-80 us right after a training epoch: 0.4% of a 19 ms MLP epoch). An epoch this long or
#: longer is always followed by a look, so a STOP ends the run after the epoch it lands in, as
#: it always did; a run of faster epochs ends within this time plus one epoch. SIGTERM is
#: seen after every epoch, and a paced wait (--min-epoch-seconds) looks every 0.1 s.
STOP_LOOK_SECONDS = 0.25


def checkpoint_interval() -> float:
    """Seconds between last.pt refreshes: $CURVEWATCH_CHECKPOINT_SECONDS or the default."""
    raw = os.environ.get(CHECKPOINT_ENV)
    try:
        value = float(raw) if raw else CHECKPOINT_SECONDS
    except ValueError:
        raise ConfigError(f"{CHECKPOINT_ENV} must be a number of seconds >= 0, got {raw!r}") \
            from None
    if not value >= 0:
        raise ConfigError(f"{CHECKPOINT_ENV} must be a number of seconds >= 0, got {raw!r}")
    return value


class _Checkpoints:
    """Decides when to write best.pt and last.pt; best weights wait in memory until then.

    The first epoch is checkpointed at once (a resume after a crash then never starts from
    scratch, and a checkpoint that cannot be written fails the run early), later ones at most
    every `every` seconds. best.pt holds the best epoch's weights and record (not the
    optimizer: last.pt is the resumable one), copied into buffers that are allocated once, so
    an improving epoch costs one fused copy rather than fresh clones."""

    def __init__(self, trainer: Trainer, run_dir: Any, every: float):
        self.trainer, self.run_dir, self.every = trainer, run_dir, every
        live = trainer.model.state_dict(keep_vars=True)
        self.names, self.live = list(live), list(live.values())
        self.copies: list[torch.Tensor] = []
        self.best: dict[str, Any] | None = None  # the best epoch not yet written to best.pt
        self.last_write = -math.inf

    def note_best(self, epoch: int, record: dict[str, Any], best_val_loss: float) -> None:
        with torch.no_grad():
            if self.copies:
                torch._foreach_copy_(self.copies, self.live)
            else:
                self.copies = [v.detach().clone() for v in self.live]
        self.best = {"epoch": epoch, "step": self.trainer.step, "record": record,
                     "best_val_loss": best_val_loss}

    def due(self, force: bool) -> bool:
        return force or time.monotonic() - self.last_write >= self.every

    def write(self, epoch: int, record: dict[str, Any], best_val_loss: float | None) -> None:
        """Write best.pt (if it changed since the last write), then last.pt."""
        if self.best is not None:
            save_checkpoint(self.run_dir, BEST,
                            {**self.best, "config": self.trainer.cfg.to_dict(),
                             "model": dict(zip(self.names, self.copies, strict=True))},
                            durable=False)
            self.best = None
        save_checkpoint(self.run_dir, LAST, self.trainer.state(epoch, record, best_val_loss),
                        durable=False)
        self.last_write = time.monotonic()


class _Diagnosis:
    """The run's diagnosis of its history so far, made at most once an epoch and shared by
    early stopping (every epoch, with --early-stop) and the flags written into status.json
    (every FLAGS_SECONDS, less often once diagnosing the history takes more than
    FLAGS_SHARE of that time, and at the end, so a runs listing shows them without reading
    any metrics file)."""

    def __init__(self, cfg: TrainConfig, chance_loss: float | None = None):
        self.thresholds = build_thresholds(cfg)  # validated before anything starts
        self.kinds = tuple(cfg.early_stop)
        self.chance_loss = chance_loss
        self.next = time.monotonic() + FLAGS_SECONDS  # one epoch gives nothing to diagnose
        self._of: tuple[int, list[Any]] = (-1, [])

    def findings(self, history: list[dict[str, Any]]) -> list[Any]:
        if self._of[0] != len(history):  # history grows by one record an epoch
            import pandas as pd

            from curvewatch.diagnosis import diagnose
            self._of = (len(history), diagnose(pd.DataFrame.from_records(history),
                                               self.thresholds, best_checkpoint=BEST,
                                               chance_loss=self.chance_loss))
        return self._of[1]

    def stop_finding(self, history: list[dict[str, Any]]) -> Any:
        """The finding that should stop the run now, or None (always None without
        --early-stop)."""
        if not self.kinds:
            return None
        from curvewatch.diagnosis import stopping_finding
        return stopping_finding(self.findings(history), self.kinds)

    def flags_due(self, final: bool) -> bool:
        return final or time.monotonic() >= self.next

    def write_flags(self, run: Run, history: list[dict[str, Any]]) -> None:
        began = time.monotonic()
        run.update_status(flags=[{"kind": f.kind, "severity": f.severity,
                                  "start_epoch": f.start_epoch, "end_epoch": f.end_epoch}
                                 for f in self.findings(history)])
        self.next = began + max(FLAGS_SECONDS, (time.monotonic() - began) / FLAGS_SHARE)


def run_epochs(trainer: Trainer, run: Run, *, start_epoch: int = 1,
               best_val_loss: float | None = None, replay_until: int = 0,
               progress: bool = False, quiet: bool = False,
               checkpoint_seconds: float | None = None,
               on_epoch: Callable[[dict[str, Any]], str | None] | None = None,
               job: Job | None = None) -> str:
    """Train from `start_epoch` to cfg.epochs writing into `run`; returns the final state.
    Epochs up to `replay_until` are already in metrics.jsonl (trained again after a crash to
    rebuild the weights) and are not logged twice. Never raises for a failure inside
    training: it is recorded as state `failed`. `on_epoch(record)`, called after each new
    epoch that nothing else ended, may return a reason to stop there (state `stopped`).
    Under torchrun (`job`, rank 0) every process leaves after the epoch any of them stops."""
    cfg = trainer.cfg
    stops = _StopAsks(run, SigtermStop(), STOP_LOOK_SECONDS)
    history: list[dict[str, Any]] = _history_records(run)
    diagnosis = _Diagnosis(cfg, trainer.chance_loss)
    ckpts = _Checkpoints(trainer, run.path, checkpoint_interval()
                         if checkpoint_seconds is None else checkpoint_seconds)
    bar = None if quiet else _progress(cfg, start_epoch, progress)
    step_logger = _step_logger(run, cfg.log_every_steps)
    state, kwargs = "completed", {}
    try:
        if job is not None:
            _join(trainer, job)
        for epoch in range(start_epoch, cfg.epochs + 1):
            began = time.monotonic()
            record, layers = trainer.train_epoch(epoch, step_logger)
            vl, replay = record["val_loss"], epoch <= replay_until
            if math.isfinite(vl) and (best_val_loss is None or vl < best_val_loss):
                best_val_loss = vl
                ckpts.note_best(epoch, record, vl)
            state, kwargs = _verdict(record, diagnosis, history, stops, replay)
            if on_epoch is not None and state == "completed" and not replay \
                    and (reason := on_epoch(record)):
                state, kwargs = "stopped", {"stop_reason": reason}
            final = state != "completed" or epoch == cfg.epochs
            if ckpts.due(final):  # checkpoints before the metrics line: see docs/run-format.md
                ckpts.write(epoch, record, best_val_loss)
            if not replay:
                run.log_epoch(layers=layers, **record)
                if diagnosis.flags_due(final):
                    diagnosis.write_flags(run, history)
                if not quiet:
                    _report(bar, record, cfg)
            if cfg.min_epoch_seconds > 0 and state == "completed" and not replay \
                    and epoch < cfg.epochs:
                state, kwargs = _pace(began + cfg.min_epoch_seconds, stops)
                if state != "completed":  # stopped during the wait: this epoch is the last
                    ckpts.write(epoch, record, best_val_loss)
                    diagnosis.write_flags(run, history)
            if job is not None and job.stop_together(state != "completed") \
                    and state == "completed" and epoch < cfg.epochs:
                # a signal to this or another process of the job: this epoch is the last
                state = "stopped"
                kwargs = {"stop_reason": job.stop_reason or "stopped by a signal to another "
                                                            "process of the job"}
                ckpts.write(epoch, record, best_val_loss)
                diagnosis.write_flags(run, history)
            if state != "completed":
                break
    except KeyboardInterrupt:
        state, kwargs = "stopped", {"stop_reason": "interrupted (Ctrl-C)"}
    except Exception as exc:  # the run's failure is data: record it, don't hang as "running"
        state, kwargs = "failed", {"error": error_tail(exc)}
    finally:
        if bar is not None:
            bar.close()
    try:
        run.finish(state, **kwargs)
    except Exception as exc:
        run.close()
        print(f"could not record the final state {state!r}: {exc}", file=sys.stderr)
        return "failed"
    if not quiet:
        _say_end(run, state, kwargs)
    return state


def _join(trainer: Trainer, job: Job) -> None:
    """Wrap the model in DDP (a collective: every process does it after the plan) and let
    SIGTERM and Ctrl-C ask for a stop that all processes make together."""
    trainer.net = job.wrap(trainer.model, trainer.cfg.model in MODELS)
    job.catch_signals()


def within_job(lead: Callable[[Job], int]) -> int:
    """Run a command as one process of a torchrun job: rank 0 calls `lead(job)`, which sends
    the plan (`Job.send_plan`) before training; the other processes follow that plan. A rank
    0 that ends before sending it (bad input) ends the others too."""
    job = Job.from_env()
    try:
        if not job.is_main:
            return follow(job)
        try:
            return lead(job)
        finally:
            job.send_plan(None)
    finally:
        job.close()


def follow(job: Job) -> int:
    """A process other than rank 0: train the epochs rank 0 plans, writing nothing."""
    plan = job.receive_plan()
    if plan is None:
        print(f"rank {job.rank}: rank 0 did not start the run (its error says why)",
              file=sys.stderr)
        return 2
    cfg = validate(plan["config"])
    trainer = prepare(cfg, job)
    if plan["state"] is not None:
        trainer.load_state(plan["state"])
    _join(trainer, job)
    for epoch in range(plan["start"], cfg.epochs + 1):
        trainer.train_epoch(epoch)
        if job.stop_together(False):
            break
    return 0


def plan_of(cfg: TrainConfig, start: int = 1, state: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """What rank 0 sends the other processes: the config, the first epoch, last.pt."""
    return {"config": cfg.to_dict(), "start": start, "state": state}


def _verdict(record: dict[str, Any], diagnosis: _Diagnosis,
             history: list[dict[str, Any]], stops: _StopAsks, replay: bool
             ) -> tuple[str, dict[str, Any]]:
    """The state the run is in after this epoch: completed (go on), failed, early_stopped or
    stopped, with the reason."""
    epoch = record["epoch"]
    if not math.isfinite(record["train_loss"]):
        return "failed", {"stop_reason": "divergence",
                          "error": f"training loss became {record['train_loss']} at epoch "
                                   f"{epoch}: the run diverged; lower the learning rate or "
                                   "clip gradients"}
    if replay:
        return "completed", {}
    history.append(record)
    finding = diagnosis.stop_finding(history)
    if finding is not None:
        return "early_stopped", {"stop_reason": finding.message,
                                 "stopped_by": finding.to_dict()}
    return stops.check(look=stops.look_due(time.monotonic()))


class _StopAsks:
    """A stop asked of a run: SIGTERM, or a STOP file looked for at most every `every`
    seconds after an epoch (STOP_LOOK_SECONDS) and on every `check()` of its own."""

    def __init__(self, run: Run, flag: SigtermStop, every: float):
        self.run, self.flag, self.every = run, flag, every
        self.next_look = -math.inf

    def look_due(self, now: float) -> bool:
        """Whether an epoch that ended at `now` (time.monotonic) is followed by a look."""
        if now < self.next_look:
            return False
        self.next_look = now + self.every
        return True

    def check(self, *, look: bool = True) -> tuple[str, dict[str, Any]]:
        """("stopped", reason) once SIGTERM or, when `look`, a STOP file asked for it, else
        ("completed", {})."""
        if self.flag.reason or (look and self.run.stop_requested()):
            return "stopped", {"stop_reason": self.flag.reason or "stop requested (STOP file)"}
        return "completed", {}


def _pace(until: float, stops: _StopAsks) -> tuple[str, dict[str, Any]]:
    """Wait until time.monotonic() reaches `until` (--min-epoch-seconds), watching for a stop
    request so that one made during the wait ends the run without another epoch."""
    while True:
        state = stops.check()
        left = until - time.monotonic()
        if state[0] != "completed" or left <= 0:
            return state
        time.sleep(min(left, 0.1))


def _history_records(run: Run) -> list[dict[str, Any]]:
    if run.last_epoch == 0:  # a new run: spare the pandas parse
        return []
    from curvewatch.tracking import read_history
    return read_history(run.path).to_dict("records")


def _step_logger(run: Run, every: int) -> Callable[..., None] | None:
    if every <= 0:
        return None

    def log(step: int, loss: torch.Tensor, grad_norm: torch.Tensor, lr: float) -> None:
        if step % every == 0:
            run.log_step(step, loss=float(loss), grad_norm=float(grad_norm), lr=lr)
    return log


def _progress(cfg: TrainConfig, start_epoch: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.epochs, initial=start_epoch - 1, unit="epoch", dynamic_ncols=True)


def _report(bar: Any, record: dict[str, Any], cfg: TrainConfig) -> None:
    score = "val_acc" if "val_acc" in record else "val_r2"
    if bar is not None:
        bar.set_postfix(train_loss=f"{record['train_loss']:.4f}",
                        val_loss=f"{record['val_loss']:.4f}",
                        **{score: f"{record[score]:.3f}"}, refresh=False)
        bar.update(1)
    else:
        print(f"epoch {record['epoch']}/{cfg.epochs} train_loss {record['train_loss']:.4f} "
              f"val_loss {record['val_loss']:.4f} {score} {record[score]:.3f} "
              f"lr {record['lr']:.3g} ({record['epoch_seconds']:.2f}s)", flush=True)


def _say_end(run: Run, state: str, kwargs: dict[str, Any]) -> None:
    st = run.status
    best = st.get("best_val_loss")
    best_txt = f"; best val_loss {best:.4f} at epoch {st.get('best_epoch')}" \
        if isinstance(best, float) else ""
    reason = kwargs.get("stop_reason") or ""
    if state == "failed" and kwargs.get("error"):
        reason = kwargs["error"].strip().splitlines()[-1]
    print(f"run {run.id} {state} after epoch {st.get('epoch')}{best_txt}"
          f"{': ' + reason if reason else ''}", flush=True)


def resume_state(run_dir: Any) -> dict[str, Any]:
    return load_checkpoint(run_dir, LAST)
