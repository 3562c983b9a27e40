"""Where the memory of a long run's Run page goes: each step of `dashboard.data.run_view` (what
the page computes once per state of a run's files) on a run of --epochs epochs, in a fresh
process, cold (no .metrics.arrow) and then warm (the cache file present). Usage:

    python bench/run_page_memory.py [--epochs 1000000] [--run PATH]

Per step: its wall and CPU time (all the process's threads), the process's resident memory
before and after, and its peak during the step
(VmHWM, reset before each step: Linux), also as MB above the memory before it. The baseline,
measured in the same process: the resident memory once the page's modules are imported, and
the history frame's own size (each step's peak is printed as a multiple of it as well).
Issue 17 asks <= 300 MB for the whole page (bench/dashboard_load.py --only million).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def memory() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text()
                  .splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from VmRSS


def child(run: str, epochs: int) -> None:
    """The steps of data._run_view_cached, one at a time, as JSON lines."""
    from curvewatch import tracking
    from curvewatch.dashboard import data, downsample, figures, forecast_band
    from curvewatch.diagnosis import with_forecast
    print(json.dumps({"step": "imports", "rss": memory()[0]}))
    out: dict = {}

    def step(name, fn):
        reset_peak()
        before, t, cpu = memory()[0], time.perf_counter(), time.process_time()
        out[name] = fn()
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        after, peak = memory()
        print(json.dumps({"step": name, "before": before, "after": after, "peak": peak,
                          "seconds": seconds, "cpu": cpu}))
    step("read_history", lambda: tracking.read_history(run))
    frame_mb = out["read_history"].memory_usage(index=False).sum() / 2**20
    print(json.dumps({"step": "frame", "mb": frame_mb}))
    history = figures.with_steps(out.pop("read_history"), None)
    step("diagnose", lambda: data.findings_for(history, tracking.read_layers(run),
                                               data.thresholds_for({}), run))
    step("with_forecast", lambda: with_forecast(out["diagnose"], history, epochs))
    step("band_forecast", lambda: forecast_band.band_forecast(history, epochs))
    step("screen_rows", lambda: downsample.screen_rows(history))


def measure(run: Path, epochs: int) -> list[dict]:
    done = subprocess.run([sys.executable, __file__, "--child", str(run), "--epochs",
                           str(epochs)], capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def show(label: str, steps: list[dict]) -> None:
    imports = steps[0]["rss"]
    frame = next(s["mb"] for s in steps if s["step"] == "frame")
    print(f"{label}: imports {imports:.0f} MB, the history frame {frame:.0f} MB")
    for s in steps:
        if "peak" in s:
            print(f"  {s['step']:14s} {s['seconds']:6.2f} s ({s['cpu']:4.2f} CPU)  RSS "
                  f"{s['before']:5.0f} -> {s['after']:5.0f} MB  peak {s['peak']:5.0f} MB "
                  f"(+{s['peak'] - s['before']:3.0f}"
                  f" above before, {(s['peak'] - imports) / frame:.2f}x the frame above imports)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1_000_000)
    ap.add_argument("--run", help="an existing run folder (its .metrics.arrow is removed)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.epochs)
        return
    tmp = Path(tempfile.mkdtemp(prefix="curvewatch-bench-"))
    try:
        if args.run:
            run = Path(args.run)
        else:
            sys.path.insert(0, str(ROOT / "bench"))
            from dashboard_load import write_run
            run = write_run(tmp, args.epochs)
        from curvewatch.tracking.history_cache import CACHE_NAME
        (run / CACHE_NAME).unlink(missing_ok=True)
        show("cold (no .metrics.arrow)", measure(run, args.epochs))
        show("warm (.metrics.arrow present)", measure(run, args.epochs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
