"""Group-level diagnosis (issue 16 point 16): when every fold is still improving at its last
epoch, or every fold overfits, the group says so with advice; one member alone does not."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curvewatch.commands import SHELL_TRAINER
from curvewatch.diagnosis.group_findings import group_findings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard_fixtures as dfx  # noqa: E402


@pytest.mark.parametrize("kinds, expected", [
    ([{"still_improving"}, {"still_improving", "unstable"}, {"still_improving"}],
     ["still_improving"]),
    ([{"overfitting"}, {"overfitting"}], ["overfitting"]),
    ([{"overfitting"}, {"plateau"}, {"overfitting"}], []),          # not every fold
    ([{"still_improving"}, set(), {"still_improving"}], ["still_improving"]),  # one not yet
    ([{"overfitting"}, set(), set()], []),                          # one diagnosed member
    ([], []),
])
def test_a_group_finding_needs_every_diagnosed_member(kinds, expected):
    assert [f.kind for f in group_findings(kinds, trainer=SHELL_TRAINER)] == expected


def test_the_words_name_the_members_their_epochs_and_what_to_do():
    (f,) = group_findings([{"still_improving"}] * 3, method="kfold", epochs=[30, 30, 30],
                          group="g1", trainer="curvewatch")
    assert f.message.startswith("Every fold (3 of 3) was still improving at its last epoch "
                                "(30)")
    assert "(curvewatch resume g1 --epochs N)" in f.advice  # the caller's command
    (f,) = group_findings([{"overfitting"}, {"overfitting"}], method="repeat",
                          best_epochs=[14, 8], trainer=SHELL_TRAINER)
    assert "Every seed (2 of 2) overfits" in f.message and "epochs 8-14" in f.message
    assert "best.pt" in f.advice and "--weight-decay" in f.advice


def _two_fold_group_page(monkeypatch, name: str, epochs: int, val_loss, flag: dict) -> tuple:
    """A completed 2-fold group whose fold i logged val_loss(e, i) with `flag` at its start
    epoch (a function of i), and its Group page run: (group id, the page)."""
    root = dfx.empty_runs_dir()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    g = dfx.tracking.GroupWriter.create(
        root, name=name, method="kfold", validation="kfold:2",
        members=[{"index": i, "name": f"{name} fold {i + 1}/2", "fold": i + 1} for i in range(2)])
    for i in range(2):
        run = dfx.Run.create(root, name=f"{name} fold {i + 1}/2", config=dfx.base_config(),
                             epochs=epochs, group=g.id, heartbeat_seconds=0)
        for e in range(1, epochs + 1):
            run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=val_loss(e, i))
        run.update_status(flags=[{"kind": flag["kind"], "severity": "warning",
                                  "start_epoch": flag["start"](i), "end_epoch": None}])
        run.finish("completed")
        g.update_member(i, state="completed", run_id=run.id)
    at = AppTest.from_file("../curvewatch/dashboard/views/group.py", default_timeout=60)
    at.query_params["group"] = g.id
    at.run()
    assert not at.exception
    return g.id, at


def test_the_group_page_says_every_fold_overfits(monkeypatch):
    _, at = _two_fold_group_page(monkeypatch, "over", 30, lambda e, i: 0.5 + abs(e - 10 - i) / 20,
                                 {"kind": "overfitting", "start": lambda i: 10 + i})
    warning = " ".join(str(w.value) for w in at.warning)
    assert "Every fold (2 of 2) overfits" in warning and "epochs 10-11" in warning
    assert "best.pt" in " ".join(str(m.value) for m in at.markdown)


def test_the_group_pages_advice_names_a_resume_that_works_outside_the_checkout(monkeypatch):
    """The page cannot know how its reader calls the trainer: the advice names the module,
    which works in a checkout and an installed package alike."""
    gid, at = _two_fold_group_page(monkeypatch, "short", 5, lambda e, i: 1.0 / e + i / 10,
                                   {"kind": "still_improving", "start": lambda i: 5})
    advice = " ".join(str(m.value) for m in at.markdown)
    assert f"python -m curvewatch.trainer resume {gid} --epochs N" in advice


def test_the_sweep_ranking_shows_no_sd_for_a_setting_of_one_run(monkeypatch):
    import math

    from curvewatch.tracking.aggregate import aggregate
    root = dfx.empty_runs_dir()
    monkeypatch.setenv("CURVEWATCH_RUNS", str(root))
    settings = [{"lr": 0.01}, {"lr": 0.001}]
    g = dfx.tracking.GroupWriter.create(
        root, name="sw", method="sweep", validation="holdout", sweep={"settings": settings},
        members=[{"index": i, "name": f"sw-{i}", "setting": i, "params": p}
                 for i, p in enumerate(settings)])
    histories = {}
    for i in range(2):
        run = dfx.Run.create(root, name=f"sw-{i}", config=dfx.base_config(), epochs=3,
                             group=g.id, heartbeat_seconds=0)
        for e in (1, 2, 3):
            run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=1.0 / e + i)
        run.finish("completed")
        g.update_member(i, state="completed", run_id=run.id)
        histories[run.id] = dfx.tracking.read_history(run.path)
    g.finish("completed", aggregate=aggregate(g.record["members"], histories,
                                              include_states=("completed",),
                                              settings=settings))
    at = AppTest.from_file("../curvewatch/dashboard/views/group.py", default_timeout=60)
    at.query_params["group"] = g.id
    at.run()
    assert not at.exception
    ranking = next(d.value for d in at.dataframe if "val_loss_mean" in d.value.columns)
    assert list(ranking["val_loss_mean"]) == pytest.approx([1 / 3, 1 + 1 / 3])
    assert all(v is None or math.isnan(v) for v in ranking["val_loss_std"])
    assert "±" not in " ".join(str(m.value) for m in at.metric)
