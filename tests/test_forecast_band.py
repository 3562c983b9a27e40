"""The Run page draws the validation-loss forecast as a dashed band to the planned end
(dashboard/forecast_band.py, issue 13): the traces from a formula curve, and the page itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from curvewatch.dashboard.forecast_band import NAME, band_traces
from curvewatch.tracking import Run

ROOT = Path(__file__).resolve().parents[1]


def falling(n: int) -> pd.DataFrame:
    """A noisy power-law validation loss (and a training loss below it), epochs 1..n."""
    e = np.arange(1, n + 1)
    noise = 1 + 0.01 * np.random.default_rng(0).standard_normal(n)
    return pd.DataFrame({"epoch": e, "train_loss": 0.2 + 1.5 * e ** -0.7,
                         "val_loss": (0.3 + 1.5 * e ** -0.7) * noise})


def test_the_band_runs_dashed_from_the_last_epoch_to_the_planned_end():
    high, low, centre = band_traces(falling(40), 120)
    assert centre.name == NAME and centre.line.dash == "dash"
    assert high.line.dash == low.line.dash == "dot" and low.fill == "tonexty"
    assert centre.x[0] == 40 and centre.x[-1] == 120
    assert all(lo <= c <= hi for lo, c, hi in zip(low.y, centre.y, high.y, strict=True))
    assert "more expected by epoch 120" in centre.hovertemplate


def test_no_band_without_a_future_epoch_or_anything_to_say():
    h = falling(40)
    assert band_traces(h, 40) == [] and band_traces(h, None) == []
    assert band_traces(h.iloc[:5], 120) == []  # too short to fit a law
    assert band_traces(h.drop(columns="val_loss"), 120) == []


def test_the_run_page_draws_the_band_on_the_loss_chart(tmp_path, monkeypatch):
    with Run.create(tmp_path, name="stopped-early", config={"epochs": 120}, epochs=120) as run:
        for e in range(1, 41):
            run.log_epoch(e, train_loss=0.2 + 1.5 * e ** -0.7,
                          val_loss=(0.3 + 1.5 * e ** -0.7) * (1 + 0.01 * math.sin(7 * e)))
        run_id = run.id
    monkeypatch.setenv("CURVEWATCH_RUNS", str(tmp_path))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "curvewatch" / "dashboard" / "views" / "run.py"),
                           default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception
    specs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")
             if "run-chart-loss" in el.proto.id]
    assert specs, "no loss chart"
    names = [t.get("name") for t in specs[0]["data"]]
    assert NAME in names
    band = specs[0]["data"][names.index(NAME)]
    assert band["line"]["dash"] == "dash" and band["x"][-1] == 120
    cards = "\n".join(str(e.value) for e in [*at.info, *at.warning, *at.markdown])
    assert "more expected by epoch 120" in cards  # the still-improving card says the gain
