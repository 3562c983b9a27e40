"""The Run and Runs pages in a real browser (issue 16 points 9, 10, 11, 12, 14): every logged
scalar drawn by section, the view settings in the URL, the browser's dark preference, the
Runs table's fit and in-table selection, and a launch answered by its button and followed by
the URL. `streamlit run app.py` over runs written by tracking.Run (no training but the one
launched), driven by Debian's Chromium through Playwright; every wait is Playwright's
retrying `expect` or a poll with a deadline."""
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard_fixtures as dfx  # noqa: E402
from curvewatch.tracking import Run  # noqa: E402
from test_browser_dashboard import (  # noqa: E402
    CHROMIUM,
    LOAD_TIMEOUT_MS,
    open_page,
    streamlit_server,
)

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is absent (make test installs Debian's chromium)"),
]


def _curves(e: int) -> dict[str, float]:
    return dict(train_loss=2.0 / e, val_loss=2.2 / e, train_acc=1 - 1 / (e + 1),
                val_acc=1 - 1.2 / (e + 1), lr=0.01)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run logging scalars of its own (custom_temperature and custom_pressure share a
    prefix, my_metric stands alone), a plain one, and one still training (heartbeat on)."""
    root = tmp_path_factory.mktemp("runs")
    custom = Run.create(root, name="custom", config=dfx.base_config(lr=0.01, epochs=12),
                        epochs=12, heartbeat_seconds=0)
    t0 = 1_700_000_000.0
    for e in range(1, 13):
        custom.log_epoch(epoch=e, step=10 * e, time=t0 + 3 * e, custom_temperature=300.0 + e,
                         custom_pressure=1.0 / e, my_metric=0.1 * e, **_curves(e))
    custom.finish("completed")
    plain = Run.create(root, name="plain", config=dfx.base_config(lr=0.001, epochs=4),
                       epochs=4, heartbeat_seconds=0)
    for e in range(1, 5):
        plain.log_epoch(epoch=e, **_curves(e))
    plain.finish("completed")
    live = Run.create(root, name="live", config=dfx.base_config(epochs=50), epochs=50,
                      heartbeat_seconds=1)
    for e in range(1, 4):
        live.log_epoch(epoch=e, **_curves(e))
    yield {"root": root, "custom": custom.id, "plain": plain.id, "live": live.id}
    live.finish("stopped")


@pytest.fixture(scope="module")
def server(runs):
    with streamlit_server(runs["root"], "streamlit-run-page") as url:
        yield url


def new_page(browser, **context):
    from playwright.sync_api import expect
    expect.set_options(timeout=LOAD_TIMEOUT_MS)
    return browser.new_context(viewport={"width": 1400, "height": 1400}, **context).new_page()


def layout_of(page, key: str) -> dict:
    """The drawn plotly layout of the chart in the `.st-key-<key>` container."""
    plot = page.locator(f".st-key-{key} .js-plotly-plot").first
    plot.locator(".main-svg").first.wait_for()
    return plot.evaluate("el => ({yaxis: el._fullLayout.yaxis.type, "
                         "xtitle: el._fullLayout.xaxis.title.text, "
                         "title: el._fullLayout.title.text})")


def test_every_logged_scalar_is_drawn_in_a_section_per_prefix(server, runs, browser):
    from playwright.sync_api import expect
    page = new_page(browser)
    open_page(page, f"{server}/run?run={runs['custom']}")
    custom = page.locator(".st-key-run-section-0")
    expect(custom.get_by_role("heading", name="custom")).to_be_visible()
    expect(custom.locator(".js-plotly-plot")).to_have_count(2)
    expect(custom.locator(".gtitle", has_text="custom_temperature")).to_be_visible()
    expect(custom.locator(".gtitle", has_text="custom_pressure")).to_be_visible()
    other = page.locator(".st-key-run-section-1")
    expect(other.get_by_role("heading", name="Other scalars")).to_be_visible()
    expect(other.locator(".gtitle", has_text="my_metric")).to_be_visible()
    # the learning curves keep their own charts, a scalar is not drawn twice
    expect(page.locator(".st-key-run-chart-loss .gtitle")).to_have_text("Loss")
    expect(page.locator(".gtitle", has_text="val_loss")).to_have_count(0)
    page.context.close()


def test_a_shared_link_opens_the_same_view_and_a_changed_setting_goes_to_the_url(
        server, runs, browser):
    from playwright.sync_api import expect
    page = new_page(browser)
    open_page(page, f"{server}/run?run={runs['custom']}&x=time&smoothing=0.6&logy=true")
    expect(page.locator(".st-key-x").get_by_role("radio", name="time")).to_be_checked()
    expect(page.locator(".st-key-smoothing input[type=range]")).to_have_value("0.6")
    expect(page.locator(".st-key-logy input[type=checkbox]")).to_be_checked()
    loss = layout_of(page, "run-chart-loss")
    assert loss["yaxis"] == "log" and loss["xtitle"] == "wall time (s)"
    assert layout_of(page, "run-chart-acc")["yaxis"] == "linear"  # a bounded score stays linear
    scalar = page.locator("[class*='st-key-run-chart-scalar-'][class*='my_metric']")
    assert scalar.locator(".js-plotly-plot").evaluate("el => el._fullLayout.yaxis.type") == "log"
    # changing a setting writes it to the URL, so the link shared next shows it too
    page.locator(".st-key-x").get_by_text("step", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]x=step(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]logy=true(&|$)"))
    # the Compare page reads the same settings from its link
    open_page(page, f"{server}/compare?runs={runs['custom']},{runs['plain']}&x=time&logy=true")
    expect(page.locator(".st-key-x").get_by_role("radio", name="time")).to_be_checked()
    overlay = layout_of(page, "compare-chart-overlay")
    assert overlay["yaxis"] == "log" and overlay["xtitle"] == "wall time (s)"
    page.context.close()


def _luminance(css_color: str) -> float:
    r, g, b, *alpha = (float(v) for v in re.findall(r"[\d.]+", css_color))
    if alpha and alpha[0] == 0:
        return -1.0  # transparent: the page shows through
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_the_browsers_dark_preference_darkens_the_page_and_its_charts(server, runs, browser):
    from playwright.sync_api import expect
    page = new_page(browser, color_scheme="dark")
    open_page(page, f"{server}/run?run={runs['custom']}")
    app_bg = page.get_by_test_id("stApp").evaluate("el => getComputedStyle(el).backgroundColor")
    assert _luminance(app_bg) < 0.2, app_bg
    paper = page.locator(".st-key-run-chart-loss .main-svg").first
    expect(paper).to_be_visible()
    assert _luminance(paper.evaluate("el => getComputedStyle(el).backgroundColor")) < 0.2
    # so do the Compare page's charts
    open_page(page, f"{server}/compare?runs={runs['custom']},{runs['plain']}")
    overlay = page.locator(".st-key-compare-chart-overlay .main-svg").first
    expect(overlay).to_be_visible()
    assert _luminance(overlay.evaluate("el => getComputedStyle(el).backgroundColor")) < 0.2
    # a live chart (a component in an iframe) follows the same theme
    open_page(page, f"{server}/run?run={runs['live']}")
    frame = page.frame_locator(".st-key-run-chart-loss iframe")
    live_paper = frame.locator(".main-svg").first
    expect(live_paper).to_be_visible()
    assert _luminance(live_paper.evaluate("el => getComputedStyle(el).backgroundColor")) < 0.2
    text = frame.locator(".gtitle").first.evaluate("el => getComputedStyle(el).fill")
    assert _luminance(text) > 0.6, text  # light text on the dark page
    page.context.close()


def test_the_runs_table_fits_1400_px_and_selects_in_the_table_itself(server, runs, browser):
    from playwright.sync_api import expect
    page = new_page(browser)
    open_page(page, f"{server}/")
    table = page.get_by_test_id("stDataFrame").first
    expect(table).to_be_visible()
    scroller = table.locator(".dvn-scroller").first
    expect(scroller).to_be_attached()
    fits = scroller.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert fits[0] <= fits[1], f"the table scrolls sideways: {fits}"
    compare = page.get_by_role("button", name="Compare")
    expect(compare).to_be_disabled()
    box = table.bounding_box()
    for row in (0, 1):  # tick the first two rows' boxes, in the table
        page.mouse.click(box["x"] + 16, box["y"] + 35 + 35 * row + 17)
        expect(page).to_have_url(re.compile(r"[?&]runs=" + r"[^&]+,?" * (row + 1)))
    expect(compare).to_be_enabled()
    page.context.close()


def test_a_launch_answers_by_its_button_then_the_url_follows_to_the_new_run(server, runs,
                                                                             browser):
    """Launch's spinner and answer sit under its button, and the page it opens is the page
    in the address bar (/run?run=<id>), not a Run page under /launch."""
    from playwright.sync_api import expect
    page = new_page(browser)
    open_page(page, f"{server}/launch")
    page.locator(".st-key-launch-epochs input").fill("abc")
    page.get_by_role("button", name="Launch").click()
    answer = page.get_by_test_id("stForm").get_by_test_id("stAlertContentError")
    expect(answer).to_contain_text("epochs must be")
    button_box = page.get_by_role("button", name="Launch").bounding_box()
    assert 0 < answer.bounding_box()["y"] - button_box["y"] < 200  # right under the button
    for option, value in (("epochs", "1"), ("hidden", "8"), ("dataset", "blobs")):
        field = page.locator(f".st-key-launch-{option} input")
        field.fill(value)
        if option == "dataset":  # a selectbox that takes a typed option
            field.press("Enter")
    page.locator(".st-key-launch-name input").fill("launched-here")
    page.get_by_role("button", name="Launch").click()
    expect(page).to_have_url(re.compile(r"/run\?run=[^&]*launched-here"), timeout=120_000)
    expect(page.get_by_role("heading", name="launched-here")).to_be_visible()
    page.context.close()
