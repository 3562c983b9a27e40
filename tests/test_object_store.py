"""Runs on object storage (issue 18): writers spool locally and sync to a bucket, readers
mirror it. Against a real S3 API over HTTP: moto's server mode on a free localhost port."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, run_trainer, wait_for
from curvewatch import tracking
from curvewatch.tracking import object_store, remote_read
from curvewatch.tracking.sync import Syncer, segment_prefix

BUCKET = "cw-runs"


class RequestLog(logging.Handler):
    """Counts the moto server's request log lines (werkzeug logs one per HTTP request)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def s3_server() -> Iterator[tuple[str, RequestLog]]:
    from moto.server import ThreadedMotoServer
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    log = RequestLog()
    logging.getLogger("werkzeug").addHandler(log)
    logging.getLogger("werkzeug").setLevel(logging.INFO)
    yield f"http://127.0.0.1:{port}", log
    logging.getLogger("werkzeug").removeHandler(log)
    server.stop()


@pytest.fixture
def s3(s3_server: tuple[str, RequestLog], tmp_path: Path,
       monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket prefix, credentials and endpoint in the environment, private spool and
    mirror; returns the runs URL."""
    endpoint, _ = s3_server
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "CURVEWATCH_SPOOL": str(tmp_path / "spool"),
           "CURVEWATCH_MIRROR": str(tmp_path / "mirror"), "CURVEWATCH_SYNC_SECONDS": "0.2",
           "CURVEWATCH_POLL_SECONDS": "0.5"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import boto3
    client = boto3.client("s3")
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}/{tmp_path.name}"


def mirror_of(url: str) -> Path:
    return remote_read.refresh(object_store.parse_url(url), force=True)


def history(run_dir: Path) -> pd.DataFrame:
    return tracking.read_history(run_dir)


def test_a_logging_api_run_reads_back_from_the_bucket_as_written(s3: str) -> None:
    with tracking.Run.create(s3, name="api", config={"lr": 0.1}, heartbeat_seconds=0) as run:
        for e in range(1, 8):
            run.log_epoch(train_loss=1 / e, val_loss=2 / e, layers={"w": 0.1 * e})
    mirror = mirror_of(s3)
    [info] = tracking.list_runs(mirror)
    assert (info.id, info.state, info.config) == (run.id, "completed", {"lr": 0.1})
    pd.testing.assert_frame_equal(history(mirror / run.id), history(run.path))
    pd.testing.assert_frame_equal(tracking.read_layers(mirror / run.id),
                                  tracking.read_layers(run.path))


def test_a_finished_run_is_compacted_into_one_object_per_file(s3: str) -> None:
    with tracking.Run.create(s3, name="compact", heartbeat_seconds=0) as run:
        for _ in range(3):
            run.log_epoch(train_loss=1.0)
    root = object_store.parse_url(s3)
    fs = object_store.filesystem(root)
    compacted = fs.cat_file(root.key(run.id, "metrics.jsonl"))
    assert compacted == (run.path / "metrics.jsonl").read_bytes()
    assert not fs.exists(root.key(run.id, segment_prefix("metrics.jsonl")))


def test_a_live_run_is_followed_by_fetching_only_new_segments(s3: str) -> None:
    def mirrored_epochs() -> list[int]:
        run_dir = mirror_of(s3) / run.id
        return list(history(run_dir)["epoch"]) if run_dir.exists() else []

    run = tracking.Run.create(s3, name="live", heartbeat_seconds=0)
    try:
        run.log_epoch(train_loss=1.0)
        wait_for(lambda: mirrored_epochs() == [1], timeout=30, what="epoch 1 in the mirror")
        run.log_epoch(train_loss=0.5)
        wait_for(lambda: mirrored_epochs() == [1, 2], timeout=30, what="epoch 2 in the mirror")
        pd.testing.assert_frame_equal(history(mirror_of(s3) / run.id), history(run.path))
    finally:
        run.finish()


def test_a_twin_syncer_that_sent_a_segment_first_causes_no_duplicate(s3: str) -> None:
    run = tracking.Run.create(s3, name="twin", heartbeat_seconds=0)
    run._sync.stop(compact=False)  # this test drives the syncers itself
    run._sync = None
    root = object_store.parse_url(s3)
    late, early = Syncer(run.path, root), Syncer(run.path, root)
    late.sync()  # has listed the bucket: nothing sent yet
    run.log_epoch(train_loss=1.0)
    early.sync()  # sends epoch 1 at offset 0
    run.log_epoch(train_loss=0.5)
    late.sync()  # its offset-0 segment exists: it must re-list and send only epoch 2
    run.finish()
    late.compact()
    assert list(history(mirror_of(s3) / run.id)["epoch"]) == [1, 2]


def test_an_id_taken_in_the_bucket_is_drawn_again(s3: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["20260101-000000-same-0000", "20260101-000000-same-0000",
                "20260101-000000-same-0001"])
    monkeypatch.setattr(tracking.paths, "new_run_id", lambda name: next(ids))
    first = tracking.Run.create(s3, name="same", heartbeat_seconds=0)
    monkeypatch.setenv("CURVEWATCH_SPOOL", str(tmp_path / "other-machine"))
    second = tracking.Run.create(s3, name="same", heartbeat_seconds=0)
    first.finish()
    second.finish()
    assert (first.id, second.id) == ("20260101-000000-same-0000", "20260101-000000-same-0001")


WRITER = textwrap.dedent("""
    import sys, time
    from curvewatch import tracking
    url, epochs, pace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    if len(sys.argv) > 4:
        run = tracking.Run.reopen(sys.argv[4], heartbeat_seconds=0)
    else:
        run = tracking.Run.create(url, name="proc", heartbeat_seconds=0)
    print(run.path, flush=True)
    for e in range(run.last_epoch + 1, epochs + 1):
        if run.stop_requested():
            run.finish("stopped", stop_reason="STOP file")
            break
        run.log_epoch(train_loss=1.0 / e, val_loss=2.0 / e)
        time.sleep(pace)
    run.finish()
""")


def writer(url: str, epochs: int, pace: float, *extra: str,
           spool: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if spool is not None:
        env["CURVEWATCH_SPOOL"] = str(spool)
    return subprocess.Popen([sys.executable, "-c", WRITER, url, str(epochs), str(pace), *extra],
                            env=env, stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_writers_with_their_own_spools_share_a_bucket(s3: str, tmp_path: Path) -> None:
    procs = [writer(s3, 6, 0.05, spool=tmp_path / f"machine-{i}") for i in range(2)]
    paths = [Path(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    runs = {r.id: r for r in tracking.list_runs(mirror_of(s3))}
    assert sorted(runs) == sorted(p.name for p in paths)
    for p in paths:
        assert runs[p.name].state == "completed"
        pd.testing.assert_frame_equal(history(runs[p.name].path), history(p))


@pytest.mark.slow
def test_a_writer_killed_mid_sync_then_resumed_loses_and_repeats_no_epoch(s3: str) -> None:
    # paced so that 40 epochs outlast the first upload on a loaded machine (at 0.05 s an epoch
    # the writer had finished before the kill once); the kill waits on the upload, not the pace
    proc = writer(s3, 40, 0.5)
    assert proc.stdout is not None
    run_dir = Path(proc.stdout.readline().strip())
    root = object_store.parse_url(s3)
    fs = object_store.filesystem(root)
    wait_for(lambda: fs.exists(root.key(run_dir.name, "metrics")), timeout=60,
             what="a first segment in the bucket")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = tracking.read_run(run_dir).status["epoch"]
    assert 0 < killed_at < 40
    resumed = writer(s3, 40, 0.0, str(run_dir))
    resumed.communicate(timeout=120)
    assert resumed.returncode == 0
    seen = history(mirror_of(s3) / run_dir.name)
    assert list(seen["epoch"]) == list(range(1, 41))
    pd.testing.assert_frame_equal(seen, history(run_dir))


def test_an_idle_reader_costs_few_requests_a_minute(s3: str, s3_server: tuple[str, RequestLog],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        with tracking.Run.create(s3, name=f"idle{i}", heartbeat_seconds=0) as run:
            run.log_epoch(train_loss=1.0)
    poll = 10.0
    monkeypatch.setenv(remote_read.POLL_ENV, str(poll))
    root = object_store.parse_url(s3)
    mirror = remote_read.refresh(root, force=True)  # the first read fetches everything
    assert len(tracking.list_runs(mirror)) == 3
    log = s3_server[1]
    start = len(log.lines)
    for _ in range(20):  # a page rerunning within one poll interval: served from the mirror
        remote_read.refresh(root)
    assert log.lines[start:] == []
    # a minute of an idle open reader: one refresh per poll interval
    for _ in range(int(60 / poll)):
        remote_read.refresh(root, force=True)
    per_minute = len(log.lines) - start
    # one LIST per refresh; the manifests of ended runs at most once a minute
    assert per_minute <= 60 / poll + 2 * 3, log.lines[start:]


def test_list_reads_a_bucket_and_bad_urls_exit_2_naming_them(s3: str) -> None:
    with tracking.Run.create(s3, name="listed", heartbeat_seconds=0) as run:
        run.log_epoch(train_loss=1.0)
    done = run_trainer("list", "--runs-dir", s3)
    assert done.returncode == 0, done.stderr
    assert run.id in done.stdout
    for bad in ("nosuchproto://b/p", "s3://", "s3://bucket/../up"):
        done = run_trainer("list", "--runs-dir", bad)
        assert done.returncode == 2, (bad, done.stdout, done.stderr)
        assert repr(bad.rstrip("/")) in done.stderr or repr(bad) in done.stderr
        assert "s3://bucket/prefix" in done.stderr


@pytest.mark.slow
def test_the_trainer_runs_into_a_bucket(s3: str) -> None:
    done = run_trainer("run", "--epochs", "3", "--runs-dir", s3)
    assert done.returncode == 0, done.stderr
    [info] = tracking.list_runs(mirror_of(s3))
    assert info.state == "completed"
    assert list(history(info.path)["epoch"]) == [1, 2, 3]


@pytest.mark.slow
def test_stop_on_a_run_read_from_the_bucket_stops_its_writer(s3: str) -> None:
    proc = writer(s3, 1000, 0.05)
    assert proc.stdout is not None
    run_dir = Path(proc.stdout.readline().strip())
    wait_for(lambda: (mirror_of(s3) / run_dir.name / "status.json").exists(), timeout=60,
             what="the run in the mirror")
    done = run_trainer("stop", run_dir.name, "--runs-dir", s3, "--wait", "60")
    assert done.returncode == 0, done.stderr
    assert f"run {run_dir.name} is stopped" in done.stdout
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    info = wait_for(lambda: (i := tracking.read_run(mirror_of(s3) / run_dir.name)).state
                    == "stopped" and i, timeout=30, what="the stopped state in the mirror")
    assert info.status["epoch"] < 1000
    assert not (mirror_of(s3) / run_dir.name / "STOP").exists()
    root = object_store.parse_url(s3)
    assert not object_store.filesystem(root).exists(root.key(run_dir.name, "STOP"))


def test_a_run_read_from_a_bucket_is_judged_by_its_heartbeat_not_by_a_pid(
        tmp_path: Path) -> None:
    """A mirror's status arrives a sync and a poll after its writer's: a writer on this host
    whose process has just ended reads running there while its heartbeat is fresh, where its
    own folder (the spool) reads crashed."""
    from curvewatch.tracking.jsonio import atomic_write_json
    from curvewatch.tracking.procinfo import hostname
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    status = {"state": "running", "pid": int(gone.stdout), "host": hostname(),
              "updated_at": time.time(), "heartbeat_seconds": 5.0}
    states = {}
    for folder in ("spool", "mirror"):
        run_dir = tmp_path / folder / "20260101-000000-r-0000"
        run_dir.mkdir(parents=True)
        atomic_write_json(run_dir / "run.json", {"name": "r"})
        atomic_write_json(run_dir / "status.json", status)
        if folder == "mirror":
            (run_dir.parent / object_store.MIRROR_MARK).write_text("s3://b/p\n")
        states[folder] = tracking.read_run(run_dir).state
    assert states == {"spool": "crashed", "mirror": "running"}
    stale = {**status, "updated_at": time.time() - 3600}
    atomic_write_json(tmp_path / "mirror" / "20260101-000000-r-0000" / "status.json", stale)
    assert tracking.read_run(tmp_path / "mirror" / "20260101-000000-r-0000").state == "crashed"


def test_resume_elsewhere_refuses_a_running_run_and_one_without_last_pt_in_the_bucket(
        s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from curvewatch.trainer.cli import main
    run = tracking.Run.create(s3, name="no-ckpt", heartbeat_seconds=0)
    run.log_epoch(train_loss=1.0)
    run._sync.stop(compact=False)  # synced; this process, its writer, is alive
    monkeypatch.setenv("CURVEWATCH_SPOOL", str(tmp_path / "machine-b"))
    assert main(["resume", run.id, "--runs-dir", s3]) == 2
    assert f"run {run.id} is running on " in capsys.readouterr().err
    monkeypatch.setenv("CURVEWATCH_SPOOL", str(run.path.parent.parent.parent.parent))
    run._sync = None
    run.finish("stopped")
    tracking.sync.Syncer(run.path, object_store.parse_url(s3)).compact()
    monkeypatch.setenv("CURVEWATCH_SPOOL", str(tmp_path / "machine-b"))
    assert main(["resume", run.id, "--runs-dir", s3]) == 2
    err = capsys.readouterr().err
    assert f"run {run.id} has no checkpoints/last.pt in {s3}" in err
    assert "resume it on the machine that wrote it" in err
    assert not (object_store.spool_dir(object_store.parse_url(s3)) / run.id).exists()


def test_a_pulled_copy_behind_the_bucket_is_set_aside_and_brought_down_again(
        s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = object_store.parse_url(s3)
    with tracking.Run.create(s3, name="moved", heartbeat_seconds=0) as run:
        run.log_epoch(train_loss=1.0)
    object_store.filesystem(root).pipe_file(root.key(run.id, "checkpoints", "last.pt"), b"x")
    machine_a = os.environ["CURVEWATCH_SPOOL"]
    monkeypatch.setenv("CURVEWATCH_SPOOL", str(tmp_path / "machine-b"))
    copy = remote_read.pull_run(root, run.id)
    assert copy is not None and list(history(copy)["epoch"]) == [1]
    assert (copy / "checkpoints" / "last.pt").read_bytes() == b"x"
    monkeypatch.setenv("CURVEWATCH_SPOOL", machine_a)  # machine A trains it further
    with tracking.Run.reopen(run.path, heartbeat_seconds=0) as again:
        again.log_epoch(train_loss=0.5)
    monkeypatch.setenv("CURVEWATCH_SPOOL", str(tmp_path / "machine-b"))
    assert remote_read.pull_run(root, run.id) == copy
    assert list(history(copy)["epoch"]) == [1, 2]
    [stale] = copy.parent.glob(f".stale-{run.id}-*")  # the old copy, kept aside
    assert list(history(stale)["epoch"]) == [1]
    assert remote_read.pull_run(root, "no-such-run") is None  # a name, for resolve_run


def test_a_group_in_a_spool_is_seen_in_the_bucket_and_a_stop_object_reaches_it(
        s3: str) -> None:
    from curvewatch.tracking import GroupWriter
    spool = object_store.spool_dir(object_store.parse_url(s3))
    group = GroupWriter.create(spool, name="g", method="repeat", validation="holdout",
                               members=[{"index": 0, "name": "g seed 0"}])
    run_id = "20260101-000000-g-seed-0-0000"  # the member's own run is not under test
    group.update_member(0, run_id=run_id, state="running")
    [seen] = tracking.list_groups(mirror_of(s3))
    assert (seen.id, seen.state, seen.run_ids) == (group.id, "running", (run_id,))
    # the dashboard's or trainer stop's STOP object comes down with the group's next write
    assert remote_read.push_stop(seen.path)
    group.update_member(0, state="completed")
    assert group.stop_requested()
    group.finish("stopped", aggregate=None, stop_reason="STOP file")
    [seen] = tracking.list_groups(mirror_of(s3))
    assert (seen.state, seen.stop_reason) == ("stopped", "STOP file")
    root = object_store.parse_url(s3)
    assert not object_store.filesystem(root).exists(root.key(group.id, "STOP"))


def test_a_studys_group_from_two_machines_keeps_both_machines_trials() -> None:
    """merge_group (pure): members joined by trial, an ended one wins, renumbered; a live
    worker on the other host keeps the group running after this host's last worker left."""
    from curvewatch.tracking.sync import merge_group
    now = 1000.0

    def rec(host: str, trials: list[int], state: str, ended: bool) -> dict[str, object]:
        return {"id": "optuna-s-1", "state": state, "heartbeat_seconds": 5.0,
                "sweep": {"mode": "optuna", "settings": []}, "updated_at": now,
                "workers": [] if ended else [{"host": host, "pid": 7, "beat_at": now - 1}],
                "members": [{"trial": t, "params": {"lr": str(t)}, "run_id": f"{host}-{t}",
                             "ended_at": now if ended else None} for t in trials]}
    a = rec("a", [0, 2], "completed", ended=True)
    b = rec("b", [1, 2], "running", ended=False)
    merged = merge_group(a, b, host="a", now=now)
    assert [(m["trial"], m["index"], m["run_id"]) for m in merged["members"]] == [
        (0, 0, "a-0"), (1, 1, "b-1"), (2, 2, "a-2")]
    assert merged["sweep"]["settings"] == [{"lr": "0"}, {"lr": "1"}, {"lr": "2"}]
    assert merged["state"] == "running" and merged["workers"][0]["host"] == "b"
    assert merge_group(a, b, host="a", now=now + 60)["state"] == "completed"  # b's beat stale
    kfold = {**a, "sweep": None}
    assert merge_group(kfold, b, host="a", now=now) is kfold  # one writer: its own record


def test_the_dashboards_actions_name_the_bucket_for_its_mirror(s3: str, tmp_path: Path) -> None:
    from curvewatch.dashboard.actions import runs_arg
    assert runs_arg(mirror_of(s3)) == s3
    assert runs_arg(tmp_path) == str(tmp_path.resolve())


def test_the_dashboard_reads_a_bucket_named_by_curvewatch_runs(
        s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from curvewatch.dashboard import data
    with tracking.Run.create(s3, name="shown", heartbeat_seconds=0) as run:
        for _ in range(3):
            run.log_epoch(train_loss=1.0, val_loss=2.0)
    monkeypatch.setenv("CURVEWATCH_RUNS", s3)
    [info] = data.list_runs()
    assert (info.id, info.state) == (run.id, "completed")
    pd.testing.assert_frame_equal(data.load_history(info.path), history(run.path))


def test_import_writes_a_log_into_a_bucket(s3: str, tmp_path: Path) -> None:
    from curvewatch.trainer.cli import main
    log = tmp_path / "log.csv"  # the columns of Keras' CSVLogger
    log.write_text("epoch,loss,val_loss\n0,1.0,1.5\n1,0.8,1.2\n2,0.6,1.1\n", encoding="utf-8")
    assert main(["import", str(log), "--runs-dir", s3]) == 0
    [info] = tracking.list_runs(mirror_of(s3))
    assert info.state == "completed"
    seen = history(info.path)
    assert list(seen["epoch"]) == [1, 2, 3]
    assert list(seen["val_loss"]) == [1.5, 1.2, 1.1]


def test_the_logging_api_refuses_a_bad_url_naming_it() -> None:
    for bad in ("nosuchproto://b/p", "s3://", "s3://bucket/a b"):
        with pytest.raises(ValueError, match="s3://bucket/prefix") as e:
            tracking.Run.create(bad, name="never")
        assert repr(bad) in str(e.value) or repr(bad.rstrip("/")) in str(e.value)


@pytest.mark.slow
def test_a_trainer_killed_then_resumed_on_another_machine_from_the_bucket_shows_every_epoch_once(
        s3: str, tmp_path: Path) -> None:
    """Machine A is killed mid-run; machine B (a spool of its own) resumes the run from what
    A synced: its files and last.pt, brought down from the bucket."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CURVEWATCH_CHECKPOINT_SYNC_SECONDS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "curvewatch.trainer", "run", "--epochs", "25",
                             "--runs-dir", s3], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    spool = object_store.spool_dir(object_store.parse_url(s3))
    root = object_store.parse_url(s3)
    fs = object_store.filesystem(root)

    def run_id_synced_with_last_pt() -> str | None:
        runs = [p.name for p in spool.iterdir() if p.is_dir()]
        return runs[0] if runs and tracking.read_run(spool / runs[0]).status.get(
            "epoch", 0) >= 3 and fs.exists(root.key(runs[0], "checkpoints", "last.pt")) \
            else None
    run_id = wait_for(run_id_synced_with_last_pt, timeout=120,
                      what="3 epochs in the spool and a last.pt in the bucket")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert tracking.read_run(spool / run_id).status["epoch"] < 25, "killed after the end"
    machine_b = tmp_path / "machine-b"
    done = run_trainer("resume", run_id, "--runs-dir", s3,
                       env={"CURVEWATCH_SPOOL": str(machine_b)})
    assert done.returncode == 0, done.stderr
    mirrored = mirror_of(s3) / run_id
    assert tracking.read_run(mirrored).state == "completed"
    assert list(history(mirrored)["epoch"]) == list(range(1, 26))
    pd.testing.assert_frame_equal(history(mirrored), history(
        next(machine_b.rglob(run_id))))
    assert fs.exists(root.key(run_id, "checkpoints", "best.pt"))


@pytest.mark.parametrize("junk", [b"not json", b"[1, 2]", b'{"files": {"metrics.jsonl": -5}}',
                                  b'{"files": {"metrics.jsonl": "12"}}'])
def test_a_run_with_a_junk_manifest_is_left_out_and_the_others_still_list(
        s3: str, junk: bytes) -> None:
    with tracking.Run.create(s3, name="good", heartbeat_seconds=0) as good:
        good.log_epoch(train_loss=1.0)
    with tracking.Run.create(s3, name="junk", heartbeat_seconds=0) as bad:
        bad.log_epoch(train_loss=1.0)
    root = object_store.parse_url(s3)
    object_store.filesystem(root).pipe_file(root.key(bad.id, "sync.json"), junk)
    assert [r.id for r in tracking.list_runs(mirror_of(s3))] == [good.id]
