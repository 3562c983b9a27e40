"""Run groups without training: validation schemes and their splits, sweep settings, the
member plan, usage errors (exit 2, nothing written), the aggregate's arithmetic, and a group
reader that reports a broken group.json instead of raising.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curvewatch.tracking import (
    GroupNotFound,
    GroupWriter,
    Run,
    group_path,
    list_groups,
    list_runs,
    read_group,
)
from curvewatch.tracking.aggregate import aggregate, curve_stats, member_score
from curvewatch.trainer.cli import main
from curvewatch.trainer.config import to_args, validate
from curvewatch.trainer.data import load_dataset
from curvewatch.trainer.errors import ConfigError
from curvewatch.trainer.groups import member_threads, plan_group
from curvewatch.trainer.sweep import settings_from_args
from curvewatch.trainer.validation import parse_validation


# ------------------------------------------------------------------ validation schemes
@pytest.mark.parametrize("text, canonical", [
    ("holdout", "holdout"), ("holdout:0.3", "holdout"), ("KFold:5", "kfold:5"),
    ("bootstrap:20", "bootstrap:20"),
])
def test_validation_values_are_accepted_in_canonical_form(text, canonical):
    assert validate({"validation": text}).validation == canonical


def test_kfold_and_bootstrap_are_groups_and_holdout_is_one_run():
    assert parse_validation("kfold:5").is_group and parse_validation("bootstrap:2").is_group
    assert not parse_validation("holdout:0.2").is_group


def test_holdout_with_a_fraction_sets_val_fraction():
    assert validate({"validation": "holdout:0.3"}).val_fraction == 0.3


@pytest.mark.parametrize("raw, message", [
    ({"validation": "cv:5"}, "validation must be one of holdout, holdout:F (0 < F < 1), "
                             "kfold:K (2 <= K <= 100) or bootstrap:B (1 <= B <= 1000), got 'cv:5'"),
    ({"validation": "kfold:1"}, "validation kfold:K needs an integer 2 <= K <= 100, got 'kfold:1'"),
    ({"validation": "bootstrap:x"}, "bootstrap:B needs an integer 1 <= B <= 1000"),
    ({"validation": "holdout:1.5"}, "holdout:F needs a fraction 0 < F < 1, got 'holdout:1.5'"),
    ({"fold": 2}, "fold needs --validation kfold:K or bootstrap:B, got fold 2 with validation "
                  "holdout"),
    ({"validation": "kfold:3", "fold": 4}, "fold must be between 1 and 3 for validation "
                                           "kfold:3, got 4"),
    ({"threads": -1}, "threads must be between 0 and 1024"),
])
def test_bad_validation_options_name_the_value_and_what_is_accepted(raw, message):
    with pytest.raises(ConfigError) as err:
        validate(raw)
    assert message in str(err.value)


def test_kfold_folds_are_stratified_disjoint_and_cover_every_row():
    vals, ys = [], []
    for fold in (1, 2, 3, 4):
        d = load_dataset(validate({"dataset": "wine", "validation": "kfold:4", "fold": fold}))
        assert not set(d.train.index) & set(d.val.index)
        vals.append(d.val.index)
        ys.append(np.bincount(d.val.y, minlength=3) / len(d.val.y))
    assert sorted(np.concatenate(vals).tolist()) == list(range(178))
    overall = np.bincount(load_dataset(validate({"dataset": "wine"})).train.y) / 142
    for share in ys:  # stratified: each fold has the classes in about the overall shares
        assert np.abs(share - overall).max() < 0.05


def test_bootstrap_resamples_draw_with_replacement_and_validate_out_of_bag():
    a = load_dataset(validate({"dataset": "wine", "validation": "bootstrap:3", "fold": 1}))
    b = load_dataset(validate({"dataset": "wine", "validation": "bootstrap:3", "fold": 2}))
    for d in (a, b):
        assert len(d.train.index) == 178 > len(set(d.train.index))
        assert set(d.val.index) == set(range(178)) - set(d.train.index)
    assert a.train.index.tolist() != b.train.index.tolist()
    again = load_dataset(validate({"dataset": "wine", "validation": "bootstrap:3", "fold": 1}))
    assert again.train.index.tolist() == a.train.index.tolist()  # resume sees the same rows


def test_config_flags_rebuild_the_same_config():
    from curvewatch.trainer.cli import build_parser, config_from_args
    cfg = validate({"dataset": "wine", "validation": "kfold:5", "fold": 2, "lr": 0.0123,
                    "hidden": "32,16", "early_stop": "plateau", "thresholds": ["min_delta=0.01"],
                    "threads": 1})
    args = build_parser().parse_args(["run", *to_args(cfg)])
    assert config_from_args(args) == cfg


# ------------------------------------------------------------------ sweeps and plans
def test_a_grid_is_every_combination_first_axis_slowest():
    assert settings_from_args(["lr=1e-3,1e-2", "batch_size=32,128"], [], None, 0) == [
        {"lr": "1e-3", "batch_size": "32"}, {"lr": "1e-3", "batch_size": "128"},
        {"lr": "1e-2", "batch_size": "32"}, {"lr": "1e-2", "batch_size": "128"}]
    assert settings_from_args(["hidden=128,64;256"], [], None, 0) == [
        {"hidden": "128,64"}, {"hidden": "256"}]


def test_a_random_search_draws_within_its_ranges_and_is_seeded():
    s = settings_from_args(["activation=relu,tanh"], ["lr=1e-4:1e-1:log", "batch_size=16:128"],
                           50, 7)
    assert len(s) == 50 and s == settings_from_args(
        ["activation=relu,tanh"], ["lr=1e-4:1e-1:log", "batch_size=16:128"], 50, 7)
    lrs = np.array([float(x["lr"]) for x in s])
    assert (lrs >= 1e-4).all() and (lrs <= 1e-1).all()
    assert (np.log10(lrs) < -2.5).mean() > 0.2  # log-uniform: small values are common
    assert all(16 <= int(x["batch_size"]) <= 128 for x in s)
    assert {x["activation"] for x in s} == {"relu", "tanh"}


@pytest.mark.parametrize("grid, ranges, random, message", [
    (["lrr=1,2"], [], None, "--grid 'lrr=1,2': unknown option 'lrr'; known options are"),
    (["lr"], [], None, "--grid must be NAME=V1,V2,... (e.g. lr=1e-3,1e-2), got 'lr'"),
    (["fold=1,2"], [], None, "fold is set by the group and cannot be swept"),
    (["lr=1,1"], [], None, "repeats a value"),
    ([], ["lr=1e-4:1e-1:log"], None, "--range needs --random N"),
    ([], ["lr=0:1:log"], 3, "a log range needs LOW > 0, got 0"),
    ([], ["lr=1:0.1"], 3, "needs finite LOW < HIGH, got 1 and 0.1"),
    ([], ["optimizer=1:2"], 3, "optimizer is not a number; use --grid for it"),
    ([], [], None, "a sweep needs --grid NAME=V1,V2"),
    (["lr=1,2"], ["lr=1:2"], 3, "give lr more than once"),
])
def test_bad_sweep_specs_name_the_value_and_what_is_accepted(grid, ranges, random, message):
    with pytest.raises(ConfigError) as err:
        settings_from_args(grid, ranges, random, 0)
    assert message in str(err.value)


def test_a_sweep_with_kfold_plans_every_setting_times_every_fold():
    base = validate({"dataset": "wine", "validation": "kfold:3", "seed": 5})
    plan = plan_group(base, name="sw", repeat=2, parallel=4,
                      settings=[{"lr": "0.01"}, {"lr": "0.1"}])
    assert plan.method == "sweep" and len(plan.members) == 2 * 2 * 3
    m = plan.members
    assert [(x.setting, x.seed, x.fold) for x in m[:4]] == [(0, 5, 1), (0, 5, 2), (0, 5, 3),
                                                            (0, 6, 1)]
    assert m[-1].config.lr == 0.1 and m[-1].config.fold == 3 and m[-1].config.seed == 6
    assert m[0].name == "sw lr=0.01 seed 5 fold 1/3"
    assert len({x.name for x in m}) == len(m)


def test_parallel_members_share_the_cores():
    assert member_threads(0, 1, cores=8) == 0  # one at a time: torch's default
    assert member_threads(0, 2, cores=8) == 4
    assert member_threads(0, 3, cores=2) == 1
    assert member_threads(3, 2, cores=8) == 3  # the user's --threads wins


@pytest.mark.parametrize("args, message", [
    (["run", "--validation", "kfold:1"], "validation kfold:K needs an integer 2 <= K <= 100"),
    (["run", "--validation", "kfold:3", "--lr", "-1"], "lr must be > 0 and <= 10, got -1"),
    (["run", "--parallel", "2"], "--parallel 2 needs a group"),
    (["run", "--validation", "kfold:500", "--dataset", "wine"], "kfold:K needs an integer"),
    (["run", "--validation", "kfold:100", "--dataset", "wine"], "cannot split"),
    (["sweep", "--grid", "lr=0.01,abc"], "setting lr=abc: lr must be a number, got 'abc'"),
    (["sweep", "--grid", "nope=1"], "unknown option 'nope'"),
    (["sweep", "--random", "3", "--range", "lr=1:0"], "needs finite LOW < HIGH"),
    (["sweep", "--grid", "model=mlp,no_such_mod:f"], "cannot be imported"),
])
def test_bad_group_input_exits_2_and_writes_nothing(args, message, runs_dir, capsys):
    code = main([*args[:1], "--runs-dir", str(runs_dir), "--epochs", "2", *args[1:]])
    assert code == 2
    assert message in capsys.readouterr().err
    assert list(runs_dir.iterdir()) == []


def test_bad_repeat_is_an_argparse_error(runs_dir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--runs-dir", str(runs_dir), "--repeat", "0"])
    assert e.value.code == 2
    assert "--repeat must be an integer >= 1, got '0'" in capsys.readouterr().err


# ------------------------------------------------------------------ the aggregate
def _history(values: dict[str, list[float]]) -> pd.DataFrame:
    n = len(next(iter(values.values())))
    return pd.DataFrame({"epoch": list(range(1, n + 1)), "time": [1e9] * n, **values})


def test_curves_are_per_epoch_mean_and_population_std_with_the_members_counted():
    h = {"a": _history({"val_loss": [1.0, 0.5, 0.4]}), "b": _history({"val_loss": [3.0, 1.5]})}
    c = curve_stats(h)
    assert list(c.columns) == ["epoch", "n", "val_loss_mean", "val_loss_std"]
    assert c["n"].tolist() == [2, 2, 1]
    assert c["val_loss_mean"].tolist() == [2.0, 1.0, 0.4]
    assert c["val_loss_std"].tolist() == [1.0, 0.5, 0.0]


def test_group_progress_counts_only_completed_and_early_stopped_as_finished():
    from curvewatch.tracking.groups import group_progress
    p = group_progress([("completed", 30, 30), ("stopped", 10, 30), ("not_started", None, None)])
    assert (p.members, p.finished) == (3, 1)
    assert p.text == "1 of 3 members finished · 1 stopped · 1 not started"
    assert p.fraction == pytest.approx((30 + 10 + 0) / (30 + 30 + 1))
    early = group_progress([("early_stopped", 12, 40), ("failed", None, None),
                            ("running", 5, 40)])
    assert early.text == "1 of 3 members finished · 1 running · 1 failed"
    assert early.fraction == pytest.approx((40 + 0 + 5) / (40 + 1 + 40))
    assert group_progress([]).fraction == 0.0


def test_a_members_score_is_its_lowest_val_loss_and_the_accuracy_of_that_epoch():
    h = _history({"val_loss": [1.0, float("nan"), 0.3, 0.5], "val_acc": [0.5, 0.1, 0.8, 0.9]})
    assert member_score(h) == {"best_epoch": 3, "epochs": 4, "val_loss": 0.3, "val_acc": 0.8}


def test_failed_members_are_listed_but_left_out_of_scores_and_ranking():
    members = [{"index": 0, "run_id": "r0", "state": "completed", "setting": 0},
               {"index": 1, "run_id": "r1", "state": "failed", "setting": 0},
               {"index": 2, "run_id": "r2", "state": "completed", "setting": 1}]
    h = {"r0": _history({"val_loss": [0.6, 0.4]}), "r1": _history({"val_loss": [0.1]}),
         "r2": _history({"val_loss": [0.3, 0.2]})}
    agg = aggregate(members, h, include_states=("completed",),
                    settings=[{"lr": "0.1"}, {"lr": "0.01"}])
    assert agg["members"] == ["r0", "r2"]
    assert agg["scores"]["val_loss"] == {"mean": pytest.approx(0.3), "std": pytest.approx(0.1),
                                         "n": 2, "values": [0.4, 0.2]}
    assert [r["params"] for r in agg["ranking"]] == [{"lr": "0.01"}, {"lr": "0.1"}]
    assert agg["ranking"][1]["failed"] == 1 and agg["ranking"][1]["val_loss"]["n"] == 1


# ------------------------------------------------------------------ the group record
def _group(tmp_path: Path, **kw) -> GroupWriter:
    return GroupWriter.create(tmp_path, name="g", method="kfold", validation="kfold:2",
                              members=[{"index": 0, "name": "g fold 1/2", "fold": 1},
                                       {"index": 1, "name": "g fold 2/2", "fold": 2}], **kw)


def test_a_group_reads_back_with_its_members_and_live_member_states(tmp_path):
    w = _group(tmp_path)
    run = Run.create(tmp_path, name="g fold 1/2", group=w.id, heartbeat_seconds=0)
    run.log_epoch(val_loss=0.5, val_acc=0.75)
    w.update_member(0, run_id=run.id, state="running")
    g = read_group(w.path)
    assert g.id == w.id and g.method == "kfold" and g.state == "running" and g.problem is None
    assert [m.state for m in g.members] == ["running", "pending"] and g.run_ids == (run.id,)
    run.finish("failed", error="boom")  # the run folder is the truth about a member
    assert read_group(w.path).members[0].state == "failed"
    assert [x.id for x in list_groups(tmp_path)] == [w.id]
    assert [r.id for r in list_runs(tmp_path)] == [run.id]
    assert group_path(tmp_path, w.id) == w.path.resolve()
    with pytest.raises(GroupNotFound):
        group_path(tmp_path, run.id)


def test_finishing_writes_the_state_and_an_aggregate_that_reads_as_frames(tmp_path):
    w = _group(tmp_path)
    agg = aggregate([{"index": 0, "run_id": "r", "state": "completed", "setting": None}],
                    {"r": _history({"val_loss": [0.5, 0.25], "val_acc": [0.5, 0.75]})},
                    include_states=("completed",))
    w.finish("partial", aggregate=agg)
    g = read_group(w.path)
    assert g.state == "partial" and g.ended_at is not None
    assert g.aggregate.curves["val_loss_mean"].tolist() == [0.5, 0.25]
    assert g.aggregate.scores["val_acc"]["mean"] == 0.75
    assert g.aggregate.per_member["best_epoch"].tolist() == [2]


@pytest.mark.parametrize("content, problem", [
    (b"", "group.json is unreadable"),
    (b"\x00\xff", "group.json is unreadable"),
    (b"[1, 2]", "does not hold a JSON object"),
    (b'{"members": 3}', "no member list"),
    (b'{"members": [{"name": "x"}], "aggregate": {"curves": "nope", "ranking": [1]}}', None),
])
def test_a_broken_group_json_is_reported_never_raised(tmp_path, content, problem):
    d = tmp_path / "20260101-000000-broken-0000"
    d.mkdir()
    (d / "group.json").write_bytes(content)
    [g] = list_groups(tmp_path)
    if problem is None:
        assert g.members[0].name == "x" and g.aggregate is not None
    else:
        assert problem in g.problem
    assert list_runs(tmp_path) == []  # a group folder is not a broken run


def test_a_group_whose_runner_died_reads_as_crashed(tmp_path):
    w = _group(tmp_path)
    rec = json.loads((w.path / "group.json").read_text())
    rec["pid"] = 999_999_999
    (w.path / "group.json").write_text(json.dumps(rec))
    assert read_group(w.path).state == "crashed"


def test_long_curves_go_to_their_own_file_so_group_json_stays_small(tmp_path):
    w = _group(tmp_path)
    n = 20_000
    h = _history({"val_loss": list(np.linspace(2, 1, n)), "train_loss": [1.0] * n,
                  "val_acc": [0.5] * n})
    agg = aggregate([{"index": 0, "run_id": "r", "state": "completed", "setting": None}],
                    {"r": h}, include_states=("completed",))
    w.finish("completed", aggregate=agg)
    assert (w.path / "group.json").stat().st_size < 20_000
    full = read_group(w.path)
    assert full.problem is None and len(full.aggregate.curves) == n
    assert full.aggregate.curves["val_loss_mean"].iloc[-1] == pytest.approx(1.0)
    [listed] = list_groups(tmp_path)  # listing skips the curves
    assert len(listed.aggregate.curves) == 0 and listed.aggregate.scores["val_loss"]["n"] == 1


def test_a_members_log_tail_comes_from_its_groups_log_and_never_from_outside(tmp_path):
    from curvewatch.tracking import read_log_tail

    runs = tmp_path / "runs"
    g = GroupWriter.create(runs, name="g", method="kfold", validation="kfold:2",
                           members=[{"index": 0, "name": "m0"}, {"index": 1, "name": "m1"}])
    member = Run.create(runs, name="m1", group=g.id, heartbeat_seconds=0)
    member.finish()
    assert read_log_tail(member.path) == ""  # not yet known as member 1
    (g.path / "logs").mkdir(exist_ok=True)
    g.member_log(1).write_text("epoch 1/2 train_loss 0.5\n")
    g.update_member(1, run_id=member.id)
    assert read_log_tail(member.path) == "epoch 1/2 train_loss 0.5\n"
    (member.path / "trainer.log").write_text("own log\n")  # a run's own log comes first
    assert read_log_tail(member.path) == "own log\n"

    outside = Run.create(runs, name="escape", group="../../etc", heartbeat_seconds=0)
    outside.finish()
    assert read_log_tail(outside.path) == ""


def test_only_a_group_whose_runner_is_gone_can_be_resumed_and_only_its_unfinished_members():
    import re
    import tempfile

    from curvewatch.commands import Invocation
    from curvewatch.tracking.jsonio import atomic_write_json, read_json
    from curvewatch.trainer.groups import plan_resume

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        g = GroupWriter.create(runs, name="g", method="kfold", validation="kfold:3",
                               members=[{"index": i, "name": f"m{i}"} for i in range(3)])
        with pytest.raises(ConfigError, match=f"group {g.id} is still running"):
            plan_resume(read_group(g.path))  # this process is its runner, and alive
        with pytest.raises(ConfigError, match=re.escape(f"stop it first: curvewatch stop "
                                                        f"{g.id} --runs-dir 'my runs'")):
            plan_resume(read_group(g.path), how=Invocation("curvewatch", "my runs"))
        done = Run.create(runs, name="m0", group=g.id, heartbeat_seconds=0)
        done.finish("completed")
        stopped = Run.create(runs, name="m1", group=g.id, heartbeat_seconds=0)
        stopped.finish("stopped", stop_reason="stop requested (STOP file)")
        rec = read_json(g.path / "group.json")  # the runner was killed: no pid, no heartbeat
        rec.update(pid=None, updated_at=0)
        rec["members"][0].update(state="completed", run_id=done.id)
        rec["members"][1].update(state="running", run_id=stopped.id)
        atomic_write_json(g.path / "group.json", rec)
        assert read_group(g.path).state == "crashed"
        assert plan_resume(read_group(g.path)) == {1: stopped.id, 2: None}
