"""The Run page of a million-epoch run in a real browser (issue 17): a real `streamlit run
app.py` server over a runs directory holding one such run, Debian's Chromium driven by
Playwright. Prints the time from navigation to the loss chart drawn, the server's memory
(VmRSS now, VmHWM its peak), for: the first open (fresh server, no .metrics.arrow), a reopen
(a new browser tab on the same server: Streamlit's caches hot), a zoom (?epochs=A&epochs=B,
re-read at full resolution) and the Runs page with the run present. The baseline, measured
in the same run before and after: the Run page of a 20-epoch run in a new tab (the browser's
own cost of a page: Streamlit's frontend, plotly.js, drawing).

    python bench/dashboard_browser.py [--epochs 1000000]

Not part of the test suite (writing the run takes 15-60 s, the server a few hundred MB).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT), str(ROOT / "tests")]

from dashboard_load import write_run  # noqa: E402

from servers import CHROMIUM, LAUNCH_ARGS, free_port, serving, streamlit_cmd  # noqa: E402

TIMEOUT_MS = 300_000


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB: its resident memory now and at its peak."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def time_to_chart(browser, url: str, chart: str) -> tuple[float, dict]:
    """Seconds from navigation to `chart` (a .st-key-<key> container) drawn and the script
    run finished; the drawn chart's largest trace length."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1900})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    t = time.perf_counter()
    page.goto(url)
    plot = page.locator(f".st-key-{chart} .js-plotly-plot").first
    plot.locator(".main-svg").first.wait_for(state="visible")
    drawn = time.perf_counter() - t
    page.locator("[data-test-script-state='notRunning']").wait_for(state="attached")
    points = plot.evaluate("g => Math.max(...g._fullData.map(t => t.x ? t.x.length : 0))")
    ctx.close()
    return drawn, {"points": points, "done": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1_000_000)
    args = ap.parse_args()
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is absent (Debian's chromium package)")
    from playwright.sync_api import sync_playwright
    tmp = Path(tempfile.mkdtemp(prefix="curvewatch-browser-"))
    try:
        t = time.perf_counter()
        path = write_run(tmp / "runs", args.epochs)
        small = write_run(tmp / "runs", 20, seed=1)
        size = (path / "metrics.jsonl").stat().st_size
        print(f"Run of {args.epochs:,} epochs ({size / 1e6:.0f} MB metrics.jsonl, written in "
              f"{time.perf_counter() - t:.0f} s); Chromium {CHROMIUM}")
        mid = args.epochs // 2
        visits = [("baseline: a 20-epoch run's Run page", f"run?run={small.name}",
                   "run-chart-loss"),
                  ("first open (fresh server, no .metrics.arrow)", f"run?run={path.name}",
                   "run-chart-loss"),
                  ("reopen (new tab, same server)", f"run?run={path.name}", "run-chart-loss"),
                  ("zoom to 1,001 epochs", f"run?run={path.name}&epochs={mid}"
                   f"&epochs={mid + 1_000}", "run-chart-loss"),
                  ("Runs page with it present", "", ""),
                  ("baseline again", f"run?run={small.name}", "run-chart-loss")]
        port = free_port()
        env = {**os.environ, "CURVEWATCH_RUNS": str(tmp / "runs"), "PYTHONPATH": str(ROOT)}
        with serving(streamlit_cmd(port), port, cwd=ROOT, env=env, timeout=120,
                     log=tmp / "streamlit.log") as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            for label, query, chart in visits:
                if chart:
                    drawn, extra = time_to_chart(browser, f"{server.url}/{query}", chart)
                else:
                    drawn, extra = runs_page(browser, server.url)
                rss, peak = memory_mb(server.proc.pid)
                print(f"  {label:<46} chart drawn {drawn:6.2f} s, script done "
                      f"{extra['done']:6.2f} s, {extra.get('points', '-')} points; "
                      f"server RSS {rss:4.0f} MB (peak {peak:4.0f} MB)")
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def runs_page(browser, url: str) -> tuple[float, dict]:
    """Seconds until the Runs page's table is drawn and its script run finished."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1900})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    t = time.perf_counter()
    page.goto(url)
    page.get_by_test_id("stDataFrame").first.wait_for(state="visible")
    drawn = time.perf_counter() - t
    page.locator("[data-test-script-state='notRunning']").wait_for(state="attached")
    ctx.close()
    return drawn, {"done": time.perf_counter() - t}


if __name__ == "__main__":
    main()
