"""The trainer looks for a STOP file after an epoch at most every STOP_LOOK_SECONDS: an epoch
that long or longer is always followed by a look (a stop ends the run after at most one more
epoch), and a run of faster epochs still ends soon after a stop, without a stat per epoch."""
from __future__ import annotations

from pathlib import Path

import pytest

from curvewatch.tracking import Run, read_run
from curvewatch.tracking.jsonl import read_from
from curvewatch.trainer import runner
from curvewatch.trainer.config import validate
from curvewatch.trainer.launch import SigtermStop


def test_epochs_at_least_the_interval_apart_are_each_followed_by_a_look(tmp_path):
    every = 0.25
    stops = runner._StopAsks(Run.create(tmp_path, name="looks", heartbeat_seconds=0),
                             SigtermStop(), every)
    assert stops.look_due(100.0)  # the first epoch always looks
    assert [stops.look_due(100.0 + every * k) for k in (1, 2, 3)] == [True] * 3
    # faster epochs: the next look is the first epoch to end `every` after the last look
    assert [stops.look_due(t) for t in (100.8, 100.9, 101.0, 101.01)] == \
        [False, False, True, False]
    stops.run.finish()


def test_sigterm_is_seen_after_every_epoch_and_the_file_only_when_looked_for(tmp_path):
    run = Run.create(tmp_path, name="asks", heartbeat_seconds=0)
    stops = runner._StopAsks(run, SigtermStop(), 0.25)
    (run.path / "STOP").touch()
    assert stops.check(look=False) == ("completed", {})
    assert stops.check(look=True) == ("stopped", {"stop_reason": "stop requested (STOP file)"})
    stops.flag.reason = "stopped by SIGTERM"
    assert stops.check(look=False) == ("stopped", {"stop_reason": "stopped by SIGTERM"})
    run.finish()


def _train_until_stopped(runs_dir: Path, epochs: int, stop_at: int) -> tuple[str, list[int]]:
    """A digits MLP whose own callback writes STOP after epoch `stop_at`; (final state,
    epochs written)."""
    trainer = runner.prepare(validate({"dataset": "digits", "hidden": "16", "threads": 1,
                                       "epochs": epochs}))
    run = Run.create(runs_dir, name="stop-look", heartbeat_seconds=0)

    def on_epoch(record: dict) -> None:
        if record["epoch"] == stop_at:
            (run.path / "STOP").touch()

    state = runner.run_epochs(trainer, run, quiet=True, on_epoch=on_epoch)
    assert read_run(run.path).state == state
    return state, [r["epoch"] for r in read_from(run.path / "metrics.jsonl").records]


def test_a_stop_after_an_epoch_as_long_as_the_interval_ends_the_run_one_epoch_later(
        tmp_path, monkeypatch):
    # every epoch at least as long as an interval of 0: each is followed by a look
    monkeypatch.setattr(runner, "STOP_LOOK_SECONDS", 0.0)
    state, written = _train_until_stopped(tmp_path, 50, stop_at=2)
    assert state == "stopped" and written == [1, 2, 3]


@pytest.mark.parametrize("stop_at", [1, 4])
def test_fast_epochs_still_end_soon_after_a_stop(tmp_path, stop_at):
    # 3,000 epochs of a few ms each outlast the interval (0.25 s) many times over: the run
    # ends at the first look after the STOP, long before its last epoch
    state, written = _train_until_stopped(tmp_path, 3000, stop_at)
    assert state == "stopped" and stop_at < written[-1] < 3000
    assert written == list(range(1, written[-1] + 1))
