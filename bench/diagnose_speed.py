"""How fast are `diagnose` and `forecast`? Prints timings and ratios against a baseline measured
in the same run.

    python bench/diagnose_speed.py            # 1,000 epochs, 100,000 and 1,000,000 rows
    python bench/diagnose_speed.py --quick    # fewer repeats

Peak memory (`diag MB`, `fc MB`): the most that one `diagnose` (one `forecast`) call holds
at once on top of the history frame, by tracemalloc (which sees numpy's buffers); `frame MB`
is the frame itself. Issue 17 asks <= 300 MB for the Run page of a million-epoch run. The line
after the table: a fresh process's resident memory with the 1,000,000-row frame built, and how
much more its peak (VmHWM, reset once the frame is built: Linux) reached during `diagnose` and
then `forecast`.

Targets (issue 3): <= 5 ms for a 1,000-epoch history, <= 100 ms for 100,000 rows; issue 13:
`diagnose` plus `forecast` (of val_loss to 1.2x the epochs seen) <= 5 ms for 1,000 epochs;
issue 17: the same 5 ms per 1,000 epochs for a million (5 s). The
baseline is a naive pass over the same data: a trailing rolling median (window 5) of every
loss column with pandas, i.e. the cheapest thing any curve smoother must do. Timings are
medians of repeated calls; they are reported, never asserted in tests.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from curvewatch.diagnosis import diagnose, forecast  # noqa: E402


def history(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    e = np.arange(1, n + 1)
    t = e / max(n / 100, 1)
    val = 0.3 + 2 * np.exp(-t / 8) + 0.004 * np.maximum(t - 40, 0)
    return pd.DataFrame({
        "epoch": e,
        "train_loss": (0.05 + 2 * np.exp(-t / 8)) * (1 + 0.01 * rng.standard_normal(n)),
        "val_loss": val * (1 + 0.02 * rng.standard_normal(n)),
        "train_acc": np.minimum(0.99, 0.5 + t / 100), "val_acc": np.minimum(0.95, 0.5 + t / 120),
        "grad_norm": np.exp(0.3 * rng.standard_normal(n)), "grad_norm_max": np.exp(0.3 * rng.standard_normal(n)) * 2,
        "lr": np.where(t < 60, 1e-3, 1e-4),
    })


def layers(n: int, k: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"epoch": np.arange(1, n + 1), **{f"net.{i}.weight": np.exp(rng.standard_normal(n)) for i in range(k)}})


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def peak_mb(fn) -> float:
    """The most memory fn() holds at once above what was allocated before it, in MB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


def rss_child(n: int) -> None:
    """In this (fresh) process: print the resident MB with the frame built and the MB its
    peak grows by during diagnose, then forecast."""
    h = history(n)
    diagnose(h.iloc[:2000])  # imports and first-call caches: not the history's cost
    forecast(h.iloc[:2000], 3000)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    rss = _status_mb("VmRSS")
    diagnose(h)
    forecast(h, int(1.2 * n))
    print(f"{rss:.0f} {_status_mb('VmHWM') - rss:.0f}")


def rss_peak(n: int) -> tuple[float, float]:
    """(resident MB with the n-row frame, MB more at the peak of diagnose + forecast) of a
    fresh process."""
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(n)], capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def baseline(h: pd.DataFrame) -> None:
    for c in ("train_loss", "val_loss"):
        h[c].rolling(5, min_periods=1).median().to_numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.rss_child:
        rss_child(a.rss_child)
        return 0
    rows = []
    for n, target, reps in ((1_000, 5.0, 50), (100_000, 100.0, 7), (1_000_000, 5_000.0, 3)):
        reps = max(1 if n > 100_000 else 3, reps // 5) if a.quick else reps
        h, lf = history(n), layers(n)
        t_diag = timeit(lambda h=h: diagnose(h), reps)
        t_layers = timeit(lambda h=h, lf=lf: diagnose(h, layers=lf), reps)
        t_base = timeit(lambda h=h: baseline(h), reps)
        t_fc = timeit(lambda h=h, n=n: forecast(h, int(1.2 * n)), reps)
        mem = (h.memory_usage(deep=True).sum() / 1e6, peak_mb(lambda h=h: diagnose(h)),
               peak_mb(lambda h=h, n=n: forecast(h, int(1.2 * n))))
        rows.append((n, t_diag, t_layers, t_fc, t_base, target, mem))
    print(f"{'rows':>8} {'diagnose ms':>12} {'+layers ms':>11} {'forecast ms':>12} {'d+f ms':>7} "
          f"{'baseline ms':>12} {'ratio':>7} {'d+f ratio':>10} {'target ms':>10}  verdict "
          f"{'frame MB':>9} {'diag MB':>8} {'fc MB':>6}")
    for n, td, tl, tf, tb, target, (fm, dm, fcm) in rows:
        print(f"{n:>8,} {td:>12.2f} {tl:>11.2f} {tf:>12.2f} {td + tf:>7.2f} {tb:>12.2f} {td / tb:>6.1f}x "
              f"{(td + tf) / tb:>9.1f}x {target:>10.0f}  {'ok' if max(td, tl, td + tf) <= target else 'OVER':<7} "
              f"{fm:>9.1f} {dm:>8.1f} {fcm:>6.1f}")
    print("ratio = diagnose / baseline (a pandas rolling median of train and val loss); d+f = diagnose "
          "+ forecast; medians of repeated calls; diag MB / fc MB: peak memory of one call above the "
          "frame (tracemalloc)")
    rss, more = rss_peak(1_000_000)
    print(f"1,000,000 rows in a fresh process: {rss:.0f} MB resident with the frame, peak +{more:.0f} MB "
          f"during diagnose and forecast (VmHWM)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
