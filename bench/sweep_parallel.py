"""Wall time of a 4-run sweep (a 2x2 grid) run two at a time (--parallel 2, each member on
cores/2 torch threads) against the same sweep one run after another: with torch's default
threads (--parallel 1, what a user gets) and with the same thread count per run as the
parallel sweep (--parallel 1 --threads cores/2, which isolates the gain of running two at a
time from the cost of torch's default threading on a busy machine). Each goes through
`python -m trainer sweep` as a user would run it.

    .venv/bin/python bench/sweep_parallel.py [--epochs 15] [--rounds 1]

Prints each sweep's wall time and the ratios parallel / sequential (below 1: parallel wins).
Rounds rotate the order so machine noise hits all alike; ratios are of medians.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = ["--grid", "lr=1e-3,3e-3", "--grid", "batch_size=32,64"]


def sweep_seconds(parallel: int, threads: int, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "curvewatch.trainer", "sweep", "--runs-dir", runs,
               "--dataset", "digits", "--hidden", "256,128", "--epochs", str(epochs), *GRID,
               "--parallel", str(parallel), "--threads", str(threads)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"sweep --parallel {parallel} --threads {threads} failed:\n"
                     f"{done.stdout}\n{done.stderr}")
        return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    half = max(1, cores // 2)
    print(f"4-run sweep (digits MLP 256,128, {a.epochs} epochs each) on {cores} cores")
    variants = {"sequential, torch default threads": (1, 0),
                f"sequential, {half} thread(s) per run": (1, half),
                f"two at a time, {half} thread(s) per run": (2, 0)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(a.rounds):
        for name in names[r % 3:] + names[:r % 3]:
            s = sweep_seconds(*variants[name], a.epochs)
            times[name].append(s)
            print(f"  round {r + 1}: {name:<36} {s:6.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    par = med[names[2]]
    print(f"ratio parallel/sequential: {par / med[names[0]]:.2f}x against torch's default "
          f"threads, {par / med[names[1]]:.2f}x against the same threads per run")


if __name__ == "__main__":
    main()
