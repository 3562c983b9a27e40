"""Regenerate the screenshots in docs/img from the real dashboard: real trainings (the three
demo runs at full speed, a 3-fold group, a paced run caught while it trains) in a temporary
runs directory, `streamlit run app.py` over it, and Chromium through Playwright at
1400 x 1900, as the browser tests drive them (tests/test_browser_dashboard.py).

    .venv/bin/python docs/img/make_screenshots.py      # about two minutes on two cores
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "img"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import wait_for  # noqa: E402
from curvewatch import tracking  # noqa: E402
from curvewatch.tracking.annotate import annotate_run  # noqa: E402
from servers import CHROMIUM, LAUNCH_ARGS  # noqa: E402
from test_browser_dashboard import open_page, streamlit_server  # noqa: E402

THREADS = ("--threads", "1")


def trainer(*args: str) -> str:
    """`python -m trainer ARGS`; its first output line."""
    done = subprocess.run([sys.executable, "-m", "curvewatch.trainer", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300, check=True)
    return done.stdout.splitlines()[0] if done.stdout else ""


def by_name(root: Path) -> dict[str, tracking.RunInfo]:
    return {r.name: r for r in tracking.list_runs(root)}


def make_runs(root: Path) -> dict[str, str]:
    """The runs the screenshots show, trained for real; returns their ids by role."""
    trainer("demo", "--runs-dir", str(root), "--seconds", "0")  # detached, as is the group
    started = trainer("run", "--runs-dir", str(root), "--dataset", "digits", "--hidden", "32",
                      "--validation", "kfold:3", "--epochs", "15", "--detach", *THREADS,
                      "--name", "digits-mlp-kfold3")
    group = started.split()[1]
    wait_for(lambda: all(r.state != "running" for r in tracking.list_runs(root))
             and tracking.read_group(root / group).state not in ("running", "pending"),
             timeout=240, every=0.5, what="the demo runs and the 3-fold group to end")
    runs = by_name(root)
    overfit = runs["demo-overfitting-mlp"].id
    annotate_run(root / overfit, notes="300 noisy training samples and 512x512 units: expected "
                 "to overfit; keep the best epoch's weights (best.pt).",
                 tags=["demo", "overfitting"])
    trainer("run", "--runs-dir", str(root), "--dataset", "digits", "--hidden", "128,64",
            "--epochs", "300", "--min-epoch-seconds", "0.4", "--detach", *THREADS,
            "--name", "digits-mlp-live", "--notes", "watching it train")
    live = wait_for(lambda: (r := by_name(root).get("digits-mlp-live")) and r.epoch >= 12 and r,
                    timeout=120, every=0.5, what="the live run's first epochs").id
    return {"overfit": overfit, "healthy": runs["demo-healthy-cnn"].id,
            "plateau": runs["demo-plateau-sgd"].id, "group": group, "live": live}


def shoot(browser, url: str, name: str, *, wait: str, dark: bool = False) -> None:
    from playwright.sync_api import expect
    ctx = browser.new_context(viewport={"width": 1400, "height": 1900},
                              color_scheme="dark" if dark else "light")
    page = ctx.new_page()
    open_page(page, url)
    expect(page.locator(wait).first).to_be_visible(timeout=60_000)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(OUT / f"{name}.png"))
    ctx.close()
    print(f"wrote docs/img/{name}.png")


def main() -> int:
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=60_000)  # a loaded machine draws slowly; every wait is a poll
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        t0 = time.monotonic()
        ids = make_runs(root)
        print(f"runs trained in {time.monotonic() - t0:.0f} s")
        try:
            with streamlit_server(root, "streamlit-screenshots") as url, \
                    sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                chart = ".st-key-run-chart-loss .main-svg"
                shoot(browser, f"{url}/run?run={ids['live']}", "run-live",
                      wait=".st-key-run-chart-loss iframe")
                shoot(browser, f"{url}/?runs={ids['overfit']},{ids['healthy']}", "runs",
                      wait="[data-testid=stDataFrame]")
                shoot(browser, f"{url}/run?run={ids['overfit']}", "run-overfitting", wait=chart)
                shoot(browser, f"{url}/run?run={ids['overfit']}&logy=true", "run-dark",
                      wait=chart, dark=True)
                shoot(browser, f"{url}/compare?runs={ids['overfit']},{ids['healthy']}"
                      "&metric=val_loss", "compare",
                      wait=".st-key-compare-chart-overlay .main-svg")
                shoot(browser, f"{url}/group?group={ids['group']}", "group",
                      wait=".js-plotly-plot .main-svg")
                browser.close()
        finally:
            trainer("stop", ids["live"], "--runs-dir", str(root), "--wait", "30")
    return 0


if __name__ == "__main__":
    sys.exit(main())
