"""What the importers (TensorBoard, CSV) share: the plan of one imported run, `--map`, the
runs imported before from the same log, and writing or bringing up to date a run folder."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .import_rows import KNOWN_COLUMNS, RESERVED, Assembly, Scalar, assemble, map_tags
from .reader import list_runs, read_steps
from .writer import Run


class ImportInputError(ValueError):
    """Bad input to an import: names the path or value and what is accepted."""


@dataclass(frozen=True)
class ImportPlan:
    """What importing one logged run writes: its name, which tag fills which column, the
    rows, the per-step records and the notes on points in no row; `imported_as` is the run
    imported before from the same log (with `imported_epochs` rows then)."""
    root: Path
    name: str
    source: str
    mapping: Mapping[str, str]
    assembly: Assembly
    hparams: Mapping[str, Any] = field(default_factory=dict)
    imported_as: str | None = None
    imported_epochs: int = 0

    @property
    def rows(self) -> tuple[dict[str, float | int], ...]:
        return self.assembly.rows

    @property
    def new_rows(self) -> tuple[dict[str, float | int], ...]:
        """The rows past those imported before (all of them for a new import)."""
        return tuple(r for r in self.rows if int(r["epoch"]) > self.imported_epochs)


def plan_run(root: Path, name: str, source: str, scalars: Mapping[str, Sequence[Scalar]],
             overrides: Mapping[str, str] | None, before: Mapping[str, tuple[str, int]],
             *, hparams: Mapping[str, Any] | None = None, epoch_base: int = 0) -> ImportPlan:
    """The plan of one run read from `root`; `before` is `imported_before`'s answer."""
    mapping = map_tags(scalars, overrides)
    run_id, epochs = before.get(str(root.resolve()), (None, 0))
    return ImportPlan(root, name, source, mapping, assemble(scalars, mapping, epoch_base),
                      dict(hparams or {}), run_id, epochs)


def imported_before(runs_dir: str | Path, source: str) -> dict[str, tuple[str, int]]:
    """Log path -> (run id, its last epoch) of the completed runs imported from `source`."""
    return {str(r.config.get("logdir")): (r.id, int(r.status.get("epoch") or 0))
            for r in list_runs(runs_dir)
            if r.config.get("source") == source and r.state == "completed"}


def check_overrides(overrides: Mapping[str, str], seen: Iterable[str]) -> None:
    """Refuse a `--map` naming a tag (or CSV column) that no run has."""
    seen = set(seen)
    unknown = sorted(set(overrides) - seen)
    if unknown:
        raise ImportInputError(f"--map names {', '.join(map(repr, unknown))}, which no run "
                               f"has; its tags are: {', '.join(sorted(seen))}")


def parse_map(pairs: Iterable[str]) -> dict[str, str]:
    """`--map TAG=COLUMN` pairs (an empty COLUMN leaves the tag out) as tag -> column."""
    out = {}
    for pair in pairs:
        tag, sep, col = pair.rpartition("=")
        col = col.strip()
        if not sep or not tag:
            raise ImportInputError(f"--map must be TAG=COLUMN (e.g. Loss/valid=val_loss, or "
                                   f"TAG= to leave it out), got {pair!r}")
        if col and (not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", col) or col in RESERVED):
            raise ImportInputError(
                f"--map column must be a name of letters, digits and _ other than "
                f"{', '.join(RESERVED)} (e.g. {', '.join(KNOWN_COLUMNS)}, epoch), got {col!r}")
        out[tag] = col
    return out


def run_config(plan: ImportPlan) -> dict[str, Any]:
    """run.json's config of an imported run: its hyperparameters (add_hparams, Lightning's
    hparams.yaml) and where it came from; a hyperparameter named like one of the latter is
    kept as hparam_NAME."""
    own = {"source": plan.source, "logdir": str(plan.root.resolve()),
           "tag_map": dict(plan.mapping)}
    hp = {f"hparam_{k}" if k in own else k: v for k, v in plan.hparams.items()}
    return {**hp, **own}


def write_run(runs_dir: str | Path, plan: ImportPlan, tags: Iterable[str] = (),
              chance_loss: float | None = None) -> str:
    """Write one planned import as a completed run; returns its id."""
    with Run.create(runs_dir, name=plan.name, config=run_config(plan), epochs=len(plan.rows),
                    tags=[plan.source, *tags], heartbeat_seconds=0,
                    chance_loss=chance_loss) as run:
        _append(run, plan.rows, plan.assembly.steps)
    return run.id


def update_run(runs_dir: str | Path, plan: ImportPlan) -> int:
    """Append to the run imported before the rows (and steps) the log has gained since;
    returns how many rows were added."""
    assert plan.imported_as is not None
    path = Path(runs_dir) / plan.imported_as
    old_steps = read_steps(path)
    last_step = int(old_steps["step"].max()) if len(old_steps) else -1
    rows = plan.new_rows
    with Run.reopen(path, epochs=len(plan.rows), resumed=False, heartbeat_seconds=0) as run:
        _append(run, rows, [s for s in plan.assembly.steps if int(s["step"]) > last_step])
    return len(rows)


def _append(run: Run, rows: Iterable[Mapping[str, float | int]],
            steps: Iterable[Mapping[str, float | int]]) -> None:
    for rec in steps:
        run.log_step(**rec)  # type: ignore[arg-type]
    for row in rows:
        run.log_epoch(**row)  # type: ignore[arg-type]
