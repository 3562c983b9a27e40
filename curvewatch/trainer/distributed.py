"""Training under torchrun: one job of N processes writes one run, from rank 0.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `Job.from_env` joins the process group (gloo for
CPU tensors, nccl for CUDA ones). How the work is shared, and why the result equals one process's:
- Every process holds the whole dataset and draws the same permutation each epoch. Each
  global batch of --batch-size rows is split across the processes (rank r takes rows
  r, r+N, ...), so there is no sampler padding and nothing is counted twice.
- Each process scales its mean loss by (its rows * N / the batch's rows) before backward, so
  DDP's average of the gradients is the gradient of the whole batch's mean loss, uneven last
  batch included: the steps are those of one process over the same data.
- Epoch means come from one all_reduce (SUM) per epoch of each process's summed train, val
  and test losses and correct counts; validation rows are split into contiguous shares.
  Gradient norms need none: DDP has averaged the gradients when backward returns.
- The stop decision (diagnosis, STOP file, SIGTERM, Ctrl-C) is combined every epoch with one
  all_reduce (MAX), so all processes leave after the same epoch; rank 0 writes the run, its
  checkpoints and its final state, and hands a resume's checkpoint to the others.
"""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError

#: Environment variables torchrun sets for each worker.
RANK, WORLD_SIZE, LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"
RESTART_COUNT, LAUNCH_ID = "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_RUN_ID"


def launched_by_torchrun() -> bool:
    """Whether this process is one of several workers started by torchrun."""
    return int(os.environ.get(WORLD_SIZE) or 1) > 1


@dataclass(frozen=True)
class Shard:
    """Which rows of each batch this process trains on: rank r of `world` takes r, r+world, ..."""

    rank: int
    world: int

    def batch_positions(self, n: int, batch_size: int) -> tuple[torch.Tensor, list[int]]:
        """(positions into an epoch's permutation this process trains on, in step order;
        each step's count of them). Every process must get at least one row a step."""
        starts = range(0, n, batch_size)
        last = n - batch_size * (len(starts) - 1)
        if min(last, batch_size) < self.world:  # judged alike on every rank: all refuse
            raise ConfigError(f"with {self.world} processes every batch needs at least "
                              f"{self.world} rows, but the last batch of an epoch has {last} "
                              f"({n} training rows, batch_size {batch_size}); choose another "
                              "batch_size")
        parts = [torch.arange(s, min(n, s + batch_size))[self.rank::self.world] for s in starts]
        return torch.cat(parts), [len(p) for p in parts]

    def rows(self, n: int) -> tuple[int, int]:
        """This process's contiguous share [lo, hi) of n evaluation rows."""
        return self.rank * n // self.world, (self.rank + 1) * n // self.world


def _attempt_store(world: int) -> Any:
    """The rendezvous store of this attempt of the job, or None for env:// as usual.

    torchrun's agent keeps one store across restarts (--max-restarts), while torch expects a
    fresh one per attempt: restarted workers read the dead ones' gloo addresses and hang in
    init_process_group (seen with torch 2.13: "Connection refused" from the new rank 1, then
    a hang). A key prefix per attempt keeps each attempt's addresses apart."""
    import torch.distributed as dist

    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                         is_master=False)
    return dist.PrefixStore(f"curvewatch/attempt_{os.environ.get(RESTART_COUNT) or 0}", base)


class Job:
    """This process's place in a torchrun job, and the few collectives the trainer makes."""

    def __init__(self, rank: int, world: int, local_rank: int, backend: str):
        self.rank, self.world, self.local_rank, self.backend = rank, world, local_rank, backend
        self.cpu = torch.device("cpu")  # the plan travels through gloo
        self.shard = Shard(rank, world)
        self.stop_reason: str | None = None  # this process's own SIGTERM or Ctrl-C
        self._plan_sent = False

    @classmethod
    def from_env(cls) -> "Job":
        """Join the job's process group: gloo for CPU tensors, plus nccl for CUDA ones where
        there is a GPU (the device is known only once rank 0 has read a resumed config)."""
        import torch.distributed as dist

        rank, world = int(os.environ[RANK]), int(os.environ[WORLD_SIZE])
        local = int(os.environ.get(LOCAL_RANK) or 0)
        backend = "gloo"
        if torch.cuda.is_available():  # the same string on every process of a node
            backend = "cpu:gloo,cuda:nccl"
            if local < torch.cuda.device_count():  # more processes than GPUs: Job.device
                torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend, store=_attempt_store(world), rank=rank,
                                    world_size=world)
        return cls(rank, world, local, backend)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def restart(self) -> int:
        """How often torchrun has restarted the job's workers (--max-restarts)."""
        return int(os.environ.get(RESTART_COUNT) or 0)

    @property
    def launch_id(self) -> str | None:
        """torchrun's id of this job, the same across its restarts (--standalone draws one;
        otherwise it is --rdzv-id, whose default 'none' names no job in particular)."""
        value = os.environ.get(LAUNCH_ID)
        return value if value and value != "none" else None

    def describe(self) -> dict[str, Any]:
        """What run.json's model.distributed records; `launch_id` finds the run on a restart."""
        return {"world_size": self.world, "backend": self.backend, "launch_id": self.launch_id}

    def find_run(self, runs_dir: Path) -> Path | None:
        """The run an earlier attempt of this job created (torchrun restarted it), if any."""
        from curvewatch.tracking import list_runs

        if self.launch_id is None:
            return None
        for info in list_runs(runs_dir):  # newest first
            job = info.model.get("distributed")
            if isinstance(job, dict) and job.get("launch_id") == self.launch_id:
                return info.path
        return None

    def device(self, name: torch.device) -> torch.device:
        """The device of this process: on CUDA, the GPU of its local rank."""
        if name.type != "cuda":
            return name
        if self.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"this node runs more processes than its "
                              f"{torch.cuda.device_count()} GPUs (local rank "
                              f"{self.local_rank}); use --nproc-per-node <= the GPUs, or "
                              "--device cpu")
        return torch.device("cuda", self.local_rank)

    def sum_(self, t: torch.Tensor) -> None:
        import torch.distributed as dist
        dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def wrap(self, model: torch.nn.Module, every_param_used: bool) -> torch.nn.Module:
        """The model under DDP (which averages the gradients during backward). The default
        gradient_as_bucket_view=False copies the averages back into each .grad, so the
        trainer's flat gradient buffer keeps holding them."""
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return DDP(model, device_ids=ids, find_unused_parameters=not every_param_used)

    # ---------------------------------------------------------------- stopping together
    def catch_signals(self) -> None:
        """SIGTERM and a first Ctrl-C ask for a stop after this epoch on every process
        (torchrun forwards both to each worker); a second Ctrl-C interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return

        def asked(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT and self.stop_reason is not None:
                raise KeyboardInterrupt
            self.stop_reason = self.stop_reason or (
                "interrupted (Ctrl-C)" if signum == signal.SIGINT else "stopped by SIGTERM")
        signal.signal(signal.SIGTERM, asked)
        signal.signal(signal.SIGINT, asked)

    def stop_together(self, stop: bool) -> bool:
        """Whether any process wants to stop after this epoch (one all_reduce, MAX)."""
        import torch.distributed as dist
        flag = torch.tensor([int(stop or self.stop_reason is not None)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    # ---------------------------------------------------------------- the plan of the job
    def send_plan(self, plan: dict[str, Any] | None) -> None:
        """Rank 0: what the other processes train (config, first epoch, checkpoint), or None
        when rank 0 refused the job and they should end too."""
        if not self._plan_sent:
            self._plan_sent = True
            self._broadcast(plan)

    def receive_plan(self) -> dict[str, Any] | None:
        return self._broadcast(None)

    def _broadcast(self, obj: Any) -> Any:
        import torch.distributed as dist
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.cpu)
        return box[0]

    def close(self) -> None:
        """Leave the job together: a rank that destroyed its group and exited while another
        was still tearing down gloo's pairs aborted it ("terminate called without an active
        exception", exit -6, seen once in CI after a STOP); the barrier lines them up first."""
        import torch.distributed as dist
        if not dist.is_initialized():
            return
        try:
            dist.barrier()
        except RuntimeError:  # a peer is gone (killed): nothing to line up with
            pass
        dist.destroy_process_group()
