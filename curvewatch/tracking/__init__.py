"""The run-folder format: the writer (trainer and users' loops) and the reader (dashboard, CLI).

This package is the only code that knows file names and encodings; see docs/run-format.md.
"""
from .checkpoints import BEST, LAST, load_checkpoint, save_checkpoint
from .grads import GradNorms, gradient_norms
from .groups import (
    GROUP_STATES,
    GroupAggregate,
    GroupInfo,
    GroupMember,
    GroupProgress,
    GroupWriter,
    aggregate_group,
    group_progress,
    list_groups,
    read_group,
    read_member_log,
    request_stop,
)
from .paths import (
    FORMAT_VERSION,
    GroupNotFound,
    RunNotFound,
    default_runs_dir,
    group_path,
    is_group_dir,
    run_path,
)
from .reader import (
    HistoryReader,
    JsonlFrame,
    LayersReader,
    RunInfo,
    StepsReader,
    derive_state,
    list_runs,
    read_history,
    read_layers,
    read_log_tail,
    read_run,
    read_steps,
)
from .writer import FINAL_STATES, STATES, Run

__all__ = [
    "BEST", "LAST", "FINAL_STATES", "FORMAT_VERSION", "STATES", "GradNorms", "HistoryReader",
    "JsonlFrame", "LayersReader", "StepsReader",
    "Run", "RunInfo", "RunNotFound", "default_runs_dir", "derive_state",
    "gradient_norms", "list_runs", "load_checkpoint", "read_history", "read_layers",
    "read_log_tail", "read_run", "read_steps", "run_path", "save_checkpoint",
    # run groups (folds, resamples, seeds, sweeps)
    "GROUP_STATES", "GroupAggregate", "GroupInfo", "GroupMember", "GroupNotFound",
    "GroupProgress", "GroupWriter", "aggregate_group", "group_path", "group_progress",
    "is_group_dir", "list_groups",
    "read_group", "read_member_log", "request_stop",
]
