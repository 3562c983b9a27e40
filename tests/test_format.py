"""The run-folder format: strict JSON, whole-line appends, tolerant incremental reads,
derived states, safe run ids and paths."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from curvewatch.tracking import (
    HistoryReader,
    Run,
    RunNotFound,
    derive_state,
    list_runs,
    read_history,
    read_layers,
    read_run,
    read_steps,
    run_path,
)
from curvewatch.tracking.jsonio import atomic_write_json, dumps, loads, read_json
from curvewatch.tracking.jsonl import JsonlAppender, read_from
from curvewatch.tracking.paths import publish_run_dir, slugify


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1.5, 0.0, -2.0])
def test_non_finite_floats_round_trip_through_strict_json(value):
    text = dumps({"x": value, "nested": [value, {"y": value}]})
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in strict JSON"))
    back = loads(text)
    for got in (back["x"], back["nested"][0], back["nested"][1]["y"]):
        assert (math.isnan(got) and math.isnan(value)) or got == value


def test_keys_and_scalars_are_spelled_the_same_with_or_without_a_nan_in_the_record():
    """A record with a NaN takes the slow, converting path; one without takes json's C
    encoder. Both must write the same text for the same keys and numbers."""
    import numpy as np
    import torch

    record = {"a": 1.5, 3: 2, None: 0, True: 1}
    plain, with_nan = json.loads(dumps(record)), json.loads(dumps({**record, "x": math.nan}))
    assert with_nan == {**plain, "x": "NaN"}
    assert set(plain) == {"a", "3", "null", "true"}
    assert json.loads(dumps({(1, 2): "a key json cannot spell"})) == \
        {"(1, 2)": "a key json cannot spell"}
    assert loads(dumps({"t": torch.tensor(2.5), "n": np.float32(0.5), "i": np.int64(7)})) == \
        {"t": 2.5, "n": 0.5, "i": 7}


def test_nan_loss_is_kept_in_the_history(tmp_path):
    with Run.create(tmp_path, name="nan", heartbeat_seconds=0) as run:
        run.log_epoch(train_loss=1.0, val_loss=math.nan)
        run.log_epoch(train_loss=math.inf, val_loss=-math.inf)
    h = read_history(run.path)
    assert math.isnan(h.loc[0, "val_loss"])
    assert h.loc[1, "train_loss"] == math.inf and h.loc[1, "val_loss"] == -math.inf


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "status.json"
    atomic_write_json(path, {"state": "running"})
    atomic_write_json(path, {"state": "completed", "x": [1, 2]})
    assert read_json(path) == {"state": "completed", "x": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    atomic_write_json(path, {"ok": 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_json(path, {"ok": 2})
    monkeypatch.undo()
    assert read_json(path) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_torn_last_line_is_ignored_until_it_is_complete(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epoch": 1, "val_loss": 0.5}\n{"epoch": 2, "val_lo')
    first = read_from(path)
    assert [r["epoch"] for r in first.records] == [1] and first.problems == []
    with open(path, "ab") as f:
        f.write(b'ss": 0.4}\n')
    second = read_from(path, first.offset)
    assert second.records == [{"epoch": 2, "val_loss": 0.4}]
    assert second.offset == path.stat().st_size


def test_corrupt_middle_line_is_skipped_and_reported(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epoch": 1}\n\xff\xfe garbage\n[1, 2]\n{"epoch": 2}\n')
    chunk = read_from(path)
    assert [r["epoch"] for r in chunk.records] == [1, 2]
    assert len(chunk.problems) == 2
    assert "not valid JSON" in chunk.problems[0] and "not an object" in chunk.problems[1]


def test_failed_append_leaves_no_partial_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    out = JsonlAppender(path)
    out.append({"epoch": 1})
    real_write = os.write

    def half_then_fail(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        out.append({"epoch": 2, "val_loss": 0.25})
    monkeypatch.undo()
    out.append({"epoch": 3})
    assert [r["epoch"] for r in read_from(path).records] == [1, 3]
    assert read_from(path).problems == []


def test_a_short_write_then_an_error_cuts_back_to_the_line_start_of_a_reopened_file(
        tmp_path, monkeypatch):
    # The appender keeps where the next line starts in memory (no fstat per line): it must
    # be right for a file that held lines before it was opened, and after a short write.
    path = tmp_path / "metrics.jsonl"
    JsonlAppender(path).append({"epoch": 1})
    out = JsonlAppender(path)
    out.append({"epoch": 2})
    real_write, calls = os.write, []

    def short_then_fail(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_fail)
    with pytest.raises(OSError, match="No space"):
        out.append({"epoch": 3, "val_loss": 0.25})
    monkeypatch.undo()
    out.append({"epoch": 4})
    assert [r["epoch"] for r in read_from(path).records] == [1, 2, 4]
    assert read_from(path).problems == []


def test_status_latest_is_the_last_record_between_status_writes(tmp_path):
    # status.json is rewritten at most once a second; its `latest` is filled in when it is
    # written or read, and must then be the last record (nested values left out), not one
    # the caller changed after logging it.
    with Run.create(tmp_path, name="latest", heartbeat_seconds=0) as run:
        for epoch in range(1, 4):
            record = run.log_epoch(val_loss=1.0 / epoch, extra={"a": 1})
        record["val_loss"] = 99.0
        assert run.status["latest"] == {"epoch": 3, "val_loss": 1 / 3,
                                        "time": record["time"]}
        run.log_epoch(val_loss=0.125)
    st = read_run(run.path).status
    assert st["latest"]["epoch"] == 4 and st["latest"]["val_loss"] == 0.125
    assert "extra" not in st["latest"]


def test_history_reader_parses_only_appended_bytes(tmp_path):
    run = Run.create(tmp_path, name="live", heartbeat_seconds=0)
    reader = HistoryReader(run.path)
    assert list(reader.read()["epoch"]) == []
    run.log_epoch(train_loss=1.0, val_loss=1.1)
    run.log_epoch(train_loss=0.9, val_loss=1.0)
    assert list(reader.read()["epoch"]) == [1, 2]
    offset = reader.offset
    run.log_epoch(train_loss=0.8, val_loss=0.95, new_metric=3.0)
    frame = reader.read()
    assert list(frame["epoch"]) == [1, 2, 3] and reader.offset > offset
    assert frame["new_metric"].iloc[-1] == 3.0  # unknown fields are kept
    run.finish()


def test_history_is_sorted_and_a_repeated_epoch_keeps_its_last_record(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "metrics.jsonl").write_text(
        '{"epoch": 2, "val_loss": 2}\n{"epoch": 1, "val_loss": 1}\n{"epoch": 2, "val_loss": 3}\n'
        '{"epoch": "x"}\n{"epoch": 0}\n')
    h = read_history(d)
    assert list(h["epoch"]) == [1, 2] and list(h["val_loss"]) == [1, 3]


def test_missing_optional_files_read_as_empty(tmp_path):
    run = Run.create(tmp_path, name="bare", heartbeat_seconds=0)
    run.finish()
    assert read_layers(run.path).empty and read_steps(run.path).empty
    assert list(read_history(run.path).columns) == ["epoch"]


def test_layers_and_steps_read_back(tmp_path):
    with Run.create(tmp_path, name="l", heartbeat_seconds=0) as run:
        run.log_step(5, loss=0.5, grad_norm=1.5)
        run.log_epoch(train_loss=1.0, layers={"0.weight": 0.5, "0.bias": 0.1})
        run.log_epoch(train_loss=0.9, layers={"0.weight": 0.4, "0.bias": math.nan})
    layers = read_layers(run.path)
    assert list(layers.columns) == ["epoch", "0.weight", "0.bias"]
    assert layers["0.weight"].tolist() == [0.5, 0.4] and math.isnan(layers["0.bias"][1])
    assert read_steps(run.path).to_dict("records") == [{"step": 5, "loss": 0.5,
                                                        "grad_norm": 1.5}]


def test_context_manager_records_completed_failed_and_stopped(tmp_path):
    with Run.create(tmp_path, name="ok", heartbeat_seconds=0) as ok:
        ok.log_epoch(val_loss=1.0)
    with pytest.raises(ZeroDivisionError):
        with Run.create(tmp_path, name="boom", heartbeat_seconds=0) as boom:
            raise ZeroDivisionError("division by zero")
    with pytest.raises(KeyboardInterrupt):
        with Run.create(tmp_path, name="ctrl-c", heartbeat_seconds=0) as stopped:
            raise KeyboardInterrupt
    assert read_run(ok.path).state == "completed"
    failed = read_run(boom.path)
    assert failed.state == "failed" and "ZeroDivisionError" in failed.status["error"]
    assert read_run(stopped.path).state == "stopped"


def test_status_tracks_best_validation_loss(tmp_path):
    with Run.create(tmp_path, name="best", epochs=4, heartbeat_seconds=0) as run:
        for vl in (1.0, 0.5, math.nan, 0.7):
            run.log_epoch(val_loss=vl)
    st = read_run(run.path).status
    assert (st["best_epoch"], st["best_val_loss"], st["epoch"], st["epochs"]) == (2, 0.5, 4, 4)


def test_epochs_must_increase(tmp_path):
    run = Run.create(tmp_path, name="order", heartbeat_seconds=0)
    run.log_epoch(epoch=3, val_loss=1.0)
    with pytest.raises(ValueError, match="greater than the last logged epoch 3, got 3"):
        run.log_epoch(epoch=3, val_loss=1.0)
    run.finish()


def test_resuming_clears_a_stop_request_left_from_before(tmp_path):
    """A group's stop can reach a member just after it ended: the STOP file outlives the run,
    and must not stop it again the moment it is resumed."""
    run = Run.create(tmp_path, name="r", heartbeat_seconds=0)
    run.log_epoch(train_loss=1.0, val_loss=1.0)
    run.finish("stopped", stop_reason="stop requested (STOP file)")
    (run.path / "STOP").write_text("")
    again = Run.reopen(run.path, heartbeat_seconds=0)
    assert not again.stop_requested()
    again.close()
    (run.path / "STOP").write_text("")
    worker = Run.reopen(run.path, resumed=False, heartbeat_seconds=0)  # a detached launch's
    assert worker.stop_requested()  # worker taking over its new folder keeps a request
    worker.close()


def test_close_and_finish_are_safe_to_call_twice(tmp_path):
    run = Run.create(tmp_path, name="twice", heartbeat_seconds=0)
    run.finish("stopped")
    run.finish("completed")
    run.close()
    assert read_run(run.path).state == "stopped"


def test_heartbeat_refreshes_status_while_running(tmp_path):
    run = Run.create(tmp_path, name="beat", heartbeat_seconds=0.05)
    first = read_run(run.path).status["updated_at"]
    wait_until = time.monotonic() + 10
    while read_run(run.path).status["updated_at"] == first:
        assert time.monotonic() < wait_until, "heartbeat never refreshed status.json"
        time.sleep(0.02)
    run.finish()


def test_running_state_is_derived_as_crashed_when_the_process_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    now = time.time()
    alive = {"state": "running", "pid": os.getpid(), "host": os.uname().nodename,
             "updated_at": now, "heartbeat_seconds": 5}
    assert derive_state(alive, host=os.uname().nodename) == "running"
    assert derive_state({**alive, "pid": proc.pid}, host=os.uname().nodename) == "crashed"


def test_running_state_is_derived_as_crashed_when_the_heartbeat_is_stale():
    status = {"state": "running", "pid": None, "host": "elsewhere", "updated_at": 1000.0,
              "heartbeat_seconds": 5}
    assert derive_state(status, now=1000.0 + 29) == "running"
    assert derive_state(status, now=1000.0 + 31) == "crashed"
    assert derive_state({**status, "state": "completed"}, now=10**10) == "completed"


def test_creating_a_run_removes_staging_folders_left_by_dead_creators_only(tmp_path):
    from curvewatch.tracking.paths import STALE_STAGING_SECONDS

    def folder(name: str, age: float) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text("{}")
        then = time.time() - age
        os.utime(tmp_path / name, (then, then))
        return tmp_path / name

    stale = folder(".creating-abandoned", STALE_STAGING_SECONDS + 60)
    in_progress = folder(".creating-busy", 5)
    unrelated = folder(".cache", STALE_STAGING_SECONDS * 10)
    run = Run.create(tmp_path, name="next", heartbeat_seconds=0)
    run.finish()
    assert not stale.exists()
    assert in_progress.exists() and unrelated.exists()
    assert [r.id for r in list_runs(tmp_path)] == [run.id]


def test_run_ids_are_distinct_under_concurrent_creation(tmp_path):
    ids: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        for _ in range(25):
            run_id, _ = publish_run_dir(tmp_path, "same name", lambda rid, staging: None)
            with lock:
                ids.append(run_id)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 200 and len(set(ids)) == 200
    assert len(list(tmp_path.iterdir())) == 200


@pytest.mark.parametrize("name, slug", [("My Run #1", "my-run-1"), ("../../etc", "etc"),
                                        ("日本", "run"), ("Ünïcödé", "unicode")])
def test_run_id_slug_is_filesystem_safe(name, slug):
    assert slugify(name) == slug


@pytest.mark.parametrize("ref", ["../x", "/etc", "a/b", "..", ".hidden", "x\x00y", "", "~",
                                 "a b", "$(rm -rf /)"])
def test_run_path_rejects_anything_but_a_plain_child_folder(tmp_path, ref):
    (tmp_path / "runs").mkdir()
    with pytest.raises(RunNotFound):
        run_path(tmp_path / "runs", ref)


def test_run_path_does_not_follow_symlinks_out_of_the_runs_dir(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    (runs / "link").symlink_to(outside)
    with pytest.raises(RunNotFound):
        run_path(runs, "link")
    [info] = list_runs(runs)
    assert info.state == "unreadable" and "symlink" in info.problem


def test_unreadable_runs_are_listed_with_a_reason_and_the_rest_still_load(tmp_path):
    good = Run.create(tmp_path, name="good", heartbeat_seconds=0)
    good.finish()
    for name, files in {"empty-json": {"run.json": b""},
                        "garbage": {"run.json": b"\x00\xff garbage"},
                        "no-status": {"run.json": b'{"name": "x"}'},
                        "list-json": {"run.json": b"[1]"}}.items():
        d = tmp_path / name
        d.mkdir()
        for f, data in files.items():
            (d / f).write_bytes(data)
    runs = {r.id: r for r in list_runs(tmp_path)}
    assert runs[good.id].state == "completed"
    for name in ("empty-json", "garbage", "no-status", "list-json"):
        assert runs[name].state == "unreadable" and runs[name].problem, name
    assert "status.json is missing" in runs["no-status"].problem


def test_listing_reads_only_run_and_status_files(tmp_path, monkeypatch):
    run = Run.create(tmp_path, name="big", heartbeat_seconds=0)
    for e in range(50):
        run.log_epoch(val_loss=1.0 / (e + 1))
    run.finish()
    opened: list[str] = []
    from curvewatch.tracking import safeio
    real_open = safeio.open_regular

    def spy(path, **kw):  # every reader opens a run's files through tracking.safeio
        opened.append(Path(path).name)
        return real_open(path, **kw)

    monkeypatch.setattr(safeio, "open_regular", spy)
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail(f"opened {a[0]}"))
    import curvewatch.tracking.reader as reader
    reader._json_cache.clear()
    [info] = list_runs(tmp_path)
    assert info.best_epoch == 50 and sorted(opened) == ["run.json", "status.json"]


def test_followers_append_new_rows_and_rebuild_on_out_of_order_lines(tmp_path):
    from curvewatch.tracking import LayersReader
    run = Run.create(tmp_path, name="follow", heartbeat_seconds=0)
    history, layers = HistoryReader(run.path), LayersReader(run.path)
    for e in range(1, 4):
        run.log_epoch(val_loss=1.0 / e, layers={"w": float(e)})
        assert history.read()["epoch"].tolist() == list(range(1, e + 1))
        assert layers.read()["w"].tolist() == [float(i) for i in range(1, e + 1)]
    with open(run.path / "metrics.jsonl", "a") as f:  # a repeated epoch, written by hand
        f.write('{"epoch": 2, "val_loss": 7.0}\n')
    frame = history.read()
    assert frame["epoch"].tolist() == [1, 2, 3] and frame["val_loss"].tolist()[1] == 7.0
    run.finish()
