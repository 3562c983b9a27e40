"""Property tests: arbitrary float series, including NaN and infinities, never make diagnose raise."""

from __future__ import annotations

import json

import pandas as pd
from hypothesis import HealthCheck, given, settings, strategies as st

from curvewatch.diagnosis import (
    KINDS,
    SEVERITIES,
    Finding,
    Thresholds,
    diagnose,
    should_stop,
    stopping_finding,
)

COLS = ["train_loss", "val_loss", "train_acc", "val_acc", "grad_norm", "grad_norm_max", "lr"]
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=0.0, max_value=10.0),
    st.sampled_from([0.0, 1.0, float("nan"), float("inf"), -float("inf"), 1e300, -1e-300]),
)

#: the chance-level loss: not known, or any positive scale (ln 2 .. ln 1000, MSE variances)
chances = st.one_of(st.none(), st.floats(0.01, 10.0))


@st.composite
def histories(draw):
    n = draw(st.integers(0, 40))
    cols = draw(st.lists(st.sampled_from(COLS), unique=True, max_size=len(COLS)))
    data = {"epoch": list(range(1, n + 1))}
    for c in cols:
        data[c] = draw(st.lists(values, min_size=n, max_size=n))
    return pd.DataFrame(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(1, 12), st.integers(1, 6), chances)
def test_arbitrary_series_never_raise_and_findings_are_well_formed(h, patience, window, chance):
    th = Thresholds(patience=patience, window=window, start_from_epoch=1)
    findings = diagnose(h, th, chance_loss=chance)
    kinds = [f.kind for f in findings]
    assert len(kinds) == len(set(kinds)) and kinds == sorted(kinds, key=KINDS.index)
    epochs = set(h["epoch"]) if len(h) else set()
    for f in findings:
        assert f.severity in SEVERITIES and f.start_epoch in epochs
        assert f.end_epoch is None or f.start_epoch <= f.end_epoch
        assert f.message.endswith(".") and f.advice
        assert Finding.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    stop_kinds = ["overfitting", "plateau", "divergence"]
    stop = should_stop(h, stop_kinds, th, chance_loss=chance)
    assert stop in findings + [None] and stop == stopping_finding(findings, stop_kinds)


@settings(max_examples=60, deadline=None)
@given(histories(), st.data(), chances)
def test_rows_after_t_never_change_the_findings_at_t(h, data, chance):
    if len(h) < 2:
        return
    t = data.draw(st.integers(1, len(h)))
    altered = h.copy()
    for c in h.columns:
        if c != "epoch" and t < len(h):
            altered.loc[altered.index[t:], c] = data.draw(st.lists(values, min_size=len(h) - t, max_size=len(h) - t))
    assert diagnose(altered.iloc[:t], chance_loss=chance) == diagnose(h.iloc[:t], chance_loss=chance)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=30), st.lists(st.sampled_from(["a", None, 3, "1.5"]), min_size=1))
def test_non_numeric_cells_and_layers_are_tolerated(xs, junk):
    h = pd.DataFrame({"epoch": range(1, len(xs) + 1), "val_loss": xs, "train_loss": xs})
    h["val_loss"] = h["val_loss"].astype(object)
    h.loc[0, "val_loss"] = junk[0]
    layers = pd.DataFrame({"epoch": range(1, len(xs) + 1), "a.weight": xs, "b.weight": [junk[0]] * len(xs)})
    before = h.copy()
    findings = diagnose(h, layers=layers)
    assert all(isinstance(f, Finding) and f.kind in KINDS for f in findings)
    pd.testing.assert_frame_equal(h, before)  # the caller's frame is read, never altered
