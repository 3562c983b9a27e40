"""Dashboard speed, as ratios against a baseline measured in the same run (no absolute
goals baked into tests). Usage:

    python bench/dashboard_load.py [--runs 1000] [--epochs 50] [--long-epochs 10000]

1. Runs page over N runs: the page's script run (AppTest, cold and warm) and
   tracking.list_runs (run.json + status.json only), against a naive full read of every
   run's metrics.jsonl (the baseline a table of best losses would cost without status.json).
2. Live tick on a run with --long-epochs epochs: HistoryReader.read() after one appended
   epoch (only the new bytes) against a line-by-line read of the whole file, and a new
   follower's first read, which starts from the history cache.
3. A 100,000-point trace: the figure the dashboard sends (extreme-keeping
   downsampling) against a plain go.Scatter of every point: JSON bytes and build time.
4. A run of --million epochs (8 metrics, no layers.jsonl): its Run page, the Runs page with it
   present, and `diagnose` of its history, each page in a fresh process (AppTest): cold (no
   .metrics.arrow), then warm (the cache file present), then a rerun in the same process
   (Streamlit's caches hot); peak RSS of each process, and its RSS once everything is imported;
   the warm process also zooms to 1,001 epochs ("Epochs shown"). The Runs page's baseline is
   the same folder before the long run was written. The run is an own loop's (no flags in
   status.json), so the Runs page summarises its history in a worker: cold is also without
   .summary.json, and each Runs page process reruns until its row's flags are shown.
   `--only runs-million` measures the Runs page rows alone.
5. The Compare page of --compare-runs runs x --compare-epochs epochs, the same way.

    python bench/dashboard_load.py --only million,compare   # sections 4 and 5 alone
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from curvewatch import tracking  # noqa: E402
from curvewatch.dashboard import figures  # noqa: E402
from curvewatch.dashboard.summaries import SUMMARY_NAME  # noqa: E402
from curvewatch.tracking.history_cache import CACHE_NAME  # noqa: E402
from curvewatch.tracking.jsonio import dumps  # noqa: E402


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
        at = AppTest.from_file(str(ROOT / "curvewatch/dashboard/views/runs.py"),
                               default_timeout=120).run()
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
    t_full, full = timed(lambda: tracking.HistoryReader(run.path, cache=False).read())
    assert len(full) == epochs + 5
    tracking.read_history(run.path)  # the cache, as the Run page leaves it
    t_first, first = timed(lambda: tracking.HistoryReader(run.path).read())
    assert len(first) == epochs + 5
    run.finish("completed")
    print(f"Live tick, run of {epochs} epochs, one epoch appended per tick")
    print(f"  HistoryReader.read() (appended bytes only)   {t_tick * 1e3:8.2f} ms")
    print(f"  baseline: full re-read, line by line         {t_full * 1e3:8.2f} ms")
    print(f"  ratio full / incremental                     {t_full / t_tick:8.1f}x")
    print(f"  first read of a follower, from the cache     {t_first * 1e3:8.2f} ms "
          f"({t_full / t_first:.1f}x faster than line by line)")


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


def write_run(root: Path, epochs: int, seed: int = 0) -> Path:
    """A finished run of `epochs` epochs of 8 metrics, its lines encoded as Run.log_epoch
    encodes them and written in large appends (logging a million one by one takes minutes)."""
    run = tracking.Run.create(root, name=f"long-{seed}", config={}, epochs=epochs,
                              heartbeat_seconds=0)
    rng = np.random.default_rng(seed)
    with open(run.path / "metrics.jsonl", "a") as f:
        for start in range(1, epochs + 1, 100_000):
            e = np.arange(start, min(start + 100_000, epochs + 1))
            t = e / max(epochs / 100, 1)
            cols = dict(train_loss=0.05 + 2 * np.exp(-t / 8) + rng.normal(0, 0.01, len(e)),
                        val_loss=0.3 + 2 * np.exp(-t / 8) + 0.004 * np.maximum(t - 40, 0)
                        + rng.normal(0, 0.02, len(e)), train_acc=np.minimum(0.99, 0.5 + t / 100),
                        val_acc=np.minimum(0.95, 0.5 + t / 120),
                        grad_norm=np.exp(0.3 * rng.standard_normal(len(e))),
                        grad_norm_max=2 * np.exp(0.3 * rng.standard_normal(len(e))),
                        lr=np.where(t < 60, 1e-3, 1e-4), epoch_seconds=0.2 + e % 13 / 100)
            rows = [dict(epoch=int(ep), **{k: float(v[i]) for k, v in cols.items()},
                         time=1.7e9 + int(ep) / 3) for i, ep in enumerate(e)]
            f.write("".join(dumps(r) + "\n" for r in rows))
    run.finish("completed")
    return run.path


def rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM, which exec starts afresh (getrusage's
    ru_maxrss keeps the parent's size at fork: this script's, after writing a big run)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB


def points(v) -> int:
    """Length of a plotly JSON array: a list, or plotly 6's typed array {'dtype', 'bdata'}."""
    if isinstance(v, dict) and "bdata" in v:
        return len(base64.b64decode(v["bdata"])) // np.dtype(v["dtype"]).itemsize
    return len(v)


def child(page: str, query: str, diagnose_it: bool, zoom: str = "") -> None:
    """In a fresh process: the page's script run twice (first, then rerun), then with the
    epoch span `zoom` ("A,B": the Run page's "Epochs shown"), as JSON."""
    from streamlit.testing.v1 import AppTest

    from curvewatch.dashboard import data as _data, figures as _figures  # noqa: F401  (imported first)
    from curvewatch.diagnosis import diagnose
    imported = rss_mb()
    at = AppTest.from_file(str(ROOT / f"curvewatch/dashboard/views/{page}.py"), default_timeout=600)
    for k, v in (kv.split("=", 1) for kv in query.split("&") if kv):
        at.query_params[k] = v
    out: dict = {"rss_imported_mb": imported}
    started = time.perf_counter()
    for label in ("first", "rerun"):
        t = time.perf_counter()
        at.run()
        out[label] = time.perf_counter() - t
        assert not at.exception, at.exception
    if zoom:
        t = time.perf_counter()
        at.slider(key="epochs").set_value(tuple(int(v) for v in zoom.split(","))).run()
        out["zoom"] = time.perf_counter() - t
        assert not at.exception, at.exception
        out["zoom_points"] = max(points(t.get("x", [])) for el in at.get("plotly_chart")
                                 for t in json.loads(el.proto.spec)["data"])
    out["rss_page_mb"] = rss_mb()  # the page's peak, before the diagnose below
    if page == "runs":  # a large own-loop run's flags come from a worker: wait for them
        out["pending"] = diagnosing(at)
        while diagnosing(at):
            time.sleep(0.05)  # the page's own poll (a fragment) reruns it every second
            at.run()
        out["flags_shown"] = time.perf_counter() - started
    if diagnose_it:
        runs = tracking.list_runs(os.environ["CURVEWATCH_RUNS"])
        t = time.perf_counter()
        hist = tracking.read_history(runs[0].path)
        out["read_history"] = time.perf_counter() - t
        t = time.perf_counter()
        findings = diagnose(hist)
        out["diagnose"] = time.perf_counter() - t
        out["findings"] = [f.kind for f in findings]
    out["rss_peak_mb"] = rss_mb()
    print(json.dumps(out))


def diagnosing(at) -> bool:
    """Whether a row of the Runs table still waits for its summary (views/runs.py's
    DIAGNOSING label)."""
    return bool(at.dataframe) and bool((at.dataframe[0].value["flags"] == "diagnosing…").any())


def in_child(root: Path, page: str, query: str = "", diagnose_it: bool = False,
             zoom: str = "") -> dict:
    env = dict(os.environ, CURVEWATCH_RUNS=str(root))
    done = subprocess.run([sys.executable, __file__, "--child", page, "--query", query,
                           "--zoom", zoom] + (["--diagnose"] if diagnose_it else []), env=env,
                          capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"{page} page failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def drop_history_caches(root: Path) -> None:
    for name in (CACHE_NAME, SUMMARY_NAME):
        for p in root.glob(f"*/{name}"):
            p.unlink()


def show(label: str, cold: dict, warm: dict) -> None:
    print(f"  {label}")
    print(f"    cold (no .metrics.arrow, fresh process)  {cold['first']:7.2f} s   "
          f"peak RSS {cold['rss_page_mb']:5.0f} MB (imports alone {cold['rss_imported_mb']:.0f})")
    print(f"    warm (cache file, fresh process)         {warm['first']:7.2f} s   "
          f"peak RSS {warm['rss_page_mb']:5.0f} MB (imports alone {warm['rss_imported_mb']:.0f})")
    print(f"    rerun (same process, caches hot)         {warm['rerun']:7.2f} s")
    if "flags_shown" in cold:
        print(f"    flags shown (background), cold / warm    {cold['flags_shown']:7.2f} s / "
              f"{warm['flags_shown']:.2f} s   peak RSS then {cold['rss_peak_mb']:.0f} MB / "
              f"{warm['rss_peak_mb']:.0f} MB; a row said diagnosing… at first: "
              f"{cold['pending']} / {warm['pending']}")
    if "zoom" in warm:
        print(f"    zoom to a span (re-read at full res.)    {warm['zoom']:7.2f} s   "
              f"{warm['zoom_points']} points a trace")


def bench_million(root: Path, epochs: int, run_page: bool = True) -> None:
    """The Run page of a run of `epochs` epochs (unless not `run_page`) and the Runs page with
    it present, cold (no .metrics.arrow, no .summary.json) and warm."""
    write_run(root, 20, seed=1)  # the Runs page's baseline: the same folder without the run
    without = in_child(root, "runs"), in_child(root, "runs")
    t = time.perf_counter()
    path = write_run(root, epochs)
    size = (path / "metrics.jsonl").stat().st_size
    print(f"Run of {epochs:,} epochs ({size / 1e6:.0f} MB metrics.jsonl, written in "
          f"{time.perf_counter() - t:.0f} s)")
    if run_page:
        bench_run_page(root, path, epochs)
    drop_history_caches(root)
    show("Runs page with it present", in_child(root, "runs"), in_child(root, "runs"))
    show("baseline: Runs page before it was written (one 20-epoch run)", *without)


def bench_run_page(root: Path, path: Path, epochs: int) -> None:
    drop_history_caches(root)
    mid = epochs // 2
    zoom = f"{mid},{mid + 1_000}"  # 1,001 epochs: every one drawn
    cold = in_child(root, "run", f"run={path.name}", diagnose_it=True)
    warm = in_child(root, "run", f"run={path.name}", diagnose_it=True, zoom=zoom)
    show("Run page", cold, warm)
    print(f"    read_history in the warm process         {warm['read_history']:7.2f} s")
    print(f"    diagnose (cold / warm process)           {cold['diagnose']:7.2f} s / "
          f"{warm['diagnose']:.2f} s  findings {warm['findings']}")


def bench_compare(root: Path, n: int, epochs: int) -> None:
    t = time.perf_counter()
    ids = [write_run(root, epochs, seed=i).name for i in range(n)]
    print(f"Compare, {n} runs x {epochs:,} epochs (written in {time.perf_counter() - t:.0f} s)")
    query = "runs=" + ",".join(ids)
    drop_history_caches(root)
    show("Compare page", in_child(root, "compare", query), in_child(root, "compare", query))


SECTIONS = ("runs", "live", "chart", "million", "compare", "runs-million")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--long-epochs", type=int, default=10_000)
    ap.add_argument("--million", type=int, default=1_000_000)
    ap.add_argument("--compare-runs", type=int, default=20)
    ap.add_argument("--compare-epochs", type=int, default=10_000)
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections: {', '.join(SECTIONS)}")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--query", default="", help=argparse.SUPPRESS)
    ap.add_argument("--diagnose", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--zoom", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.query, args.diagnose, args.zoom)
        return
    only = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="curvewatch-bench-"))
    try:
        if "runs" in only:
            t = time.perf_counter()
            make_runs(tmp / "many", args.runs, args.epochs)
            print(f"(made {args.runs} runs in {time.perf_counter() - t:.1f} s)")
            bench_runs_page(tmp / "many", args.runs)
        if "live" in only:
            bench_live_tick(tmp / "long", args.long_epochs)
        if "chart" in only:
            bench_chart()
        if "million" in only:
            bench_million(tmp / "million", args.million)
        if "runs-million" in only and "million" not in only:  # the Runs page rows alone
            bench_million(tmp / "million", args.million, run_page=False)
        if "compare" in only:
            bench_compare(tmp / "compare", args.compare_runs, args.compare_epochs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
