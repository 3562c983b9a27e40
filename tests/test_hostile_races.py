"""Issue 15, races and hostile checkpoints: a stop that lands before a resumed worker starts
is honoured; the run folder's lock, not the displayed state, decides whether Resume and Delete
may touch a run; a hostile last.pt ends `resume` with a one-line error, never a traceback and
never code run from the pickle."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_trainer, wait_for  # noqa: E402
from curvewatch import tracking  # noqa: E402
from curvewatch.dashboard import actions  # noqa: E402
from curvewatch.tracking.procinfo import lock_held  # noqa: E402

TRAIN = ("--dataset", "moons", "--hidden", "8", "--threads", "1", "--batch-size", "64")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real 2-epoch run (completed; resumable with --epochs N > 2)."""
    runs = tmp_path_factory.mktemp("races") / "runs"
    done = run_trainer("run", "--runs-dir", str(runs), *TRAIN, "--epochs", "2")
    assert done.returncode == 0, done.stderr
    [run] = [p for p in runs.iterdir() if p.is_dir()]
    assert (run / "checkpoints" / "last.pt").exists()
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    return Path(shutil.copytree(run, runs / run.name, symlinks=True))


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


def _hostile_last(run: Path, kind: str, tmp_path: Path) -> None:
    import torch
    last = run / "checkpoints" / "last.pt"
    last.unlink()
    if kind == "a pickle that runs code":
        _Evil.marker = str(tmp_path / "PWNED")
        with open(last, "wb") as f:
            pickle.dump({"epoch": 1, "model": _Evil()}, f)
    elif kind == "torch.save of code":
        _Evil.marker = str(tmp_path / "PWNED")
        torch.save({"epoch": 1, "model": _Evil()}, last)
    elif kind == "garbage":
        last.write_bytes(os.urandom(4096))
    elif kind == "empty":
        last.write_bytes(b"")
    elif kind == "a FIFO":
        os.mkfifo(last)
    elif kind == "a symlink to /dev/zero":
        last.symlink_to("/dev/zero")
    elif kind == "a list, not a dict":
        torch.save([1, 2, 3], last)
    elif kind == "a dict without an epoch":
        torch.save({"model": {}}, last)
    elif kind == "weights of another model":
        torch.save({"epoch": 1, "model": {"w": torch.zeros(3)}, "optimizer": {}}, last)
    else:
        raise AssertionError(kind)


KINDS = ["a pickle that runs code", "torch.save of code", "garbage", "empty", "a FIFO",
         "a symlink to /dev/zero", "a list, not a dict", "a dict without an epoch"]


@pytest.mark.parametrize("kind, detach", [(k, False) for k in KINDS]
                         + [("weights of another model", False)] + [(k, True) for k in KINDS])
def test_a_hostile_last_pt_ends_resume_with_a_one_line_error(trained, tmp_path, kind, detach):
    """`resume --detach` checks last.pt in the launching process too (safe to load, has an
    epoch), so the one-line error comes back to whoever asked (the dashboard's Resume button)
    instead of a worker's log; weights that do not fit the model are found only once the
    model is built, by the foreground resume or the worker (which then ends with the same
    one-line error in trainer.log)."""
    run = _copy(trained, tmp_path)
    _hostile_last(run, kind, tmp_path)
    try:
        done = run_trainer("resume", run.name, "--runs-dir", str(run.parent), "--epochs", "4",
                           *(("--detach",) if detach else ()), timeout=60)
    finally:
        if kind == "a FIFO":
            try:
                os.close(os.open(run / "checkpoints" / "last.pt", os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith("python -m curvewatch.trainer resume: error: run ") \
        and "last.pt" in lines[0]
    assert "weights_only=False" not in lines[0]  # never the advice to load it unsafely
    assert not (tmp_path / "PWNED").exists()
    assert tracking.read_run(run).state == "completed"  # nothing changed
    assert not (run / tracking.paths.RESUMING).exists()


def _holder(run: Path) -> subprocess.Popen:
    """A live process holding the run's lock, as a trainer paused (SIGSTOP) would."""
    code = ("import fcntl, sys, time; f = open(sys.argv[1], 'ab'); "
            "fcntl.flock(f.fileno(), fcntl.LOCK_EX); print('locked', flush=True); "
            "time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, str(run / ".lock")],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_the_lock_decides_liveness_for_resume_stop_and_delete(tmp_path, monkeypatch):
    """A live process holds the lock, but status.json's heartbeat is 10 minutes old, so the
    run shows `crashed`: Resume refuses with a clear message (it used to report success while
    its worker quietly exited), Stop writes the STOP file, Delete refuses (it used to remove
    the live run's folder)."""
    runs = tmp_path / "runs"
    run = tracking.Run.create(runs, name="paused", epochs=5, heartbeat_seconds=0,
                              config={"dataset": "moons"})
    run.log_epoch(train_loss=1.0, val_loss=1.0)
    status = json.loads((run.path / "status.json").read_text())
    status.update(state="running", updated_at=time.time() - 600)  # a heartbeat 10 min old
    (run.path / "status.json").write_text(json.dumps(status))
    holder = _holder(run.path)
    try:
        assert tracking.read_run(run.path).state == "crashed" and lock_held(run.path)
        done = run_trainer("resume", run.id, "--runs-dir", str(runs), "--detach", timeout=60)
        assert done.returncode == 2, done.stderr
        assert "still held by a live process" in done.stderr and "Traceback" not in done.stderr
        res = actions.resume(runs, run.id)
        assert not res.ok and "still held by a live process" in res.message
        with pytest.raises(RuntimeError, match="lock is taken"):
            actions.delete_run(runs, run.id)
        assert run.path.exists()
        done = run_trainer("stop", run.id, "--runs-dir", str(runs), "--wait", "0", timeout=60)
        assert done.returncode == 0, done.stderr
        assert (run.path / "STOP").exists()
    finally:
        holder.kill()
        holder.wait()
    assert not lock_held(run.path)
    actions.delete_run(runs, run.id)  # no process holds it any more
    assert not run.path.exists()


def test_a_stop_right_after_resume_detach_is_honoured(trained, tmp_path):
    """`resume X --detach` then at once `stop X`: the stop used to be refused ("not
    running") because the worker had not started, and the run trained to the end."""
    run = _copy(trained, tmp_path)
    runs = str(run.parent)
    done = run_trainer("resume", run.name, "--runs-dir", runs, "--epochs", "400", "--detach",
                       timeout=60)
    assert done.returncode == 0, done.stderr
    stop = run_trainer("stop", run.name, "--runs-dir", runs, "--wait", "0", timeout=60)
    assert stop.returncode == 0, (stop.stdout, stop.stderr)
    assert "asked" in stop.stdout
    wait_for(lambda: not (run / tracking.paths.RESUMING).exists() and not lock_held(run)
             and tracking.read_run(run).state != "running", timeout=120,
             what="the resumed worker to stop")
    info = tracking.read_run(run)
    assert info.state == "stopped", (info.state, info.status.get("stop_reason"))
    assert info.epoch < 400
    assert not (run / "STOP").exists()
