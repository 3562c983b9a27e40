"""The detector registry (curvewatch/diagnosis/detectors/) is the single source of the kinds, the
stop kinds, the dashboard's span kinds and of which thresholds each detector reads."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import curvewatch.diagnosis as diagnosis
from curvewatch.diagnosis import detectors
from curvewatch.diagnosis.detectors import KINDS, REGISTRY, SPAN_KINDS, STOP_ALSO, STOP_KINDS
from curvewatch.diagnosis.thresholds import Thresholds

ROOT = Path(__file__).resolve().parents[1]


def _module_of(spec):
    return inspect.getmodule(spec.detect)


def test_every_detector_module_is_registered_once_and_declares_its_kinds():
    files = {p.stem for p in Path(detectors.__file__).parent.glob("*.py")} - {"__init__", "spec"}
    modules = [_module_of(s).__name__.rsplit(".", 1)[1] for s in REGISTRY]
    assert sorted(modules) == sorted(files) and len(set(modules)) == len(modules)
    assert KINDS == tuple(k for s in REGISTRY for k in s.kinds) and len(set(KINDS)) == len(KINDS)
    assert diagnosis.KINDS is KINDS


def test_stop_and_span_kinds_are_derived_from_the_specs_and_the_trainer_uses_them():
    from curvewatch.dashboard.figures import SPAN_KINDS as drawn
    from curvewatch.trainer.config import EARLY_STOP_KINDS

    assert set(STOP_KINDS) == {s.kind for s in REGISTRY if s.stop_rank is not None}
    assert EARLY_STOP_KINDS is STOP_KINDS
    assert STOP_ALSO == {"plateau": ("converged",)}  # possible_overfitting never stops
    assert all(set(s.stops_too) <= set(s.kinds[1:]) for s in REGISTRY)
    assert set(drawn) == set(SPAN_KINDS) == {k for s in REGISTRY if s.span for k in s.kinds}


def test_a_spec_reads_requires_and_is_suppressed_only_by_kinds_reported_before_it():
    seen: set[str] = set()
    for s in REGISTRY:
        for k in (*s.reads, *s.requires, *s.suppressed_by):
            assert k in seen, f"{s.kind} names {k!r}, which no earlier detector reports"
        seen.update(s.kinds)


def test_each_spec_declares_exactly_the_thresholds_its_module_reads():
    # (the shared helpers in history, signals and layers read a few more for their callers)
    claimed: set[str] = set()
    for s in REGISTRY:
        read = set(re.findall(r"\bth\.(\w+)", inspect.getsource(_module_of(s))))
        assert set(s.thresholds) == read, s.kind
        claimed |= read
    shared = set()
    for mod in ("history", "signals", "layers"):
        source = (ROOT / "curvewatch" / "diagnosis" / f"{mod}.py").read_text()
        shared |= set(re.findall(r"\bth\.(\w+)", source))
    assert set(Thresholds.names()) == claimed | shared  # no field that nothing reads


def test_the_thresholds_table_in_the_docs_lists_every_field_with_its_default():
    text = (ROOT / "docs" / "diagnosis.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, flags=re.M))
    for name, default, _ in Thresholds.describe():
        assert name in rows, name
        assert float(rows[name]) == default, name


def test_the_run_page_draws_every_span_kind_as_a_labelled_span_possible_overfitting_too():
    import pandas as pd

    from curvewatch.dashboard import figures

    h = pd.DataFrame({"epoch": range(1, 41), "train_loss": [1.0 / e for e in range(1, 41)],
                      "val_loss": [1.0 / e + 0.01 * e for e in range(1, 41)]})
    findings = [{"kind": k, "severity": "info", "start_epoch": 20, "end_epoch": None,
                 "metric": "val_loss", "message": k, "advice": "", "evidence": {}}
                for k in SPAN_KINDS]
    fig = figures.learning_curve_figure(h, findings, metric="loss")
    shapes = {s.name: s for s in fig.layout.shapes}
    assert set(SPAN_KINDS) <= set(figures.CURVE_KINDS) | set(figures.GRADIENT_KINDS)
    for k in set(SPAN_KINDS) & set(figures.CURVE_KINDS):  # (the gradient chart draws the rest)
        span = shapes[f"flag-{k}"]
        assert (span.x0, span.x1) == (20, 40) and span.fillcolor == figures.SPAN_KINDS[k]
    texts = [a.text for a in fig.layout.annotations]
    assert "possible overfitting →" in texts  # ongoing: the arrow says it runs on
