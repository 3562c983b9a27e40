"""What `python -m trainer import` costs beyond reading the event files: the whole import of a
log directory (read, map tags, build the rows, write the run folder) against tensorboard's
EventAccumulator reading the same files alone, the floor for any importer built on it.

    .venv/bin/python bench/tensorboard_import.py [--steps 100000] [--per-epoch 100] [--rounds 5]

The log is one run as most PyTorch loops write it: the training loss and the lr every step,
validation loss and accuracy every --per-epoch steps. Rounds alternate; medians are printed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curvewatch.tracking.import_runs import write_run  # noqa: E402
from curvewatch.tracking.log_import import plan_import  # noqa: E402


def write_log(logdir: Path, steps: int, per_epoch: int) -> None:
    from torch.utils.tensorboard import SummaryWriter
    w = SummaryWriter(str(logdir / "run"))
    for step in range(1, steps + 1):
        w.add_scalar("Loss/train", 1.0 / step, step)
        w.add_scalar("lr", 1e-3, step)
        if step % per_epoch == 0:
            w.add_scalar("Loss/val", 2.0 / step, step)
            w.add_scalar("Accuracy/val", 0.9, step)
    w.close()


def read_only(logdir: Path) -> float:
    from tensorboard.backend.event_processing import event_accumulator as ea
    start = time.perf_counter()
    acc = ea.EventAccumulator(str(logdir / "run"), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    for tag in acc.Tags()["scalars"]:
        acc.Scalars(tag)
    return time.perf_counter() - start


def full_import(logdir: Path, runs_dir: Path) -> tuple[float, int]:
    start = time.perf_counter()
    plans = plan_import(logdir, runs_dir)
    for plan in plans:
        write_run(runs_dir, plan)
    return time.perf_counter() - start, sum(len(p.rows) for p in plans)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--per-epoch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp) / "logs"
        write_log(logdir, args.steps, args.per_epoch)
        reads, imports, rows = [], [], 0
        for i in range(args.rounds):
            reads.append(read_only(logdir))
            t, rows = full_import(logdir, Path(tmp) / f"runs{i}")
            imports.append(t)
        r, m = statistics.median(reads), statistics.median(imports)
        print(f"{args.steps:,} steps ({2 * args.steps + 2 * args.steps // args.per_epoch:,} "
              f"points) -> {rows:,} epochs, {args.rounds} rounds")
        print(f"EventAccumulator read alone {r:6.2f} s | whole import {m:6.2f} s | "
              f"ratio {m / r:.2f}x")


if __name__ == "__main__":
    main()
