"""How robustly `make run`'s three demo runs show what their names promise, over seeds and
torch thread counts (floating-point results differ from one CPU to the next, so a promise
that holds on one machine only is no promise).

    .venv/bin/python bench/demo_margins.py [--seeds 0-4] [--threads 1,2] [--parallel 2]
    .venv/bin/python bench/demo_margins.py --only demo-healthy-cnn --extra --lr 3e-4

Each combination trains the demo configuration for real (`python -m trainer run`, unpaced),
then replays its history online (`diagnose(history[:t])` for every t) and prints, per run:
- healthy: trained on for 3x its epochs (its schedule is constant, so the first epochs are
  the demo run itself), the first epoch at which any warning-level finding appears; the
  margin is how many epochs after the demo's last one that is (none in 3x: 2x its epochs);
- overfitting / plateau: the first epoch the promised finding appears and how many epochs
  before the end that is (the margin), and whether it still stands at the end.
The last lines give the smallest margin per demo run over every combination.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curvewatch.diagnosis import diagnose  # noqa: E402
from curvewatch.tracking import read_history  # noqa: E402
from curvewatch.trainer.config import DEFAULTS  # noqa: E402
from curvewatch.trainer.demo import DEMO_RUNS, demo_epochs, option_value  # noqa: E402

PROMISE = {"demo-healthy-cnn": None, "demo-overfitting-mlp": "overfitting",
           "demo-plateau-sgd": "plateau"}


@dataclass(frozen=True)
class Outcome:
    name: str
    seed: int
    threads: int
    epochs: int
    trained: int            # epochs trained (healthy: 3x the demo's)
    first: int | None       # first epoch the promised finding (healthy: any warning) appears
    at_end: bool            # the promised finding stands at the demo's last epoch

    @property
    def margin(self) -> int:
        """Epochs to spare (negative: the promise broke). Promised finding: how many epochs
        before the demo's end it appeared; healthy: how many after the end a warning appears."""
        if PROMISE[self.name] is None:
            return (self.first if self.first is not None else self.trained + 1) - 1 - self.epochs
        return self.epochs - self.first if self.first is not None and self.at_end else -1


def train(name: str, args: list[str], seed: int, threads: int) -> Outcome:
    epochs = demo_epochs(args)
    if PROMISE[name] is None:
        if option_value(args, "--schedule", DEFAULTS.schedule) != "constant":
            sys.exit(f"{name}: the healthy margin needs a constant schedule")
        args = [*args, "--epochs", str(3 * epochs)]
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "curvewatch.trainer", "run", "--runs-dir", runs, "--name",
               name,
               *args, "--seed", str(seed), "--threads", str(threads)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            sys.exit(f"{name} seed {seed} threads {threads} failed:\n{done.stderr[-2000:]}")
        run = next(p for p in Path(runs).iterdir() if p.is_dir())
        h = read_history(run)
    return outcome(name, h, epochs, seed, threads)


def outcome(name: str, h, epochs: int, seed: int, threads: int) -> Outcome:
    """Replay the history online, as the trainer and the dashboard see it epoch by epoch."""
    want = PROMISE[name]
    first, at_end = None, False
    for t in range(1, len(h) + 1):
        found = diagnose(h.iloc[:t])
        hit = [f for f in found if (f.severity in ("warning", "critical") if want is None
                                    else f.kind == want)]
        if hit and first is None:
            first = int(h["epoch"].iloc[t - 1])
        if t == epochs:
            at_end = bool(hit)
    return Outcome(name, seed, threads, epochs, len(h), first, at_end)


def seeds_arg(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=seeds_arg, default=seeds_arg("0-4"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--parallel", type=int, default=2, help="trainings at once")
    ap.add_argument("--only", help="one demo run's name")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                    help="options appended to the demo run's own (to try a variant)")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    names = [a.only] if a.only else list(DEMO_RUNS)
    jobs = [(n, [*DEMO_RUNS[n], *a.extra], s, t) for n in names for s in a.seeds for t in threads]
    with ThreadPoolExecutor(a.parallel) as pool:
        results = list(pool.map(lambda j: train(*j), jobs))
    print(f"{'run':<22} seed thr epochs trained first_finding at_end margin")
    for r in results:
        print(f"{r.name:<22} {r.seed:>4} {r.threads:>3} {r.epochs:>6} {r.trained:>7} "
              f"{str(r.first):>13} {str(r.at_end):>6} {r.margin:>6}")
    print("smallest margin (epochs; negative: the promise broke):")
    for n in names:
        worst = min(r.margin for r in results if r.name == n)
        print(f"  {n:<22} {worst:>6} over {sum(r.name == n for r in results)} runs")


if __name__ == "__main__":
    main()
