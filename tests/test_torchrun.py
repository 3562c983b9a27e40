"""Training under torchrun: `torchrun --standalone --nproc-per-node=2 -m trainer run ...` with
real gloo processes on the CPU writes one run from rank 0 that equals a single process's."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, wait_for
from curvewatch.tracking import list_runs, read_history, read_run
from curvewatch.trainer.distributed import Shard
from curvewatch.trainer.errors import ConfigError

# wine: 106 training rows in batches of 25, so the two processes get uneven shares (13 and
# 12 rows) and the last batch is short: the equality below covers the loss weighting.
SETTINGS = ["--dataset", "wine", "--hidden", "16", "--batch-size", "25", "--threads", "1",
            "--test-fraction", "0.2", "--optimizer", "sgd", "--momentum", "0.9",
            "--lr", "0.05", "--clip-grad-norm", "0.5", "--seed", "3"]
COMPARED = ("step", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
            "grad_norm", "grad_norm_max", "clipped_fraction", "lr")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "CURVEWATCH_CHECKPOINT_SECONDS": "0"}


def torchrun(runs_dir: Path, *args: str, restarts: int = 0) -> subprocess.Popen[str]:
    """The real launcher, two worker processes on this machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           f"--max-restarts={restarts}", "-m", "curvewatch.trainer", *args,
           "--runs-dir", str(runs_dir)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def only_run(runs_dir: Path) -> Path:
    runs = list_runs(runs_dir)
    assert len(runs) == 1, [r.id for r in runs]
    return runs[0].path


def epochs_of(run_dir: Path) -> list[int]:
    return [int(e) for e in read_history(run_dir)["epoch"]]


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker with RANK=`rank` among the launcher's children."""
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0") if ppid == launcher else []
        except (OSError, ValueError, IndexError):
            continue
        if f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def wait_epochs(runs_dir: Path, n: int, timeout: float = 120) -> Path:
    def reached() -> Path | None:
        runs = list_runs(runs_dir)
        return runs[0].path if runs and runs[0].epoch >= n else None
    return wait_for(reached, timeout=timeout, every=0.1, what=f"epoch {n} written")


@pytest.mark.slow
def test_two_processes_log_what_one_process_logs(tmp_path: Path) -> None:
    """Two gloo processes splitting each batch write exactly one run whose every logged
    value (losses, accuracies, gradient norms, clipping) equals one process's over the same
    data, to float rounding: same global batches, same order, no dropout."""
    ddp = finish(torchrun(tmp_path / "ddp", "run", "--epochs", "4", "--name", "ddp",
                          *SETTINGS))
    one = subprocess.run([sys.executable, "-m", "curvewatch.trainer", "run", "--epochs", "4",
                          "--runs-dir", str(tmp_path / "one"), *SETTINGS], cwd=ROOT, env=env(),
                         capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stdout + one.stderr
    ddp_run, one_run = only_run(tmp_path / "ddp"), only_run(tmp_path / "one")
    info = read_run(ddp_run)
    assert info.state == "completed", ddp
    assert info.model["distributed"]["world_size"] == 2
    a, b = read_history(ddp_run), read_history(one_run)
    assert list(a["epoch"]) == list(b["epoch"]) == [1, 2, 3, 4]
    assert b["clipped_fraction"].max() > 0  # the clipping path is exercised
    for key in COMPARED:
        for x, y in zip(a[key], b[key], strict=True):
            assert math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6), (key, list(a[key]),
                                                                     list(b[key]))


@pytest.mark.slow
def test_kill_one_rank_fails_the_run_and_resume_under_torchrun_finishes_it(
        tmp_path: Path) -> None:
    """kill -9 of rank 1 ends the job; the run is left failed (or crashed) with every file
    readable, and `torchrun ... resume` trains the rest with no epoch written twice."""
    proc = torchrun(tmp_path, "run", "--epochs", "12", "--min-epoch-seconds", "0.3",
                    *SETTINGS)
    try:
        run_dir = wait_epochs(tmp_path, 3)
        pid = wait_for(lambda: rank_pid(proc.pid, 1), what="rank 1's process")
        os.kill(pid, signal.SIGKILL)
        out = finish(proc)
    finally:
        proc.kill()
    assert proc.returncode != 0, out
    info = read_run(run_dir)
    assert info.state in ("failed", "crashed"), (info.state, out)
    done = epochs_of(run_dir)
    assert done == list(range(1, len(done) + 1)) and len(done) < 12

    out = finish(torchrun(tmp_path, "resume", run_dir.name))
    assert read_run(run_dir).state == "completed", out
    assert epochs_of(run_dir) == list(range(1, 13))
    assert only_run(tmp_path) == run_dir


@pytest.mark.slow
def test_torchrun_restart_continues_the_run_and_sigterm_stops_every_rank(
        tmp_path: Path) -> None:
    """With --max-restarts torchrun restarts both workers after one is killed: they continue
    the same run from last.pt. SIGTERM to torchrun then stops the run at an epoch's end."""
    proc = torchrun(tmp_path, "run", "--epochs", "200", "--min-epoch-seconds", "0.3",
                    *SETTINGS, restarts=1)
    try:
        run_dir = wait_epochs(tmp_path, 3)
        os.kill(wait_for(lambda: rank_pid(proc.pid, 1), what="rank 1"), signal.SIGKILL)
        wait_for(lambda: read_run(run_dir).status.get("resumes") == 1
                 and read_run(run_dir).state == "running", timeout=120, every=0.1,
                 what="the restarted job resuming the run")
        resumed_at = read_run(run_dir).epoch
        wait_epochs(tmp_path, resumed_at + 2)
        proc.send_signal(signal.SIGTERM)
        out = finish(proc)
    finally:
        proc.kill()
    info = read_run(run_dir)
    assert info.state == "stopped", (info.state, out)
    assert info.status.get("stop_reason") == "stopped by SIGTERM"
    done = epochs_of(run_dir)
    assert done == list(range(1, len(done) + 1)) and len(done) < 200
    assert only_run(tmp_path) == run_dir


@pytest.mark.slow
def test_trainer_stop_ends_every_rank_after_the_same_epoch(tmp_path: Path) -> None:
    """`trainer stop` (a STOP file, which only rank 0 reads) ends the run `stopped`, and every
    process leaves cleanly after that epoch: torchrun exits 0 only when all workers did."""
    proc = torchrun(tmp_path, "run", "--epochs", "200", "--min-epoch-seconds", "0.3",
                    *SETTINGS)
    try:
        run_dir = wait_epochs(tmp_path, 2)
        stop = subprocess.run([sys.executable, "-m", "curvewatch.trainer", "stop", run_dir.name,
                               "--runs-dir", str(tmp_path), "--wait", "60"], cwd=ROOT,
                              env=env(), capture_output=True, text=True, timeout=120)
        out = finish(proc)
    finally:
        proc.kill()
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert proc.returncode == 0, out
    info = read_run(run_dir)
    assert info.state == "stopped" and info.status.get("stop_reason") == \
        "stop requested (STOP file)", (info.state, out)
    assert epochs_of(run_dir) == list(range(1, info.epoch + 1)) and info.epoch < 200


def test_each_batch_is_split_across_the_processes_without_padding() -> None:
    """Every position of every batch goes to exactly one process, none twice."""
    n, bs, world = 106, 25, 3
    parts = [Shard(r, world).batch_positions(n, bs) for r in range(world)]
    taken = torch.cat([p for p, _ in parts]).sort().values
    assert torch.equal(taken, torch.arange(n))
    per_step = [sum(sizes[i] for _, sizes in parts) for i in range(math.ceil(n / bs))]
    assert per_step == [25, 25, 25, 25, 6]
    shares = [Shard(r, world).rows(10) for r in range(world)]
    assert shares[0][0] == 0 and shares[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(shares, shares[1:], strict=False))


@pytest.mark.parametrize("rank", [0, 1])
def test_a_last_batch_smaller_than_the_job_is_refused_by_every_rank_naming_it(rank: int) -> None:
    """Rank 0 would get a row of the last batch and rank 1 none: both refuse, so rank 0 never
    creates a run that rank 1 then fails."""
    with pytest.raises(ConfigError, match=r"last batch of an epoch has 1 \(101 training rows, "
                                          r"batch_size 50\)"):
        Shard(rank, 2).batch_positions(101, 50)


def test_the_logging_api_refuses_to_write_from_a_rank_other_than_zero(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One job writes one run, from rank 0: a user's DDP script that opens a run on every rank
    is told so on the other ranks (RANK as torchrun sets it), and nothing is written there."""
    import curvewatch
    from curvewatch.tracking import Run
    from curvewatch.tracking.writer import NotRankZero

    monkeypatch.setenv("RANK", "1")
    with pytest.raises(NotRankZero, match="rank 1 of a distributed job.*only rank 0 writes"):
        Run.create(tmp_path, name="ddp")
    with pytest.raises(NotRankZero, match="rank 1"):
        curvewatch.init(name="ddp", runs_dir=tmp_path)
    assert list_runs(tmp_path) == []
    with pytest.raises(NotRankZero, match="rank 2"):
        Run.create(tmp_path, name="ddp", rank=2)
    Run.create(tmp_path, name="main", rank=0).finish()  # an explicit rank 0 writes anyway
    monkeypatch.setenv("RANK", "0")
    Run.create(tmp_path, name="ddp").finish()
    assert sorted(r.name for r in list_runs(tmp_path)) == ["ddp", "main"]
    with pytest.raises(NotRankZero, match="rank 1"):
        Run.reopen(list_runs(tmp_path)[0].path, rank=1)
