"""Damaged run folders and arbitrary input never break a reader: an unreadable run is listed
with its reason, what can be read soundly is read, and every other run still loads."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from curvewatch.tracking import HistoryReader, Run, derive_state, list_runs, read_history
from curvewatch.tracking.jsonio import from_strict
from curvewatch.tracking.jsonl import read_from


def _good_run(root: Path, name: str = "good") -> Path:
    with Run.create(root, name=name, epochs=3, heartbeat_seconds=0) as run:
        for e in range(3):
            run.log_epoch(train_loss=1.0 / (e + 1), val_loss=1.2 / (e + 1))
    return run.path


def _damage(run: Path, kind: str, outside: Path) -> None:
    if kind == "garbage run.json":
        (run / "run.json").write_bytes(os.urandom(300))
    elif kind == "invalid utf-8 run.json":
        (run / "run.json").write_bytes(b'{"name": "\xff\xfe"}')
    elif kind == "truncated run.json":
        text = (run / "run.json").read_bytes()
        (run / "run.json").write_bytes(text[: len(text) // 2])
    elif kind == "empty run.json":
        (run / "run.json").write_bytes(b"")
    elif kind == "missing status.json":
        (run / "status.json").unlink()
    elif kind == "status.json not an object":
        (run / "status.json").write_text('"running"')
    elif kind == "huge status.json":
        with open(run / "status.json", "wb") as f:
            f.truncate(64 << 20)  # sparse: 64 MiB of zeros
    elif kind == "symlink to outside":
        target = outside / "elsewhere"
        target.mkdir(exist_ok=True)
        (target / "run.json").write_text('{"name": "trap"}')
        run.rename(run.with_name(run.name + "-gone"))
        run.symlink_to(target)
    else:
        raise AssertionError(kind)


DAMAGES = ["garbage run.json", "invalid utf-8 run.json", "truncated run.json", "empty run.json",
           "missing status.json", "status.json not an object", "huge status.json",
           "symlink to outside"]


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_run_is_listed_as_unreadable_with_its_reason_and_others_load(kind, tmp_path):
    runs = tmp_path / "runs"
    good = _good_run(runs, "good")
    victim = _good_run(runs, "victim")
    _damage(victim, kind, tmp_path)
    infos = {i.id: i for i in list_runs(runs)}
    assert infos[good.name].state == "completed" and infos[good.name].best_epoch == 3
    bad = infos[victim.name]
    assert bad.state == "unreadable" and bad.problem, bad
    assert len(bad.problem) < 300  # a reason, not a dump


def test_a_10_mb_metrics_line_is_skipped_with_a_reason_and_the_rest_is_read(tmp_path):
    run = _good_run(tmp_path)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"epoch": 4, "blob": "' + b"x" * (10 << 20) + b'"}\n')
        f.write(b'{"epoch": 5, "val_loss": 0.1}\n')
    reader = HistoryReader(run)
    assert reader.read()["epoch"].tolist() == [1, 2, 3, 5]
    assert len(reader.problems) == 1 and "limit" in reader.problems[0]


def test_metrics_out_of_order_or_duplicated_read_sorted_with_the_last_record_kept(tmp_path):
    run = _good_run(tmp_path)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"epoch": 2, "val_loss": 9.0}\n{"epoch": 1.5}\n{"epoch": true}\n')
    h = read_history(run)
    assert h["epoch"].tolist() == [1, 2, 3] and h.loc[1, "val_loss"] == 9.0


finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.sampled_from(["NaN", "Infinity", "-Infinity"]))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), finite_or_not, st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_any_bytes_in_a_jsonl_file_read_without_raising(tmp_path, data):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(data)
    chunk = read_from(path)
    assert chunk.offset <= len(data)
    assert all(isinstance(r, dict) for r in chunk.records)
    HistoryReader(tmp_path).read()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.dictionaries(st.sampled_from(
    ["epoch", "train_loss", "val_loss", "val_acc", "lr", "x"]), json_values, max_size=6),
    max_size=12))
def test_any_records_make_a_history_frame_without_raising(tmp_path, records):
    import json
    path = tmp_path / "metrics.jsonl"
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r, allow_nan=True) + "\n")
    frame = read_history(tmp_path)
    assert "epoch" in frame.columns
    assert frame["epoch"].is_monotonic_increasing and frame["epoch"].is_unique


@settings(max_examples=300, deadline=None)
@given(status=st.dictionaries(st.sampled_from(
    ["state", "pid", "host", "updated_at", "heartbeat_seconds", "pid_start"]), json_values))
def test_any_status_dict_derives_a_state_without_raising(status):
    assert isinstance(derive_state(status, now=1e9), str)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_json=json_values, status_json=json_values)
def test_any_json_in_run_and_status_files_lists_without_raising(tmp_path, run_json, status_json):
    import json
    d = tmp_path / "r"
    d.mkdir(exist_ok=True)
    (d / "run.json").write_text(json.dumps(run_json, allow_nan=True))
    (d / "status.json").write_text(json.dumps(status_json, allow_nan=True))
    [info] = list_runs(tmp_path)
    assert info.state in ("running", "completed", "stopped", "early_stopped", "failed",
                          "crashed", "unreadable")
    assert (info.state == "unreadable") == (info.problem is not None)
    info.epoch, info.epochs, info.best_val_loss, info.best_epoch  # noqa: B018 - must not raise


def test_strict_json_decoding_keeps_ordinary_strings():
    assert from_strict({"a": "NaN-ish", "b": ["Infinity"]})["a"] == "NaN-ish"
    assert math.isinf(from_strict({"b": ["Infinity"]})["b"][0])
