"""`trainer import PATH`: which importer reads a path. A directory is read for TensorBoard
event files, or, when it has none, for Lightning CSVLogger's `metrics.csv` files; a file is
read as a CSV log."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .csv_import import plan_csv
from .import_runs import ImportInputError, ImportPlan
from .tensorboard_import import EVENTS_GLOB, plan_import as plan_tensorboard

LIGHTNING_CSV = "metrics.csv"


def plan_import(path: str | Path, runs_dir: str | Path,
                overrides: Mapping[str, str] | None = None) -> list[ImportPlan]:
    """The runs importing `path` would write, writing nothing; ImportInputError for a path
    that holds no log of a kind accepted, naming what it found."""
    path = Path(path)
    if path.is_file():
        return plan_csv([path], runs_dir, overrides)
    if not path.is_dir():
        raise ImportInputError(f"{path} is not a directory or a file: give TensorBoard's "
                               "--logdir, one run's folder, or a CSV log")
    if any(p.is_file() for p in path.rglob(EVENTS_GLOB)):
        return plan_tensorboard(path, runs_dir, overrides)
    csvs = sorted(p for p in path.rglob(LIGHTNING_CSV) if p.is_file())
    if csvs:
        return plan_csv(csvs, runs_dir, overrides)
    raise ImportInputError(f"no TensorBoard event files ({EVENTS_GLOB}) and no Lightning "
                           f"CSV logs ({LIGHTNING_CSV}) under {path}; give a CSV log by its "
                           "file name")
