"""Dashboard speed, as ratios against a baseline measured in the same run (no absolute
goals baked into tests). Usage:

    python bench/dashboard_load.py [--runs 1000] [--epochs 50] [--long-epochs 10000]

1. Runs page over N runs: the page's script run (AppTest, cold and warm) and
   tracking.list_runs (run.json + status.json only), against a naive full read of every
   run's metrics.jsonl (the baseline a table of best losses would cost without status.json).
2. Live tick on a run with --long-epochs epochs: HistoryReader.read() after one appended
   epoch (only the new bytes) against read_history() of the whole file.
3. A 100,000-point trace: the figure the dashboard sends (Scattergl + extreme-keeping
   downsampling) against a plain go.Scatter of every point: JSON bytes and build time.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

import tracking  # noqa: E402
from dashboard import figures  # noqa: E402


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def curve(e: int) -> dict:
    return dict(train_loss=2 * math.exp(-e / 10) + 0.05, val_loss=2 * math.exp(-e / 10) + 0.1,
                train_acc=0.9, val_acc=0.85, grad_norm=0.5, grad_norm_max=1.0, lr=1e-3,
                epoch_seconds=0.2, samples_per_second=5000.0)


def make_runs(root: Path, n: int, epochs: int) -> None:
    run = tracking.Run.create(root, name="bench", config={"dataset": "digits", "model": "mlp",
                                                        "lr": 1e-3, "hidden": [128, 64]},
                              epochs=epochs, heartbeat_seconds=0)
    for e in range(1, epochs + 1):
        run.log_epoch(epoch=e, layers={"w": 0.1, "b": 0.01}, **curve(e))
    run.finish("completed")
    for i in range(1, n):
        shutil.copytree(run.path, root / f"20260101-000000-bench-{i:04x}")


def bench_runs_page(root: Path, n: int) -> None:
    from streamlit.testing.v1 import AppTest
    os.environ["CURVEWATCH_RUNS"] = str(root)
    tracking.reader._json_cache.clear()
    t_list_cold, runs = timed(lambda: tracking.list_runs(root), repeat=1)
    t_list_warm, _ = timed(lambda: tracking.list_runs(root))
    assert len(runs) == n, len(runs)
    t_naive, _ = timed(lambda: [tracking.read_history(r.path) for r in runs], repeat=1)

    def page():
        at = AppTest.from_file(str(ROOT / "dashboard/views/runs.py"), default_timeout=120).run()
        assert not at.exception, at.exception
        return at
    tracking.reader._json_cache.clear()
    t_page_cold, _ = timed(page, repeat=1)
    t_page_warm, _ = timed(page)
    print(f"Runs page, {n} runs (metrics.jsonl of {runs[0].epoch} epochs each)")
    print(f"  list_runs (run.json + status.json), cold     {t_list_cold * 1e3:8.1f} ms")
    print(f"  list_runs, warm (mtime/size cache)           {t_list_warm * 1e3:8.1f} ms")
    print(f"  baseline: read every metrics.jsonl           {t_naive * 1e3:8.1f} ms")
    print(f"  Runs page script run (AppTest), cold caches  {t_page_cold * 1e3:8.1f} ms")
    print(f"  Runs page script run (AppTest), warm         {t_page_warm * 1e3:8.1f} ms")
    print(f"  ratio baseline / list_runs cold              {t_naive / t_list_cold:8.1f}x")
    print(f"  ratio baseline / list_runs warm              {t_naive / t_list_warm:8.1f}x")


def bench_live_tick(root: Path, epochs: int) -> None:
    run = tracking.Run.create(root, name="long", config={}, epochs=epochs + 10,
                              heartbeat_seconds=0)
    for e in range(1, epochs + 1):
        run.log_epoch(epoch=e, **curve(e))
    reader = tracking.HistoryReader(run.path)
    reader.read()
    ticks = []
    for e in range(epochs + 1, epochs + 6):
        run.log_epoch(epoch=e, **curve(e))
        t = time.perf_counter()
        frame = reader.read()
        ticks.append(time.perf_counter() - t)
        assert len(frame) == e
    t_tick = statistics.median(ticks)
    t_full, full = timed(lambda: tracking.read_history(run.path))
    assert len(full) == epochs + 5
    run.finish("completed")
    print(f"Live tick, run of {epochs} epochs, one epoch appended per tick")
    print(f"  HistoryReader.read() (appended bytes only)   {t_tick * 1e3:8.2f} ms")
    print(f"  baseline: read_history() full re-read        {t_full * 1e3:8.2f} ms")
    print(f"  ratio full / incremental                     {t_full / t_tick:8.1f}x")


def bench_chart(points: int = 100_000) -> None:
    x = np.arange(1, points + 1)
    rng = np.random.default_rng(0)
    hist = pd.DataFrame({"epoch": x, "train_loss": np.exp(-x / 2e4) + rng.normal(0, .02, points),
                         "val_loss": np.exp(-x / 2e4) + 0.1 + rng.normal(0, .02, points)})
    t_ours, fig = timed(lambda: figures.learning_curve_figure(hist, metric="loss"))
    t_ours_json, js = timed(lambda: fig.to_json())

    def naive():
        f = go.Figure()
        for c in ("train_loss", "val_loss"):
            f.add_trace(go.Scatter(x=hist["epoch"], y=hist[c], mode="lines", name=c))
        return f
    t_naive, nfig = timed(naive)
    t_naive_json, njs = timed(lambda: nfig.to_json())
    kinds = {type(t).__name__ for t in fig.data}
    print(f"Chart, {points} points per trace x 2 traces")
    print(f"  dashboard figure: {', '.join(sorted(kinds))}, "
          f"{max(len(t.x) for t in fig.data)} points/trace, {len(js) / 1e6:.2f} MB JSON, "
          f"build+serialise {(t_ours + t_ours_json) * 1e3:.0f} ms")
    print(f"  baseline go.Scatter, every point: {len(njs) / 1e6:.2f} MB JSON, "
          f"build+serialise {(t_naive + t_naive_json) * 1e3:.0f} ms")
    print(f"  ratio payload baseline / dashboard           {len(njs) / len(js):8.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--long-epochs", type=int, default=10_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="curvewatch-bench-"))
    try:
        t = time.perf_counter()
        make_runs(tmp / "many", args.runs, args.epochs)
        print(f"(made {args.runs} runs in {time.perf_counter() - t:.1f} s)")
        bench_runs_page(tmp / "many", args.runs)
        bench_live_tick(tmp / "long", args.long_epochs)
        bench_chart()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
