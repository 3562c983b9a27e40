"""The Run page of a long run (issue 17): each trace drawn at screen resolution keeping its
extremes, and an epoch span from the URL drawn at full resolution (the zoom re-reads it)."""
import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curvewatch.dashboard.downsample import SCREEN_POINTS  # noqa: E402
from curvewatch.tracking import Run  # noqa: E402

EPOCHS = 5_000
RUN_PAGE = ROOT / "curvewatch" / "dashboard" / "views" / "run.py"


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """A finished writer run of EPOCHS epochs, and the values it logged."""
    root = tmp_path_factory.mktemp("long-runs")
    rng = np.random.default_rng(17)
    e = np.arange(1, EPOCHS + 1)
    train = 0.05 + 2 * np.exp(-e / 800) + rng.normal(0, 0.01, EPOCHS)
    val = 0.3 + 2 * np.exp(-e / 800) + rng.normal(0, 0.02, EPOCHS)
    run = Run.create(root, name="long", config={}, epochs=EPOCHS, heartbeat_seconds=0)
    for i in range(EPOCHS):
        run.log_epoch(epoch=int(e[i]), train_loss=float(train[i]), val_loss=float(val[i]),
                      grad_norm=1.0, lr=1e-3)
    run.finish("completed")
    other = Run.create(root, name="other", config={}, epochs=2_500, heartbeat_seconds=0)
    for ep in range(1, 2_501):
        other.log_epoch(epoch=ep, train_loss=1 / ep, val_loss=1 / ep + 0.1)
    other.finish("completed")
    return root, run.path.name, train, val, other.path.name


def loss_traces(at: AppTest) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    for el in at.get("plotly_chart"):
        if "run-chart-loss" in el.proto.id:
            spec = json.loads(el.proto.spec)
            return {t["name"]: (arr(t["x"]), arr(t["y"])) for t in spec["data"]
                    if t.get("name") in ("train", "val")}, spec["layout"]
    raise AssertionError("no loss chart")


def arr(v) -> np.ndarray:
    if isinstance(v, dict) and "bdata" in v:  # plotly 6's typed arrays
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.array(v, dtype=float)


def open_run(monkeypatch, root: Path, run_id: str, **query) -> AppTest:
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    at = AppTest.from_file(str(RUN_PAGE), default_timeout=60)
    at.query_params["run"] = run_id
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def test_a_long_run_is_drawn_at_screen_resolution_with_its_extremes(long_run, monkeypatch):
    root, run_id, train, val, _ = long_run
    at = open_run(monkeypatch, root, run_id)
    assert not at.exception
    assert at.slider(key="epochs").value == (1, EPOCHS)
    traces, _ = loss_traces(at)
    for name, logged in (("train", train), ("val", val)):
        x, y = traces[name]
        assert len(x) <= SCREEN_POINTS + 2 < EPOCHS
        best = int(np.argmin(logged))
        assert best + 1 in x and y[list(x).index(best + 1)] == logged[best]
        assert logged.max() in y  # the worst point too


def test_an_epoch_span_in_the_url_is_drawn_at_full_resolution(long_run, monkeypatch):
    root, run_id, train, val, _ = long_run
    at = open_run(monkeypatch, root, run_id, epochs=["2001", "2600"])
    assert not at.exception
    assert at.slider(key="epochs").value == (2001, 2600)
    traces, layout = loss_traces(at)
    x, y = traces["val"]
    np.testing.assert_array_equal(x, np.arange(2001, 2601))  # every epoch of the span
    np.testing.assert_array_equal(y, val[2000:2600])
    assert layout["xaxis"]["range"] == [2001, 2600]


def test_another_run_picked_in_the_sidebar_starts_with_all_its_epochs(long_run, monkeypatch):
    root, run_id, _, _, other = long_run
    at = open_run(monkeypatch, root, run_id, epochs=["4001", "4600"])
    at.sidebar.selectbox[0].set_value(other).run()
    assert not at.exception
    assert at.slider(key="epochs").value == (1, 2_500)  # not the first run's span
    traces, _ = loss_traces(at)
    assert traces["val"][0].min() == 1 and traces["val"][0].max() == 2_500
