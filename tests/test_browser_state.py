"""In Chromium (issue 16 points 1 and 7): Compare says which runs the step axis cannot draw
and the Run page of a run without steps offers no step axis; after Resume and Stop the Run
page follows the run by itself (header, Live toggle, buttons) with no reload.

The server and page helpers are tests/test_browser_dashboard.py's; these runs are built in
their own folder, so the shared fixture's trainings are not needed. Every wait is
Playwright's `expect` retrying against a deadline."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard_fixtures as dfx  # noqa: E402
from test_browser_dashboard import (  # noqa: E402
    CHROMIUM,
    LOAD_TIMEOUT_MS,
    open_page,
    shot,
    streamlit_server,
)

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is absent (make test installs Debian's chromium)"),
]
#: a resumed run must import torch and reload its data before it writes `running`
FOLLOW_TIMEOUT_MS = 90_000


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect
    expect.set_options(timeout=LOAD_TIMEOUT_MS)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1900})
    yield ctx.new_page()
    ctx.close()


def _writer_run(root: Path, name: str, *, steps: bool) -> str:
    run = dfx.tracking.Run.create(root, name=name, config={}, epochs=6, heartbeat_seconds=0)
    for e in range(1, 7):
        run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=1.2 / e,
                      **({"step": 50 * e} if steps else {}))
    run.finish("completed")
    return run.id


def test_compare_names_the_run_the_step_axis_cannot_draw(page):
    from playwright.sync_api import expect
    root = dfx.empty_runs_dir()
    imported = _writer_run(root, "imported-tb", steps=True)
    own = _writer_run(root, "own-loop", steps=False)
    with streamlit_server(root, "streamlit-state-axes") as url:
        open_page(page, f"{url}/compare?runs={imported},{own}")
        x_axis = page.get_by_test_id("stRadio").filter(has_text="x axis")
        x_axis.get_by_text("step", exact=True).click()
        warning = page.get_by_test_id("stAlert").filter(has_text="Not drawn on the step axis")
        expect(warning).to_contain_text("own-loop")
        expect(warning).not_to_contain_text("imported-tb")
        legend = page.locator(".st-key-compare-chart-overlay .legend .traces")
        expect(legend).to_have_count(1)
        expect(legend).to_contain_text("imported-tb")
        shot(page, "compare-step-axis")
        open_page(page, f"{url}/run?run={own}")
        axis = page.get_by_test_id("stRadio").filter(has_text="x axis")
        expect(axis).to_contain_text("time")
        expect(axis.get_by_text("step", exact=True)).to_have_count(0)


def test_after_resume_and_stop_the_run_page_follows_the_run(page):
    from playwright.sync_api import expect
    root = dfx.empty_runs_dir()
    rid = dfx.started_id(dfx.trainer(
        "run", "--runs-dir", str(root), "--dataset", "digits", "--hidden", "16", "--epochs",
        "300", "--min-epoch-seconds", "0.2", *dfx.THREADS, "--detach", "--name", "follow"))
    path = root / rid
    try:
        dfx.wait_for(lambda: dfx.tracking.read_run(path).epoch >= 2, timeout=120, every=0.1,
                     what="two epochs")
        dfx.tracking.request_stop(path)
        dfx.wait_for(lambda: dfx.tracking.read_run(path).state == "stopped", timeout=120,
                     every=0.1, what="the run to stop")
        with streamlit_server(root, "streamlit-state-follow") as url:
            open_page(page, f"{url}/run?run={rid}")
            live = page.locator(".st-key-run-live")
            resume = page.locator(".st-key-run-resume").get_by_role("button", name="Resume")
            stop = page.locator(".st-key-run-stop").get_by_role("button", name="Stop")
            expect(live).to_have_count(0)
            expect(stop).to_be_disabled()
            resume.click()
            # no reload: the page sees the resumed run write `running` and redraws
            expect(live).to_be_visible(timeout=FOLLOW_TIMEOUT_MS)
            expect(resume).to_be_disabled()
            expect(stop).to_be_enabled()
            shot(page, "run-resumed")
            stop.click()
            expect(live).to_have_count(0, timeout=FOLLOW_TIMEOUT_MS)
            expect(resume).to_be_enabled()
            expect(stop).to_be_disabled()
            assert dfx.tracking.read_run(path).state == "stopped"
    finally:
        if dfx.tracking.read_run(path).state == "running":
            dfx.tracking.request_stop(path)
            dfx.wait_for(lambda: dfx.tracking.read_run(path).state != "running",
                         timeout=120, every=0.2, what="the run to stop at the end")
