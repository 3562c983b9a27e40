"""Wall time of a 4-run sweep (a 2x2 grid) run two at a time (--parallel 2, each member on
cores/2 torch threads) against the same sweep one run after another (--parallel 1, torch's
default threads), each through `python -m trainer sweep` as a user would run it.

    .venv/bin/python bench/sweep_parallel.py [--epochs 40] [--rounds 1]

Prints each sweep's wall time and the ratio parallel / sequential (below 1: parallel wins).
Rounds alternate the two orders so machine noise hits both alike; the ratio is of medians.
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


def sweep_seconds(parallel: int, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "trainer", "sweep", "--runs-dir", runs,
               "--dataset", "digits", "--hidden", "256,128", "--epochs", str(epochs), *GRID,
               "--parallel", str(parallel)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"sweep --parallel {parallel} failed:\n{done.stdout}\n{done.stderr}")
        return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"4-run sweep (digits MLP 256,128, {a.epochs} epochs each) on {cores} cores")
    times: dict[int, list[float]] = {1: [], 2: []}
    for r in range(a.rounds):
        for parallel in ((1, 2) if r % 2 == 0 else (2, 1)):
            s = sweep_seconds(parallel, a.epochs)
            times[parallel].append(s)
            print(f"  round {r + 1}: --parallel {parallel}: {s:6.1f} s", flush=True)
    seq, par = statistics.median(times[1]), statistics.median(times[2])
    print(f"one after another: {seq:.1f} s   two at a time: {par:.1f} s   "
          f"ratio parallel/sequential: {par / seq:.2f}x")


if __name__ == "__main__":
    main()
