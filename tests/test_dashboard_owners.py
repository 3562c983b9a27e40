"""One owner per idea (issue 16 points 6 and 8): config -> CLI flags is trainer.config.to_args
for the trainer's group launcher and the dashboard alike; a run's thresholds are
trainer.config.run_thresholds; a diagnosis that fails is an error naming the run, never a
healthy verdict."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from curvewatch import diagnosis, tracking
from curvewatch.dashboard import actions, data, launch_form
from curvewatch.trainer.cli import build_parser, config_from_args
from curvewatch.trainer.config import (
    ConfigError,
    build_thresholds,
    run_thresholds,
    to_args,
    validate,
)


def _form(**changes):
    return {**launch_form.defaults(), **changes}


def test_the_launch_form_spells_its_flags_with_to_args():
    cfg, err = launch_form.validate(_form(hidden="32", early_stop=["plateau"],
                                          thresholds="patience=4", lr="0.01"))
    assert err is None
    assert to_args(cfg) == ["--hidden", "32", "--lr", "0.01", "--early-stop", "plateau",
                            "--threshold", "patience=4"]
    assert config_from_args(build_parser().parse_args(["run", *to_args(cfg)])) == cfg


def test_the_form_defaults_need_no_flags():
    cfg, err = launch_form.validate(launch_form.defaults())
    assert err is None and to_args(cfg) == []


def test_launch_run_passes_the_validated_config_as_to_args_flags(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(actions, "_cli", lambda args, **k: seen.append(list(args)))
    raw = launch_form.to_raw(_form(hidden="32", epochs="3", dataset="wine"))
    actions.launch_run(tmp_path, "x", raw)
    (args,) = seen
    assert args[args.index("--name") + 1] == "x"
    assert args[args.index("--name") + 2:] == to_args(validate(raw))


def test_launch_run_rejects_what_the_cli_would_with_its_message(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(actions, "_cli", lambda args, **k: seen.append(args))
    res = actions.launch_run(tmp_path, "x", {"lr": "-1"})
    assert not res.ok and res.returncode == 2 and seen == []
    assert res.message == (f"{actions.SHELL_TRAINER} run: error: lr must be > 0 and <= 10, "
                           "got -1.0")


def test_run_thresholds_is_the_trainers_judgement():
    th = run_thresholds({"patience": 4, "thresholds": {"window": "3"}})
    assert th.patience == 4 and th.window == 3
    assert run_thresholds({}) == diagnosis.Thresholds()
    # a user loop's config is anything: a patience that is no positive int means the default
    assert run_thresholds({"patience": True}) == run_thresholds({"patience": 0}) \
        == diagnosis.Thresholds()
    cfg = validate({"patience": "4", "thresholds": ["window=3"]})
    assert run_thresholds(cfg.to_dict()) == build_thresholds(cfg)


def test_invalid_threshold_overrides_are_an_error_naming_the_value(tmp_path):
    with pytest.raises(ConfigError, match="no_such_threshold"):
        run_thresholds({"thresholds": {"no_such_threshold": 1}})
    with pytest.raises(data.DiagnosisFailed, match=r"run myrun .*no_such_threshold"):
        data.thresholds_for({"thresholds": {"no_such_threshold": 1}}, tmp_path / "myrun")


def test_a_failing_diagnosis_raises_naming_the_run(tmp_path):
    # thresholds diagnose() cannot use (a bug upstream): the error, not "no problems"
    history = pd.DataFrame({"epoch": [1, 2], "val_loss": [1.0, 0.5], "train_loss": [1.0, 0.4]})
    with pytest.raises(data.DiagnosisFailed, match=r"diagnosis of run r1 failed: \w+Error"):
        data.findings_for(history, None, "not thresholds", tmp_path / "r1")
    assert data.findings_for(pd.DataFrame(), None, None, tmp_path / "r1") == []


def test_an_own_loop_run_whose_diagnosis_fails_is_flagged_not_clean(tmp_path):
    run = tracking.Run.create(tmp_path, name="own", config={"thresholds": {"nope": 1}},
                              epochs=3, heartbeat_seconds=0)
    for e in (1, 2):
        run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=math.nan)
    run.finish("completed")
    info = tracking.read_run(run.path)
    assert data.run_summary(info)["flags"] == (("diagnosis_failed", "critical"),)


def test_the_run_page_shows_a_diagnosis_error_naming_the_run(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    run = tracking.Run.create(tmp_path, name="own", config={"thresholds": {"nope": 1}},
                              epochs=3, heartbeat_seconds=0)
    for e in (1, 2, 3):
        run.log_epoch(epoch=e, train_loss=1.0 / e, val_loss=1.2 / e)
    run.finish("completed")
    monkeypatch.setenv("CURVEWATCH_RUNS", str(tmp_path))
    at = AppTest.from_file("../curvewatch/dashboard/views/run.py", default_timeout=60)
    at.query_params["run"] = run.id
    at.run()
    assert not at.exception
    errors = " ".join(str(e.value) for e in at.error)
    assert f"run {run.id} cannot be diagnosed" in errors and "nope" in errors
    assert "No problems found" not in " ".join(str(s.value) for s in at.success)
