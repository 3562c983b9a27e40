"""Host time of one `Run.log_epoch` of 8 metrics against the plainest durable-enough
alternative: `json.dumps` of the same record, written as one line to an open file and flushed.

    .venv/bin/python bench/log_epoch.py [--calls 20000] [--rounds 7]

Each round times --calls calls of each, alternating which goes first, into fresh files in a
temporary folder (no heartbeat thread, so only the call itself is timed; status.json is
rewritten at most once a second, as in any run, and that is counted). The record is the
trainer's: epoch, time and 8 metrics (floats, one of them NaN every 100th call, so the
non-finite path is exercised). The plain line is json.dumps with its defaults (a cached
encoder, a bare NaN): the cheapest line, not a strict one. Printed: median and spread
of µs per call of both, and the median of the per-round ratios (the goal: at most 1.2x).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curvewatch.tracking import Run  # noqa: E402

NAMES = ("step", "train_loss", "val_loss", "train_acc", "val_acc", "grad_norm",
         "grad_norm_max", "lr")


def metrics(i: int) -> dict[str, float]:
    vals = {n: 1.0 / (i + k + 1) for k, n in enumerate(NAMES)}
    vals["step"] = i * 28
    if i % 100 == 99:
        vals["val_loss"] = math.nan
    return vals


def plain(folder: Path, calls: int, values: list[dict[str, float]]) -> float:
    """json.dumps + write + flush of the same record: the plainest line a script would write
    (json.dumps with its defaults, which writes a bare NaN that strict parsers refuse)."""
    with open(folder / "plain.jsonl", "a", encoding="utf-8") as f:
        start = time.perf_counter()
        for epoch, vals in enumerate(values, 1):
            f.write(json.dumps({"epoch": epoch, **vals, "time": time.time()}) + "\n")
            f.flush()
        return (time.perf_counter() - start) / calls


def logged(folder: Path, calls: int, values: list[dict[str, float]]) -> float:
    run = Run.create(folder, name="bench", heartbeat_seconds=0)
    try:
        start = time.perf_counter()
        for vals in values:
            run.log_epoch(**vals)
        return (time.perf_counter() - start) / calls
    finally:
        run.finish()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    values = [metrics(i) for i in range(args.calls)]
    times: dict[str, list[float]] = {"plain": [], "log_epoch": []}
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "warm").mkdir()  # first-call imports and allocations out of round 1
        logged(Path(tmp) / "warm", 200, values[:200])
        for r in range(args.rounds):
            folder = Path(tmp) / f"r{r}"
            folder.mkdir()
            order = (plain, logged) if r % 2 == 0 else (logged, plain)
            got = {fn.__name__: fn(folder, args.calls, values) for fn in order}
            times["plain"].append(got["plain"])
            times["log_epoch"].append(got["logged"])
            ratios.append(got["logged"] / got["plain"])
    for name, ts in times.items():
        us = sorted(t * 1e6 for t in ts)
        print(f"{name:10s} median {statistics.median(us):6.2f} µs/call "
              f"(min {us[0]:.2f}, max {us[-1]:.2f})")
    rs = sorted(ratios)
    print(f"ratio log_epoch / plain: median {statistics.median(rs):.2f}x "
          f"(min {rs[0]:.2f}x, max {rs[-1]:.2f}x) over {args.rounds} rounds of {args.calls} "
          "calls, alternating")


if __name__ == "__main__":
    main()
