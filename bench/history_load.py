"""Loading every history of a runs folder into DataFrames, against anchors on the same data in
the same run (rounds alternate, so a loaded machine slows every method alike). Usage:

    python bench/history_load.py [--runs 100] [--epochs 1000] [--rounds 5]

Each run has 8 metrics an epoch (plus the epoch and time that tracking.Run adds).
Methods, each loading all runs:
  plain   list_runs + HistoryReader(run).read() per run (read_history before its cache)
  cold    list_runs + read_history, no .metrics.arrow (pyarrow parse, cache written)
  warm    list_runs + read_history, .metrics.arrow present
  csv     pandas.read_csv of the same histories saved as CSV (the issue's anchor)
  bytes   the raw bytes of every metrics.jsonl (a floor)
  list    list_runs alone (the part of cold and warm that is not the histories)
list_runs' in-process memo of run.json/status.json is cleared before every round of every
method, so each pays for a full listing.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from curvewatch import tracking  # noqa: E402
from curvewatch.tracking.history_cache import CACHE_NAME  # noqa: E402
from curvewatch.tracking.jsonio import dumps  # noqa: E402


def make_runs(root: Path, n: int, epochs: int) -> list[Path]:
    """n finished runs; each metrics.jsonl holds the lines Run.log_epoch writes (the same
    encoder, written in one go: logging 100,000 epochs one by one would take the bench's
    time)."""
    paths = []
    for i in range(n):
        run = tracking.Run.create(root, name=f"bench-{i}", config={"seed": i}, epochs=epochs,
                                  heartbeat_seconds=0)
        lines = []
        for e in range(1, epochs + 1):
            d = math.exp(-e / (50 + i))
            lines.append(dumps(dict(
                epoch=e, train_loss=2 * d + 0.05, val_loss=2 * d + 0.1 + e / 1e5,
                train_acc=1 - d / 2, val_acc=0.9 - d / 2, grad_norm=0.5 * d + 0.01,
                grad_norm_max=d + 0.02, lr=1e-3 * (0.999 ** e),
                epoch_seconds=0.2 + (e * 7919 % 13) / 100, time=1.7e9 + i * 1e4 + e / 3)))
        with open(run.path / "metrics.jsonl", "a") as f:
            f.write("\n".join(lines) + "\n")
        run.finish("completed")
        paths.append(run.path)
    return paths


def listed(root: Path) -> list[tracking.RunInfo]:
    tracking.reader._json_cache.clear()
    return tracking.list_runs(root)


def drop_caches(paths: list[Path]) -> None:
    for p in paths:
        (p / CACHE_NAME).unlink(missing_ok=True)


def methods(root: Path, paths: list[Path], csvs: list[Path]) -> dict[str, Callable[[], int]]:
    def plain() -> int:
        return sum(len(tracking.HistoryReader(r.path, cache=False).read()) for r in listed(root))

    def cached() -> int:
        return sum(len(tracking.read_history(r.path)) for r in listed(root))

    def csv() -> int:
        return sum(len(pd.read_csv(c)) for c in csvs)

    def raw() -> int:
        return sum(len((p / "metrics.jsonl").read_bytes()) for p in paths)

    def listing() -> int:
        return len(listed(root))

    return {"plain": plain, "cold": cached, "warm": cached, "csv": csv, "bytes": raw,
            "list": listing}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="curvewatch-bench-"))
    try:
        root = tmp / "runs"
        t = time.perf_counter()
        paths = make_runs(root, args.runs, args.epochs)
        csvs = []
        for i, p in enumerate(paths):
            csvs.append(tmp / f"{i}.csv")
            tracking.HistoryReader(p).read().to_csv(csvs[-1], index=False)
        print(f"(made {args.runs} runs x {args.epochs} epochs in {time.perf_counter() - t:.1f} s; "
              f"metrics.jsonl {sum((p / 'metrics.jsonl').stat().st_size for p in paths) / 1e6:.1f}"
              f" MB in all)")
        run(methods(root, paths, csvs), paths, args.rounds, args.runs * args.epochs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(fns: dict[str, Callable[[], int]], paths: list[Path], rounds: int, rows: int) -> None:
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(rounds):
        for name in order[r % len(order):] + order[: r % len(order)]:  # rotate the order
            if name == "cold":
                drop_caches(paths)
            elif name == "warm":
                fns["cold"]()  # make sure every cache exists
            t = time.perf_counter()
            got = fns[name]()
            times[name].append(time.perf_counter() - t)
            assert name in ("bytes", "list") or got == rows, (name, got, rows)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median of {rounds} alternating rounds, {len(paths)} runs, load average "
          f"{os.getloadavg()[0]:.1f} (compare ratios, not absolute times)")
    for name in fns:
        print(f"  {name:6s} {med[name] * 1e3:9.1f} ms   (min {min(times[name]) * 1e3:.1f})")
    per_round = sorted(c / w for c, w in zip(times["csv"], times["warm"], strict=True))
    print(f"  ratio csv / warm   {statistics.median(per_round):6.2f}x  (goal >= 3x; per round "
          f"{per_round[0]:.2f}x to {per_round[-1]:.2f}x)")
    print(f"  ratio csv / cold   {med['csv'] / med['cold']:6.2f}x")
    print(f"  ratio plain / warm {med['plain'] / med['warm']:6.1f}x")
    print(f"  ratio warm / bytes {med['warm'] / med['bytes']:6.1f}x")
    print(f"  warm {'meets' if med['warm'] <= 0.05 else 'misses'} the 0.05 s goal")


if __name__ == "__main__":
    main()
