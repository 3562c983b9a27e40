"""A sweep is judged per setting, folds and seeds by their spread (issue 16 point 2): the words
of tracking.aggregate that the CLI, the Runs page's group row and the Group page share."""
from __future__ import annotations

import pytest

from curvewatch.tracking.aggregate import headline, rank_settings, ranking_text, score_words
from curvewatch.tracking.groups import GroupWriter, group_headline, read_group
from curvewatch.trainer.groups import summary_lines

TWO_LRS = [{"lr": "0.01"}, {"lr": "0.001"}]


def _ranking(values_by_setting):
    import pandas as pd
    rows = [{"setting": s, "included": True, "run_id": f"r{s}{i}", "val_loss": v}
            for s, vals in enumerate(values_by_setting) for i, v in enumerate(vals)]
    return rank_settings(pd.DataFrame(rows), TWO_LRS)


@pytest.mark.parametrize("summary, words", [
    ({"mean": 0.1022, "std": 0.0131, "n": 3}, "0.1022 ± 0.0131 (3 runs)"),
    ({"mean": 0.0891, "std": 0.0, "n": 1}, "0.0891 (1 run)"),
    ({"mean": None, "std": None, "n": 0}, "-"),
    (None, "-"),
])
def test_score_words_show_no_spread_for_a_single_run(summary, words):
    assert score_words(summary) == words


def test_a_sweep_headline_is_its_ranking_of_settings_not_a_mean_across_them():
    ranking = _ranking([[0.2], [0.1]])  # lr=0.001 is better
    assert ranking_text(ranking) == \
        "best lr=0.001: val_loss 0.1000 (1 run) · lr=0.01: 0.2000 (1 run)"
    assert headline("sweep", {"val_loss": {"mean": 0.15, "std": 0.05, "n": 2}}, ranking) \
        == ranking_text(ranking)
    assert "±" not in ranking_text(ranking) and "0.15" not in ranking_text(ranking)


def test_a_setting_with_several_seeds_keeps_its_spread():
    assert ranking_text(_ranking([[0.2, 0.4], [0.5]])).startswith(
        "best lr=0.01: val_loss 0.3000 ± 0.1000 (2 runs) · lr=0.001: 0.5000 (1 run)")


def test_folds_keep_mean_and_sd():
    scores = {"val_loss": {"mean": 0.3, "std": 0.1, "n": 3},
              "val_acc": {"mean": 0.9, "std": 0.02, "n": 3}}
    assert headline("kfold", scores) == "val_loss 0.3000 ± 0.1000, val_acc 0.9000 ± 0.0200 " \
        "(3 runs)"
    assert headline("repeat", {"val_loss": {"mean": 0.3, "std": 0.0, "n": 1}}) == \
        "val_loss 0.3000 (1 run)"
    assert headline("repeat", {}) == "no finished member"


def test_group_headline_ranks_a_running_sweep_from_its_members_best_so_far(tmp_path):
    w = GroupWriter.create(tmp_path, name="sw", method="sweep", validation="holdout",
                           sweep={"settings": TWO_LRS},
                           members=[{"index": i, "name": f"sw-{i}", "setting": i,
                                     "params": p} for i, p in enumerate(TWO_LRS)])
    w.update_member(0, run_id="20260101-000000-aaaa")
    w.update_member(1, run_id="20260101-000000-bbbb")
    group = read_group(w.path)
    assert group.aggregate is None
    verdict = group_headline(group, {"20260101-000000-aaaa": 0.3,
                                     "20260101-000000-bbbb": 0.2})
    assert verdict == "best lr=0.001: val_loss 0.2000 (1 run) · lr=0.01: 0.3000 (1 run)"
    assert group_headline(group, {}) == "no finished member"


def test_the_cli_summary_of_a_sweep_ranks_settings_without_a_spread_of_one():
    import pandas as pd
    per_member = pd.DataFrame([{"setting": 0, "included": True, "run_id": "a", "val_loss": 0.3},
                               {"setting": 1, "included": True, "run_id": "b",
                                "val_loss": 0.2}])
    rec = {"id": "g", "state": "completed", "method": "sweep",
           "members": [{"state": "completed"}] * 2,
           "aggregate": {"members": ["a", "b"], "ranking": rank_settings(per_member, TWO_LRS),
                         "scores": {"val_loss": {"mean": 0.25, "std": 0.05, "n": 2}}}}
    lines = summary_lines(rec)
    assert lines[1] == "by setting (best epoch of 2 members): best lr=0.001: val_loss " \
        "0.2000 (1 run) · lr=0.01: 0.3000 (1 run)"
    assert not any("mean over runs" in ln or "± 0.0000" in ln for ln in lines)


def test_trainer_list_shows_a_finished_sweeps_ranking(tmp_path, capsys):
    from curvewatch import tracking
    from curvewatch.tracking.aggregate import aggregate
    from curvewatch.trainer.cli import main
    w = GroupWriter.create(tmp_path, name="sw", method="sweep", validation="holdout",
                           sweep={"settings": TWO_LRS},
                           members=[{"index": i, "name": f"sw-{i}", "setting": i,
                                     "params": p} for i, p in enumerate(TWO_LRS)])
    histories = {}
    for i, final in enumerate((0.3, 0.2)):
        run = tracking.Run.create(tmp_path, name=f"sw-{i}", config={}, epochs=2, group=w.id,
                                  heartbeat_seconds=0)
        for e in (1, 2):
            run.log_epoch(epoch=e, train_loss=final, val_loss=final + (2 - e) * 0.1)
        run.finish("completed")
        w.update_member(i, state="completed", run_id=run.id)
        histories[run.id] = tracking.read_history(run.path)
    w.finish("completed", aggregate=aggregate(w.record["members"], histories,
                                              include_states=("completed",),
                                              settings=TWO_LRS))
    assert main(["list", "--runs-dir", str(tmp_path)]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(w.id))
    assert row.endswith("best lr=0.001: val_loss 0.2000 (1 run) · lr=0.01: 0.3000 (1 run)")
