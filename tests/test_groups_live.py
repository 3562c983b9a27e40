"""A group's live state comes from its member runs, not from the lagging group.json (issue 16
point 5: "Stop group says 0 running members while one was running")."""
from __future__ import annotations

from curvewatch import tracking
from curvewatch.tracking.groups import GroupWriter, read_group, running_members
from curvewatch.tracking.paths import STOP
from curvewatch.trainer.cli import main


def _group_with_a_member_the_record_has_not_caught_up_with(root):
    """A group whose record still says member 0 is pending with no run id, while its run
    (run.json group = the group) is training in this process; member 1 completed."""
    writer = GroupWriter.create(root, name="g", method="repeat", validation="holdout",
                                members=[{"index": 0, "name": "g-0"}, {"index": 1,
                                                                       "name": "g-1"}])
    done = tracking.Run.create(root, name="g-1", config={}, epochs=1, group=writer.id,
                               heartbeat_seconds=0)
    done.log_epoch(epoch=1, train_loss=1.0, val_loss=1.0)
    done.finish("completed")
    writer.update_member(1, state="completed", run_id=done.id)
    live = tracking.Run.create(root, name="g-0", config={}, epochs=5, group=writer.id,
                               heartbeat_seconds=0)
    return writer, live, done


def test_running_members_are_judged_from_the_runs_not_the_record(tmp_path):
    writer, live, done = _group_with_a_member_the_record_has_not_caught_up_with(tmp_path)
    group = read_group(writer.path)
    assert [m.run_id for m in group.members] == [None, done.id]  # the record lags
    assert running_members(group) == (live.id,)
    live.finish("stopped")
    assert running_members(read_group(writer.path)) == ()


def test_stop_group_asks_the_member_the_record_does_not_know_yet(tmp_path, capsys):
    writer, live, done = _group_with_a_member_the_record_has_not_caught_up_with(tmp_path)
    assert main(["stop", writer.id, "--runs-dir", str(tmp_path), "--wait", "0"]) == 0
    out = capsys.readouterr().out
    assert f"asked group {writer.id} and 1 running members to stop" in out
    assert (live.path / STOP).exists() and not (done.path / STOP).exists()
    live.finish("stopped")


def test_group_progress_lines_number_a_member_alike_when_it_starts_and_ends(tmp_path):
    """Members end in any order; each end line carries the number its start line had."""
    import re
    import subprocess
    import sys
    done = subprocess.run(
        [sys.executable, "-m", "curvewatch.trainer", "run", "--runs-dir", str(tmp_path), "--name",
         "two",
         "--dataset", "blobs", "--hidden", "4", "--epochs", "2", "--threads", "1",
         "--repeat", "2", "--parallel", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    started = dict(re.findall(r"^\[(\d+)/2\] started (.+)$", done.stdout, re.M))
    ended = re.findall(r"^\[(\d+)/2\] (.+?): completed.*\((\d) of 2 ended\)$", done.stdout,
                       re.M)
    assert len(started) == 2 and len(ended) == 2, done.stdout
    assert {name: n for n, name, _ in ended} == {name: n for n, name in started.items()}
    assert sorted(count for _, _, count in ended) == ["1", "2"]
