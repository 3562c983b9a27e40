"""Sweeps across machines on Optuna (`trainer sweep --optuna STORAGE --study NAME --trials N`):
real `python -m trainer sweep` worker processes sharing one study, tiny trainings on wine."""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState
from streamlit.testing.v1 import AppTest

from conftest import ROOT, run_trainer, trainer_cmd, wait_for
from curvewatch.tracking import list_groups, list_runs, read_run
from curvewatch.trainer.optuna_sweep import (
    END_ATTR,
    GRACE_BEATS,
    HEARTBEAT_ENV,
    RUN_ATTR,
    SURPLUS_ATTR,
    taken_count,
    trial_outcome,
)
from servers import free_port

#: A trial that ran to its end: complete, or pruned (with --pruner none: had it diverged).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BASE = ["--dataset", "wine", "--hidden", "8", "--threads", "1", "--pruner", "none",
        "--grid", "hidden=8,16", "--range", "lr=1e-3:1e-1:log"]


def start_worker(runs_dir: Path, storage: str, study: str, trials: int,
                 *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A worker as a user starts one: its own `python -m trainer sweep` process."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
           "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        trainer_cmd("sweep", "--runs-dir", str(runs_dir), "--optuna", storage, "--study",
                    study, "--trials", str(trials), *BASE, *args),
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def load(storage: str, study: str) -> optuna.Study:
    backend = JournalStorage(JournalFileBackend(storage)) if "://" not in storage else storage
    return optuna.load_study(study_name=study, storage=backend)


def assert_each_trial_ran_once(study: optuna.Study, runs_dir: Path, trials: int) -> None:
    """Exactly N finished trials and N run folders, each trial with its own run tagged with
    the study and its number; a trial given beyond N (two workers asking at once) was told
    FAIL as surplus without a run; and the study's one group holds every trial's run."""
    done = study.get_trials(states=FINISHED)
    assert len(done) == trials and len(list_runs(runs_dir)) == trials
    ran = [t for t in study.trials if SURPLUS_ATTR not in t.user_attrs]
    assert all(t.state == TrialState.FAIL and RUN_ATTR not in t.user_attrs
               for t in study.trials if t not in ran)
    run_ids = [t.user_attrs[RUN_ATTR] for t in ran]
    assert len(run_ids) == len(set(run_ids)) == len(ran) == trials
    assert sorted(run_ids) == sorted(r.id for r in list_runs(runs_dir))
    for t in ran:
        tags = read_run(runs_dir / t.user_attrs[RUN_ATTR]).tags
        assert f"optuna:{study.study_name}" in tags and f"trial:{t.number}" in tags
    [group] = list_groups(runs_dir)
    assert sorted(m.run_id for m in group.members) == sorted(run_ids)
    assert group.state == "completed" and (group.sweep or {}).get("study") == study.study_name


@pytest.mark.slow
def test_two_workers_on_one_journal_file_share_the_trials_and_run_none_twice(
        tmp_path: Path, runs_dir: Path) -> None:
    journal = str(tmp_path / "study.log")
    workers = [start_worker(runs_dir, journal, "shared", 4, "--epochs", "3") for _ in range(2)]
    outputs = [finish(w) for w in workers]
    assert_each_trial_ran_once(load(journal, "shared"), runs_dir, 4)
    # both workers joined the one group of the study; the last to end finished it
    assert all("study shared: " in out for out in outputs)
    assert sum("other workers are still on the study" in out for out in outputs) <= 1


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_its_trial_failed_and_the_study_goes_on(
        tmp_path: Path, runs_dir: Path) -> None:
    storage = str(tmp_path / "study.log")
    slow = start_worker(runs_dir, storage, "k", 2, "--epochs", "500",
                        "--min-epoch-seconds", "0.1")

    def training_trial() -> str | None:
        """The run id of a RUNNING trial that has logged an epoch, once there is one."""
        if not Path(storage).exists():
            return None
        try:
            running = load(storage, "k").get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # the worker has not created the study yet
            return None
        rid = running[0].user_attrs.get(RUN_ATTR) if running else None
        return rid if rid and (read_run(runs_dir / rid).status.get("epoch") or 0) >= 1 else None

    try:
        run_id = wait_for(training_trial, timeout=120, every=0.2, what="a trial training")
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.communicate(timeout=30)
    # a failed trial does not count towards --trials: one more trial is to be trained
    out = finish(start_worker(runs_dir, storage, "k", 1, "--epochs", "2"))
    study = load(storage, "k")
    first = study.trials[0]
    assert first.user_attrs[RUN_ATTR] == run_id and first.state == TrialState.FAIL
    assert read_run(runs_dir / run_id).state == "crashed"
    assert "trial 0: its run crashed" in out
    assert len(study.trials) == 2 and study.trials[1].state in FINISHED
    # the study's one group: the killed worker's trial failed in it, the group partial
    [group] = list_groups(runs_dir)
    assert [(m.run_id, m.state) for m in group.members] == [
        (run_id, "crashed"), (study.trials[1].user_attrs[RUN_ATTR], "completed")]
    assert group.state == "partial"


@pytest.mark.slow
def test_on_a_database_optunas_heartbeat_fails_a_killed_workers_trial_seen_from_elsewhere(
        tmp_path: Path) -> None:
    """The second worker cannot see the killed worker's run folder (another machine's runs
    directory): only the RDB heartbeat can tell that trial 0 is dead."""
    storage, beat = f"sqlite:///{tmp_path / 'study.db'}", 1  # grace: GRACE_BEATS beats
    here, there = tmp_path / "runs-a", tmp_path / "runs-b"
    slow = start_worker(here, storage, "h", 1, "--epochs", "500", "--min-epoch-seconds", "0.1",
                        env={HEARTBEAT_ENV: str(beat)})
    try:
        wait_for(lambda: any((r.status.get("epoch") or 0) >= 1 for r in list_runs(here)),
                 timeout=120, every=0.2, what="a trial training")
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.communicate(timeout=30)
    killed = time.monotonic()
    # the grace period is a length of time: only its passing makes the trial stale
    wait_for(lambda: time.monotonic() - killed > beat * GRACE_BEATS + 1, timeout=60,
             what="the grace period")
    finish(start_worker(there, storage, "h", 1, "--epochs", "2", env={HEARTBEAT_ENV: str(beat)}))
    study = load(storage, "h")
    assert len(study.trials) == 2 and study.trials[0].state == TrialState.FAIL
    assert study.trials[1].state in FINISHED
    assert study.trials[1].user_attrs[RUN_ATTR] == list_runs(there)[0].id


@pytest.mark.slow
def test_the_median_pruner_stops_a_worse_trial_and_its_run_says_why(
        tmp_path: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = str(tmp_path / "study.log")
    # five finished trials whose val loss was 0 at every epoch: any real trial is worse
    study = optuna.create_study(study_name="p", storage=JournalStorage(
        JournalFileBackend(journal)))
    for _ in range(5):
        study.add_trial(optuna.trial.create_trial(
            value=0.0, intermediate_values={e: 0.0 for e in range(1, 6)}))
    proc = run_trainer("sweep", "--runs-dir", str(runs_dir), "--optuna", journal, "--study",
                       "p", "--trials", "6", *BASE, "--pruner", "median", "--epochs", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trial = load(journal, "p").trials[5]
    assert trial.state == TrialState.PRUNED
    info = read_run(runs_dir / trial.user_attrs[RUN_ATTR])
    assert info.state == "stopped" and info.status["epoch"] == 1
    assert info.status["stop_reason"].startswith("pruned by Optuna's median pruner at epoch 1")
    assert trial.user_attrs[END_ATTR] == info.status["stop_reason"]
    group = list_groups(runs_dir)[0]
    assert [m.state for m in group.members] == ["stopped"]
    assert group.state == "completed"  # pruning is how a study goes, not a failure
    # resuming the group would train the pruned trial on behind Optuna's back
    again = run_trainer("resume", group.id, "--runs-dir", str(runs_dir))
    assert again.returncode == 2 and "holds an Optuna study's trials" in again.stderr
    assert read_run(runs_dir / info.id).status["epoch"] == 1
    # the dashboard: the Group page lists the trial; its Run page says why it ended
    monkeypatch.setenv("CURVEWATCH_RUNS", str(runs_dir))
    monkeypatch.chdir(ROOT)
    at = page("group", group=group.id)
    assert not at.exception
    assert "p trial 5" in at.dataframe[0].value["name"].tolist()
    at = page("run", run=info.id)
    assert not at.exception
    assert any("pruned by Optuna's median pruner at epoch 1" in str(i.value) for i in at.info)


def page(name: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "curvewatch" / "dashboard" / "views" / f"{name}.py"),
                           default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def test_a_worker_that_finds_the_study_done_trains_nothing_and_leaves_no_folder(
        tmp_path: Path, runs_dir: Path) -> None:
    journal = str(tmp_path / "study.log")
    study = optuna.create_study(study_name="done", storage=JournalStorage(
        JournalFileBackend(journal)))
    for value in (0.5, 0.4):
        study.add_trial(optuna.trial.create_trial(value=value))
    proc = run_trainer("sweep", "--runs-dir", str(runs_dir), "--optuna", journal, "--study",
                       "done", "--trials", "2", *BASE)
    assert proc.returncode == 0, proc.stderr
    assert "already has 2 of 2 trials finished or running: nothing to do" in proc.stdout
    assert "best: trial 1 val_loss 0.4000" in proc.stdout
    assert list(runs_dir.iterdir()) == []
    assert len(load(journal, "done").trials) == 2


@pytest.mark.slow
def test_a_diverging_trial_is_pruned_and_its_run_says_it_diverged(
        tmp_path: Path, runs_dir: Path) -> None:
    journal = f"sqlite:///{tmp_path / 'study.db'}"  # an RDBStorage URL works like a file
    # nan_model's outputs turn NaN at its 41st step: epoch 2 with 25 steps an epoch
    finish(start_worker(runs_dir, journal, "d", 1, "--model", "trainer_fixtures:nan_model",
                        "--batch-size", "4", "--epochs", "20"))
    trial = load(journal, "d").trials[0]
    info = read_run(runs_dir / trial.user_attrs[RUN_ATTR])
    assert trial.state == TrialState.PRUNED and trial.user_attrs[END_ATTR].startswith("diverged")
    assert info.state == "failed" and info.status["stop_reason"] == "divergence"


def test_of_two_trials_asked_at_once_for_the_last_place_the_higher_number_gives_way() -> None:
    """--trials 3 with trials 0 and 1 complete: workers asked trials 2 and 3 in the same
    instant (both saw 2 taken). Trial 2 has 2 counting trials below it and runs; trial 3 has
    3 and is surplus. A failed or surplus trial below leaves its place free."""
    study = [(0, "COMPLETE", False), (1, "PRUNED", False), (2, "RUNNING", False),
             (3, "RUNNING", False)]
    assert taken_count(study, before=2) == 2 < 3
    assert taken_count(study, before=3) == 3
    assert taken_count([(0, "FAIL", False), (1, "FAIL", True), *study[1:]], before=3) == 2
    assert taken_count(study) == 4


@pytest.mark.parametrize("state, status, pruned, kind", [
    ("completed", {"best_val_loss": 0.3, "best_epoch": 9}, None, "complete"),
    ("early_stopped", {"best_val_loss": 0.3, "best_epoch": 4,
                       "stop_reason": "validation loss has risen ..."}, None, "complete"),
    ("failed", {"stop_reason": "divergence", "error": "training loss became nan"}, None,
     "pruned"),
    ("stopped", {"best_val_loss": 0.9, "stop_reason": "pruned by ..."}, "pruned by ...",
     "pruned"),
    ("stopped", {"best_val_loss": 0.9, "stop_reason": "stop requested (STOP file)"}, None,
     "failed"),
    ("failed", {"error": "RuntimeError: boom"}, None, "failed"),
    ("completed", {"best_val_loss": None}, None, "failed"),
])
def test_curvewatchs_verdict_decides_the_trial(state: str, status: dict[str, Any],
                                               pruned: str | None, kind: str) -> None:
    """An overfitting or plateau stop completes the trial with the best val loss (the best
    weights are kept); a divergence or the pruner prunes it; anything else fails it."""
    out = trial_outcome(state, status, pruned)
    assert out.kind == kind
    assert out.value == (status["best_val_loss"] if kind == "complete" else None)


@pytest.mark.parametrize("args, message", [
    (["--optuna", "s3://bucket/study"], "--optuna must be a journal file path or a database "
                                        "URL (sqlite://, postgresql://, mysql://), got "
                                        "'s3://bucket/study'"),
    (["--optuna", "/no/such/folder/study.log"], "the folder '/no/such/folder' does not exist"),
    (["--optuna", "{tmp}"], "is a folder or empty"),
    (["--optuna", "{tmp}/s.log", "--pruner", "medain"],
     "invalid choice: 'medain'; did you mean 'median'?"),
    (["--optuna", "{tmp}/s.log", "--study", ""], "missing --study NAME"),
    (["--optuna", "{tmp}/s.log", "--random", "4"], "--random does not apply to --optuna"),
    (["--optuna", "{tmp}/s.log", "--validation", "kfold:3"],
     "--optuna trains one hold-out run per trial; got --validation 'kfold:3'"),
    (["--optuna", "{tmp}/s.log", "--grid", "optimizer=sgd,adamm"], "optimizer=adamm"),
])
def test_bad_optuna_input_exits_2_naming_it_and_starts_nothing(
        tmp_path: Path, runs_dir: Path, args: list[str], message: str) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    study = [] if "--study" in args else ["--study", "s"]
    proc = run_trainer("sweep", "--runs-dir", str(runs_dir), "--trials", "2", *study,
                       "--dataset", "wine", "--grid", "hidden=8", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert list(runs_dir.iterdir()) == []


# --------------------------------------------------------------------------- PostgreSQL
def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl") or next(iter(sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None)
    return Path(found).resolve().parent if found else None


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free port (Debian's postgresql package), as the
    `postgres` user when the tests run as root (initdb refuses root); its URL."""
    # SQLAlchemy 2.1 opens postgresql:// URLs with psycopg (3); psycopg2 alone fails there
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("no PostgreSQL driver (psycopg) in this Python: "
                    "SQLAlchemy cannot reach a server")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server here (pg_ctl not found; Debian: apt install "
                    "postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root and no runuser to start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = Path(tempfile.mkdtemp(prefix="curvewatch-pg-"))
    if as_user:
        shutil.chown(data, "postgres")
    port = free_port()
    pg_ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db")]
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data / "db"), "-U",
                    "postgres", "--auth=trust"], check=True, capture_output=True)
    subprocess.run([*pg_ctl, "-w", "-l", str(data / "log"), "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_study_on_postgresql(postgres: str, runs_dir: Path) -> None:
    workers = [start_worker(runs_dir, postgres, "pg", 3, "--epochs", "2") for _ in range(2)]
    for w in workers:
        finish(w)
    assert_each_trial_ran_once(load(postgres, "pg"), runs_dir, 3)

