"""Run groups end to end, with real small trainings through the CLI: K-fold folds from the
saved split indices, bootstrap out-of-bag validation, the aggregate against the members'
own files, a 2x2 sweep run two at a time with its ranking, a failing member, and stop.

    runs/
      <group_id>/group.json, logs/<i>.log      the group
      <run_id>/run.json (group = <group_id>)    each member, a normal run folder
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_trainer, wait_for
from curvewatch.tracking import (
    list_groups,
    list_runs,
    read_group,
    read_history,
    read_log_tail,
    read_run,
    request_stop,
)

FAST = ["--dataset", "wine", "--hidden", "16", "--epochs", "3"]
N_WINE = 178


def _env_runner(runs_dir: Path, *args: str, timeout: float = 300):
    # cwd tests/ so members (child processes) import trainer_fixtures, as the user's cwd
    return run_trainer(*args, runs_dir=runs_dir, timeout=timeout, cwd=ROOT / "tests")


def _only_group(runs_dir: Path):
    groups = list_groups(runs_dir)
    assert len(groups) == 1, groups
    return groups[0]


def _members(runs_dir: Path, group) -> list:
    return [read_run(runs_dir / rid) for rid in group.run_ids]


@pytest.mark.slow
def test_kfold_3_trains_three_members_whose_validation_folds_partition_the_data(runs_dir):
    done = _env_runner(runs_dir, "run", *FAST, "--validation", "kfold:3", "--parallel", "3")
    assert done.returncode == 0, done.stderr + done.stdout
    group = _only_group(runs_dir)
    assert group.state == "completed" and group.method == "kfold"
    assert [m.fold for m in group.members] == [1, 2, 3]
    members = _members(runs_dir, group)
    assert len(members) == 3 and all(m.state == "completed" for m in members)
    vals = []
    for m in members:  # every member is a normal run folder of the group
        assert m.group == group.id and m.config["validation"] == "kfold:3"
        assert (m.path / "checkpoints" / "best.pt").exists()
        assert read_history(m.path)["epoch"].tolist() == [1, 2, 3]
        # its output went to the group's log of that member, which the run's log tail shows
        assert f"run {m.id} completed" in read_log_tail(m.path)
        train, val = set(m.data["split_index"]["train"]), m.data["split_index"]["val"]
        assert not train & set(val) and len(train) + len(val) == N_WINE
        vals.append(val)
    everything = sorted(i for v in vals for i in v)
    assert everything == list(range(N_WINE))  # disjoint folds, every sample exactly once
    assert "cross-validated" in done.stdout and "val_loss" in done.stdout
    # list_runs shows the members, never the group folder as a broken run
    assert {r.id for r in list_runs(runs_dir)} == set(group.run_ids)


@pytest.mark.slow
def test_the_aggregate_is_the_mean_and_std_of_the_members_files(runs_dir):
    done = _env_runner(runs_dir, "run", *FAST, "--repeat", "3", "--parallel", "3",
                       "--early-stop", "plateau", "--patience", "1")
    assert done.returncode == 0, done.stderr + done.stdout
    group = _only_group(runs_dir)
    assert group.method == "repeat" and [m.seed for m in group.members] == [0, 1, 2]
    histories = [read_history(runs_dir / rid) for rid in group.run_ids]
    agg = group.aggregate
    for _, row in agg.curves.iterrows():
        e = int(row["epoch"])
        at = [h[h["epoch"] == e] for h in histories]
        at = [r for r in at if len(r)]
        assert row["n"] == len(at)
        for metric in ("train_loss", "val_loss", "val_acc", "grad_norm", "lr"):
            x = np.array([float(r[metric].iloc[0]) for r in at])
            assert row[f"{metric}_mean"] == pytest.approx(x.mean(), rel=1e-9)
            assert row[f"{metric}_std"] == pytest.approx(x.std(), rel=1e-9, abs=1e-12)
    best = [h.loc[h["val_loss"].idxmin()] for h in histories]
    loss = np.array([b["val_loss"] for b in best])
    acc = np.array([b["val_acc"] for b in best])
    assert agg.scores["val_loss"]["mean"] == pytest.approx(loss.mean(), rel=1e-9)
    assert agg.scores["val_loss"]["std"] == pytest.approx(loss.std(), rel=1e-9)
    assert agg.scores["val_acc"]["mean"] == pytest.approx(acc.mean(), rel=1e-9)
    assert agg.scores["val_acc"]["std"] == pytest.approx(acc.std(), abs=1e-12)
    assert agg.per_member["best_epoch"].tolist() == [int(b["epoch"]) for b in best]


@pytest.mark.slow
def test_bootstrap_members_validate_on_their_out_of_bag_samples(runs_dir):
    done = _env_runner(runs_dir, "run", *FAST, "--epochs", "2", "--validation", "bootstrap:2",
                       "--parallel", "2")
    assert done.returncode == 0, done.stderr + done.stdout
    group = _only_group(runs_dir)
    assert group.method == "bootstrap" and len(group.run_ids) == 2
    draws = []
    for m in _members(runs_dir, group):
        train, val = m.data["split_index"]["train"], m.data["split_index"]["val"]
        assert len(train) == N_WINE > len(set(train))  # n draws with replacement
        assert set(val) == set(range(N_WINE)) - set(train)  # exactly the out-of-bag rows
        assert m.data["n_train"] == N_WINE and m.data["n_val"] == len(val)
        draws.append(tuple(train))
    assert draws[0] != draws[1]  # two different resamples


@pytest.mark.slow
def test_a_2x2_grid_run_two_at_a_time_finishes_with_four_runs_and_ranks_them(runs_dir):
    done = _env_runner(runs_dir, "sweep", *FAST, "--grid", "lr=1e-3,3e-2",
                       "--grid", "batch_size=32,128", "--parallel", "2")
    assert done.returncode == 0, done.stderr + done.stdout
    group = _only_group(runs_dir)
    assert group.state == "completed" and group.method == "sweep"
    members = _members(runs_dir, group)
    assert len(members) == 4 and all(m.state == "completed" for m in members)
    assert {(m.config["lr"], m.config["batch_size"]) for m in members} == \
        {(1e-3, 32), (1e-3, 128), (3e-2, 32), (3e-2, 128)}
    assert {m.config["threads"] for m in members} == {max(1, len(os.sched_getaffinity(0)) // 2)}
    # the right ranking: settings by their run's best val loss, recomputed from its metrics
    best = {(m.config["lr"], m.config["batch_size"]): read_history(m.path)["val_loss"].min()
            for m in members}
    expected = sorted(best, key=best.get)
    ranking = group.aggregate.ranking
    got = [(float(p["lr"]), int(p["batch_size"])) for p in ranking["params"]]
    assert got == expected and ranking["rank"].tolist() == [1, 2, 3, 4]
    assert ranking["val_loss_mean"].tolist() == pytest.approx([best[k] for k in expected])
    assert "ranking by validation loss" in done.stdout
    table = done.stdout[done.stdout.index("ranking by"):].splitlines()[1:5]
    assert [line.split()[0] for line in table] == ["1.", "2.", "3.", "4."]
    assert f"lr={_text(expected[0][0])}, batch_size={expected[0][1]}" in table[0]


def _text(lr: float) -> str:
    return {1e-3: "1e-3", 3e-2: "3e-2"}[lr]


@pytest.mark.slow
def test_a_failing_member_leaves_the_others_running_and_the_group_shows_it(runs_dir):
    # paced epochs: the healthy members train for 9 s or more while using little CPU, so the
    # failing one (it fails at its 3rd step) ends while they train however their starts drift
    done = _env_runner(runs_dir, "run", "--dataset", "wine", "--model",
                       "trainer_fixtures:fails_for_seed_1", "--epochs", "30",
                       "--min-epoch-seconds", "0.3", "--batch-size", "16", "--repeat", "3",
                       "--parallel", "3")
    assert done.returncode == 0, done.stderr + done.stdout  # not every member failed
    group = _only_group(runs_dir)
    assert group.state == "partial"
    by_seed = {m.seed: m for m in group.members}
    assert by_seed[1].state == "failed" and "seed 1 fails on purpose" in by_seed[1].error
    assert by_seed[0].state == by_seed[2].state == "completed"
    runs = {m.seed: read_run(runs_dir / m.run_id) for m in group.members}
    assert runs[1].epoch == 0 and runs[0].epoch == runs[2].epoch == 30
    # the others were still training when it failed, and went on to the end
    failed_at = runs[1].status["ended_at"]
    assert runs[0].status["ended_at"] > failed_at and runs[2].status["ended_at"] > failed_at
    assert group.aggregate.scores["val_loss"]["n"] == 2
    assert set(group.aggregate.members) == {by_seed[0].run_id, by_seed[2].run_id}
    assert "failed" in done.stdout and "seed 1 fails on purpose" in done.stdout


@pytest.mark.slow
def test_stopping_a_group_stops_its_members_and_starts_no_more(runs_dir):
    done = _env_runner(runs_dir, "run", "--dataset", "digits", "--hidden", "64", "--epochs",
                       "100000", "--validation", "kfold:3", "--parallel", "2", "--detach")
    assert done.returncode == 0, done.stderr
    gid = done.stdout.split()[1]
    assert done.stdout.startswith(f"started {gid} (pid ")

    def two_training():
        g = read_group(runs_dir / gid)
        runs = [read_run(runs_dir / r) for r in g.run_ids]
        return len(runs) == 2 and all(r.epoch >= 1 for r in runs)
    wait_for(two_training, timeout=120, every=0.2, what="two members training")
    stop = _env_runner(runs_dir, "stop", gid, "--wait", "90")
    assert stop.returncode == 0, stop.stderr + stop.stdout
    group = read_group(runs_dir / gid)
    assert group.state == "stopped"
    states = sorted(m.state for m in group.members)
    assert states == ["not_started", "stopped", "stopped"]
    for rid in group.run_ids:
        info = read_run(runs_dir / rid)
        assert info.state == "stopped" and info.epoch < 100000
        assert read_history(runs_dir / rid)["epoch"].tolist() == list(range(1, info.epoch + 1))
    assert group.aggregate is not None and group.aggregate.scores["val_loss"]["n"] == 2
    assert not math.isnan(group.aggregate.scores["val_loss"]["mean"])


@pytest.mark.slow
def test_a_stopped_group_resumes_its_stopped_member_and_starts_the_rest(runs_dir):
    epochs = 40  # paced, at least 4 s a member: the stop lands during the first one
    done = _env_runner(runs_dir, "run", "--dataset", "digits", "--hidden", "16", "--epochs",
                       str(epochs), "--min-epoch-seconds", "0.1", "--validation", "kfold:3",
                       "--parallel", "1", "--threads", "1", "--detach")
    assert done.returncode == 0, done.stderr
    gid = done.stdout.split()[1]

    def first_training():
        g = read_group(runs_dir / gid)
        return g.run_ids and read_run(runs_dir / g.run_ids[0]).epoch >= 2 and g.run_ids[0]
    first = wait_for(first_training, timeout=120, every=0.1, what="the first member training")
    request_stop(runs_dir / gid)  # what `python -m trainer stop GROUP` does, without its startup
    group = wait_for(lambda: (g := read_group(runs_dir / gid)).state == "stopped" and g,
                     timeout=90, every=0.1, what="the group to stop")
    assert sorted(m.state for m in group.members) == ["not_started", "not_started", "stopped"]
    stopped_at = read_run(runs_dir / first).epoch
    assert stopped_at < epochs

    again = _env_runner(runs_dir, "resume", gid)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "1 to resume, 2 to start" in again.stdout
    group = read_group(runs_dir / gid)
    assert group.state == "completed" and [m.fold for m in group.members] == [1, 2, 3]
    assert group.run_ids[0] == first and len(set(group.run_ids)) == 3
    for rid in group.run_ids:  # the stopped member went on from its last.pt: no epoch twice
        info = read_run(runs_dir / rid)
        assert info.state == "completed"
        assert read_history(runs_dir / rid)["epoch"].tolist() == list(range(1, epochs + 1))
    assert read_run(runs_dir / first).status.get("resumes") == 1
    assert group.aggregate is not None and group.aggregate.scores["val_loss"]["n"] == 3
    assert {r.id for r in list_runs(runs_dir)} == set(group.run_ids)

    nothing = _env_runner(runs_dir, "resume", gid)
    assert nothing.returncode == 2
    assert f"group {gid} has nothing to resume: every member has ended (3 completed)" \
        in nothing.stderr


@pytest.mark.slow
def test_a_completed_group_trains_longer_with_resume_epochs(runs_dir):
    """`resume GROUP --epochs N` (the advice when every fold was still improving): each
    completed member goes on from its last.pt up to N epochs, none repeated or skipped."""
    done = _env_runner(runs_dir, "run", *FAST, "--validation", "kfold:2", "--parallel", "2")
    assert done.returncode == 0, done.stderr + done.stdout
    gid = _only_group(runs_dir).id
    bad = _env_runner(runs_dir, "resume", gid, "--epochs", "0")
    assert bad.returncode == 2 and "epochs" in bad.stderr, bad.stderr

    longer = _env_runner(runs_dir, "resume", gid, "--epochs", "5")
    assert longer.returncode == 0, longer.stderr + longer.stdout
    assert "2 to resume, 0 to start, each up to 5 epochs" in longer.stdout
    group = _only_group(runs_dir)
    assert group.state == "completed" and len(group.run_ids) == 2
    for info in _members(runs_dir, group):
        assert info.state == "completed" and info.config["epochs"] == 5
        assert read_history(info.path)["epoch"].tolist() == [1, 2, 3, 4, 5]
        assert info.status.get("resumes") == 1
    assert group.aggregate is not None and group.aggregate.scores["val_loss"]["n"] == 2

    nothing = _env_runner(runs_dir, "resume", gid, "--epochs", "5")
    assert nothing.returncode == 2
    assert "completed with fewer than 5 epochs" in nothing.stderr, nothing.stderr
