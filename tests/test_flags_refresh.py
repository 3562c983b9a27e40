"""The trainer's diagnosis flags in status.json are refreshed every FLAGS_SECONDS, and less
often once diagnosing the history costs more than FLAGS_SHARE of that time: a long run's
monitoring cost stays bounded as its history grows."""
from __future__ import annotations

import math
import time

from curvewatch.tracking import Run
from curvewatch.trainer import runner
from curvewatch.trainer.config import validate


def _history(n: int) -> list[dict]:
    return [{"epoch": e, "train_loss": math.exp(-e / 50) + 0.01,
             "val_loss": math.exp(-e / 60) + 0.05, "train_acc": 0.9, "val_acc": 0.85}
            for e in range(1, n + 1)]


def test_flags_wait_in_proportion_to_what_the_diagnosis_cost(tmp_path, monkeypatch):
    run = Run.create(tmp_path, name="flags", heartbeat_seconds=0)
    diagnosis = runner._Diagnosis(validate({"dataset": "digits", "epochs": 100}), math.log(10))
    assert not diagnosis.flags_due(False) and diagnosis.flags_due(True)  # not before 2 s

    began = time.monotonic()
    diagnosis.write_flags(run, _history(50))
    assert diagnosis.next >= began + runner.FLAGS_SECONDS
    assert isinstance(run.status["flags"], list)

    # a diagnosis allowed a millionth of the time: even 1 ms of it postpones the next by 1,000 s
    monkeypatch.setattr(runner, "FLAGS_SHARE", 1e-6)
    diagnosis.write_flags(run, _history(60))
    assert diagnosis.next - time.monotonic() > 100 * runner.FLAGS_SECONDS
    assert not diagnosis.flags_due(False) and diagnosis.flags_due(True)
    run.finish()
