"""End to end in a real browser: `streamlit run app.py` on a free localhost port against the
fixture runs directory, driven by Debian's headless Chromium through Playwright.

Every wait is a poll with a deadline (Playwright's `expect` retries, or `wait_for`); nothing
sleeps to synchronise. Screenshots go to artifacts/ (gitignored)."""
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard_fixtures as dfx  # noqa: E402
from servers import CHROMIUM, free_port, serving, streamlit_cmd  # noqa: E402

ARTIFACTS = dfx.ROOT / "artifacts"
pytestmark = [
    # the fixture runs are real trainings, built once per worker: one worker takes both files
    pytest.mark.xdist_group("fixture_runs"),
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is absent (make test installs Debian's chromium)"),
]
LOAD_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def fx():
    return dfx.fixture_runs(real=True)


@contextmanager
def streamlit_server(runs_dir: Path, log_name: str) -> Iterator[str]:
    """`streamlit run app.py` on a free port over `runs_dir`; yields its URL once healthy."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    env = {**os.environ, "CURVEWATCH_RUNS": str(runs_dir), "PYTHONPATH": str(dfx.ROOT)}
    with serving(streamlit_cmd(port), port, cwd=dfx.ROOT, env=env,
                 log=ARTIFACTS / f"{log_name}.log") as server:
        yield server.url


@pytest.fixture(scope="module")
def server(fx):
    with streamlit_server(fx.root, "streamlit-server") as url:
        yield url


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect
    expect.set_options(timeout=LOAD_TIMEOUT_MS)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1900})
    pg = ctx.new_page()
    yield pg
    ctx.close()


def open_page(page, url: str):
    from playwright.sync_api import expect
    page.goto(url)
    expect(page.get_by_test_id("stAppViewContainer")).to_be_visible()
    expect(page.locator("[data-test-script-state='notRunning']")).to_have_count(1)


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def loss_chart(page):
    return page.locator(".st-key-run-chart-loss")


def test_run_page_draws_the_loss_chart_with_the_overfitting_flag(server, fx, page):
    from playwright.sync_api import expect
    open_page(page, f"{server}/run?run={fx.ids['real_overfit']}")
    chart = loss_chart(page)
    expect(chart.locator(".main-svg").first).to_be_visible()
    expect(chart.locator(".scatterlayer .trace")).to_have_count(3)  # train, val, flags
    expect(chart.locator(".annotation-text", has_text="overfitting")).to_be_visible()
    expect(chart.locator(".annotation-text", has_text="early stop")).to_be_visible()
    expect(chart.locator(".shapelayer path").first).to_be_attached()
    expect(page.locator(".st-key-finding-overfitting")).to_contain_text("What to try")
    shot(page, "run-overfitting")


def test_compare_two_runs_from_the_runs_page(server, fx, page):
    from playwright.sync_api import expect
    a, b = fx.ids["real_overfit"], fx.ids["real_healthy"]
    open_page(page, f"{server}/?runs={a},{b}")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    compare = page.get_by_role("button", name="Compare", exact=True)
    expect(compare).to_be_enabled()
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    shot(page, "runs")
    compare.click()
    page.wait_for_url("**/compare?runs=*", timeout=30_000)
    assert a in page.url and b in page.url
    overlay = page.locator(".st-key-compare-chart-overlay")
    expect(overlay.locator(".legendtext", has_text="real-overfit")).to_be_visible()
    expect(overlay.locator(".legendtext", has_text="real-healthy")).to_be_visible()
    expect(page.get_by_role("heading", name="Hyperparameters that differ")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    shot(page, "compare")


def test_group_page_draws_the_mean_with_its_band_and_the_members(server, fx, page):
    from playwright.sync_api import expect
    gid = fx.ids["real_group"]
    open_page(page, f"{server}/group?group={gid}")
    expect(page.get_by_role("heading", name="real-folds")).to_be_visible()
    chart = page.locator(".st-key-group-chart-val_loss")
    expect(chart.locator(".main-svg").first).to_be_visible()
    # three thin members, the ±1 sd band (a filled path) and the mean line
    expect(chart.locator(".scatterlayer .trace")).to_have_count(5)
    expect(chart.locator(".scatterlayer .trace path.js-fill").first).to_be_visible()
    expect(chart.locator(".legendtext", has_text="±1 sd")).to_be_visible()
    expect(chart.locator(".legendtext", has_text="mean of 3")).to_be_visible()
    expect(page.get_by_text("Cross-validated score")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    shot(page, "group")
    # the sweep: ranking and the parallel-coordinates plot
    open_page(page, f"{server}/group?group={fx.ids['real_sweep']}")
    pc = page.locator(".st-key-group-chart-parallel")
    expect(pc.locator(".main-svg").first).to_be_visible()
    expect(pc.locator(".parcoords")).to_have_count(1)
    expect(page.get_by_role("button", name="Launch the best setting")).to_be_visible()
    shot(page, "group-sweep")


def test_live_run_shows_new_epochs_without_a_reload_and_keeps_zoom(server, fx, page):
    from playwright.sync_api import expect
    rid = dfx.started_id(dfx.trainer("run", "--detach", "--runs-dir", str(fx.root),
                                     "--name", "live-browser", "--epochs", "5000",
                                     "--batch-size", "8", "--hidden", "64",
                                     "--threads", "1"))
    try:
        dfx.wait_for(lambda: dfx.tracking.read_run(fx.root / rid).epoch >= 2, timeout=120,
                     every=0.2, what="the live run's second epoch")
        open_page(page, f"{server}/run?run={rid}")
        page.evaluate("window.__curvewatch_marker = 'same page'")
        epoch = page.get_by_test_id("stMetricValue").first
        expect(epoch).to_contain_text("/5000")
        # while live, the chart is the in-place component (an iframe that stays mounted)
        frame = page.frame_locator(".st-key-run-chart-loss iframe")
        gd = frame.locator("#chart")
        expect(gd.locator(".main-svg").first).to_be_visible()

        def drag_zoom() -> bool:  # drag across the middle of the plot area
            box = gd.locator(".nsewdrag").first.bounding_box()
            if box is None:
                return False
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] * 0.3, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=8)
            page.mouse.up()
            try:
                dfx.wait_for(lambda: gd.evaluate("g => g._fullLayout.xaxis.autorange") is False,
                             timeout=3, what="the zoom")
                return True
            except TimeoutError:
                return False

        assert any(drag_zoom() for _ in range(3)), "could not zoom the loss chart"
        zoomed = gd.evaluate("g => g._fullLayout.xaxis.range.slice()")
        renders = int(gd.get_attribute("data-renders"))
        for _ in range(3):  # three ticks, each with new epochs
            old = epoch.inner_text()
            expect(epoch).not_to_have_text(old)
        assert page.evaluate("window.__curvewatch_marker") == "same page"  # no reload
        assert int(gd.get_attribute("data-renders")) > renders  # redrawn in place
        now = gd.evaluate("g => g._fullLayout.xaxis.range.slice()")
        assert now == pytest.approx(zoomed, rel=1e-6), "zoom was reset by the live refresh"
        shot(page, "run-live")
        # stop it from the page, its actions under the title (the trainer stops gracefully
        # after its epoch)
        page.get_by_role("button", name="Stop", exact=True).click()
        dfx.wait_for(lambda: dfx.tracking.read_run(fx.root / rid).state == "stopped",
                     timeout=60, every=0.2, what="the live run to stop")
    finally:
        if dfx.tracking.read_run(fx.root / rid).state == "running":
            dfx.trainer("stop", rid, "--runs-dir", str(fx.root), "--wait", "30")


def test_make_runs_demo_runs_fill_their_pages_epoch_by_epoch(tmp_path, browser):
    """What `make run` does on a fresh machine: the demo starts in the empty runs directory
    and the dashboard serves it; each demo run's page shows its epochs arriving.

    The three pages are open side by side (tabs of one browser), so every page is watched
    while its run is young, however long the others took to load on a busy machine. The
    server is started first, so the runs' pacing has only the pages' loading to cover (the
    demo's trainings, forked from the test's pre-imported trainer, start at once)."""
    from playwright.sync_api import expect
    expect.set_options(timeout=LOAD_TIMEOUT_MS)
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    ctx = browser.new_context(viewport={"width": 1400, "height": 1900})
    try:
        with streamlit_server(runs_dir, "streamlit-demo") as url:
            # paced slower than make run's minute: loading three pages under CI load must not
            # outlast a run (its epochs: 15 for the CNN, 8 s apart; 80 for the others, 1.5 s)
            started = dfx.trainer("demo", "--if-empty", "--runs-dir", str(runs_dir),
                                  "--seconds", "120")
            assert started.returncode == 0, started.stderr
            runs = sorted(dfx.tracking.list_runs(runs_dir), key=lambda r: r.name)
            assert len(runs) == 3
            pages = []
            for run in runs:
                pg = ctx.new_page()
                open_page(pg, f"{url}/run?run={run.id}")
                pages.append(pg)
            for run, pg in zip(runs, pages, strict=True):
                epoch = pg.get_by_test_id("stMetricValue").first
                expect(epoch).to_contain_text(f"/{run.epochs}")
                for _ in range(2):  # two live ticks, each with new epochs
                    old = epoch.inner_text()
                    expect(epoch).not_to_have_text(old)
                assert dfx.tracking.read_run(run.path).state == "running", run.name
            shot(pages[0], "demo-live")
    finally:
        ctx.close()
        for run in dfx.tracking.list_runs(runs_dir):
            dfx.trainer("stop", run.id, "--runs-dir", str(runs_dir), "--wait", "30")


EVIL = "![t](http://evil.example/beacon.png) [Run deleted - log in again](http://evil.example/x)"


def test_hostile_names_show_as_text_and_no_page_contacts_another_host(tmp_path, browser):
    """A run whose name, tags and stop reason are markdown aimed at another host: every page
    shows the words as text, draws no image or link to that host, and the browser asks no
    address but the dashboard's own. Requests leave the browser only through a guard that
    records and aborts any that is not for the loopback address, so nothing goes out even if
    this fails."""
    from urllib.parse import urlparse

    from playwright.sync_api import expect
    expect.set_options(timeout=LOAD_TIMEOUT_MS)
    runs = tmp_path / "runs"
    run = dfx.Run.create(runs, name=EVIL, tags=[EVIL], config=dfx.base_config(epochs=3),
                         epochs=3, heartbeat_seconds=0)
    for e in range(1, 4):
        run.log_epoch(epoch=e, **dfx.healthy(0)(e))
    run.finish("stopped", stop_reason=EVIL)
    elsewhere: list[str] = []

    def guard(route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()
    ctx = browser.new_context(viewport={"width": 1400, "height": 1900})
    ctx.route("**/*", guard)
    try:
        with streamlit_server(runs, "streamlit-hostile") as url:
            for path in ("/", f"/run?run={run.id}", f"/compare?runs={run.id}"):
                pg = ctx.new_page()
                open_page(pg, url + path)
                if path.startswith("/run"):
                    expect(pg.get_by_text("Run deleted - log in again").first).to_be_visible()
                assert pg.locator("img[src*='evil']").count() == 0, path
                assert pg.locator("a[href^='http'][href*='evil']").count() == 0, path
            shot(pg, "hostile-compare")
    finally:
        ctx.close()
    assert elsewhere == []
