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
    assert all(k in KINDS for also in STOP_ALSO.values() for k in also)
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
