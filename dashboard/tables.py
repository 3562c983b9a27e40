"""Pure table builders for the pages: RunInfo lists and histories in, DataFrames out."""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from tracking.groups import group_progress

STATE_ICONS = {"running": "● running", "completed": "✓ completed",
               "early_stopped": "■ early stopped", "stopped": "■ stopped",
               "failed": "✗ failed", "crashed": "✗ crashed", "unreadable": "? unreadable",
               "pending": "○ pending", "not_started": "○ not started"}
#: Markdown badge colours per state and per finding severity (Streamlit's :color-badge[]).
STATE_COLORS = {"running": "blue", "completed": "green", "early_stopped": "orange",
                "stopped": "gray", "failed": "red", "crashed": "red", "unreadable": "gray"}
SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}
FLAG_ICONS = {"critical": "‼", "warning": "!", "info": ""}
#: Config keys shown in the runs table (the rest is on the Run page).
KEY_PARAMS = ("hidden", "optimizer", "lr", "batch_size", "weight_decay", "dropout")
#: What a table cell shows for a missing value (Streamlit's default is the word "None").
MISSING = "—"
#: Config keys that never count as a difference between runs.
IGNORED_DIFF = ("thresholds",)


#: what can start markup mid-line in Streamlit's markdown (CommonMark + GFM + its directives:
#: `:red[...]`, `:material/x:`, `$math$`; a colon only before a letter or '/', as in those and
#: in `http://`, so `kfold:3` stays as it is); '-' and '.' only matter at a line's start, and
#: run ids (letters, digits, '.', '_', '-') stay readable
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~$&@]|:(?=[A-Za-z/]))")
# GFM turns bare "http://x", "www.x" and "a@b.c" into links after markdown is parsed (a
# find-and-replace on the text, so a backslash escape does not stop it): an invisible word
# joiner (U+2060) between the scheme or "www" and what follows, and before "@", does.
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto|www)(?=[:.])|(?=@)")


def md(text: Any) -> str:
    """`text` (a run or group name, a tag, a reason, a value from a URL) escaped for
    Streamlit's markdown, so it shows as plain text: no image fetched, no link, no code span,
    colour or icon directive, no emphasis (each such character gets its backslash; line
    breaks become spaces, so nothing can start a list or a heading), no bare URL or address
    turned into a link (an invisible word joiner breaks it)."""
    flat = " ".join(str(text).split("\n")).replace("\r", " ")
    return _MD_SPECIAL.sub(r"\\\1", _AUTOLINK.sub("\\1\u2060", flat))


def state_label(state: str) -> str:
    return STATE_ICONS.get(state, str(state).replace("_", " "))


def flag_badges(flags: Iterable[tuple[str, str]]) -> str:
    """'overfitting! · still improving' from (kind, severity) pairs: '‼' marks a critical
    finding and '!' a warning (plain characters, so every font shows them)."""
    return " · ".join(f"{kind.replace('_', ' ')}{FLAG_ICONS.get(sev, '')}"
                      for kind, sev in flags)


def state_badge(state: str) -> str:
    """Markdown badge for a state, e.g. ':orange-badge[early stopped]'."""
    return f":{STATE_COLORS.get(state, 'gray')}-badge[{state.replace('_', ' ')}]"


def _fmt_value(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return v


def eta_seconds(status: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds left for a running run, from the mean epoch time so far."""
    epoch, epochs = status.get("epoch"), status.get("epochs")
    started = status.get("started_at")
    updated = status.get("updated_at")
    if not all(isinstance(v, (int, float)) for v in (epoch, epochs, started)) or epoch <= 0:
        return None
    latest = status.get("latest") or {}
    t_last = latest.get("time") if isinstance(latest.get("time"), (int, float)) else updated
    if not isinstance(t_last, (int, float)) or t_last <= started:
        return None
    per_epoch = (t_last - started) / epoch
    return max(0.0, (epochs - epoch) * per_epoch)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def runs_frame(runs: Sequence[Any], flags: Mapping[str, Sequence[tuple[str, str]]] | None = None,
               now: float | None = None,
               best_acc: Mapping[str, float | None] | None = None) -> pd.DataFrame:
    """One row per run for the Runs table. `flags` maps run id to (kind, severity) pairs,
    `best_acc` run id to the best validation accuracy (or R²) of its history."""
    flags = flags or {}
    best_acc = best_acc or {}
    rows = []
    for r in runs:
        st_ = r.status or {}
        latest = st_.get("latest") if isinstance(st_.get("latest"), dict) else {}
        epochs = r.epochs
        progress = (r.epoch / epochs) if epochs else None
        cfg = r.config or {}
        row = {
            "id": r.id,
            "name": r.name or r.id,
            "state": state_label(r.state),
            "progress": None if progress is None else min(1.0, max(0.0, progress)),
            "epoch": f"{r.epoch}/{epochs}" if epochs else str(r.epoch or ""),
            "eta": fmt_duration(eta_seconds(st_, now)) if r.state == "running" else "",
            "dataset": (r.data or {}).get("dataset") or cfg.get("dataset"),
            "model": (r.model or {}).get("name") or cfg.get("model"),
            "best val loss": r.best_val_loss,
            "best epoch": r.best_epoch,
            "best val acc": best_acc.get(r.id, _num(latest.get("val_acc",
                                                                 latest.get("val_r2")))),
            "flags": flag_badges(flags.get(r.id, ())),
            "tags": ", ".join(r.tags),
            "group": r.group or "",
            "created": _datetime(r.created_at),
            "problem": r.problem or "",
        }
        for k in KEY_PARAMS:
            row[k] = _fmt_value(cfg.get(k))
        rows.append(row)
    cols = ["id", "name", "state", "progress", "epoch", "eta", "flags", "best val loss",
            "best epoch", "best val acc", "dataset", "model", *KEY_PARAMS, "tags", "group",
            "created", "problem"]
    return pd.DataFrame(rows, columns=cols)


def _datetime(seconds: Any) -> Any:
    """Unix seconds as a Timestamp; NaT for what is not a time a table can show (None, NaN,
    1e300, a string: pandas' Timestamp ends in 2262)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds:
        return pd.NaT
    try:
        return pd.to_datetime(seconds, unit="s")
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        return pd.NaT


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def filter_runs(runs: Sequence[Any], *, states: Iterable[str] = (), text: str = "",
                tags: Iterable[str] = ()) -> list[Any]:
    """Runs matching every filter: state in `states` (if any), `text` in the id, name, group,
    dataset or model (case-insensitive), and all of `tags`."""
    states, tags = set(states), set(tags)
    q = (text or "").strip().lower()
    out = []
    for r in runs:
        if states and r.state not in states:
            continue
        if tags and not tags.issubset(set(r.tags)):
            continue
        if q:
            hay = " ".join(str(x) for x in (r.id, r.name, r.group or "",
                                            (r.config or {}).get("dataset", ""),
                                            (r.config or {}).get("model", ""),
                                            " ".join(r.tags))).lower()
            if q not in hay:
                continue
        out.append(r)
    return out


SORTS = {
    "newest first": (lambda r: r.created_at or 0, True),
    "oldest first": (lambda r: r.created_at or 0, False),
    "best val loss": (lambda r: r.best_val_loss if r.best_val_loss is not None
                      and math.isfinite(r.best_val_loss) else math.inf, False),
    "name": (lambda r: r.name.lower(), False),
    "state": (lambda r: r.state, False),
}


def sort_runs(runs: Sequence[Any], how: str = "newest first") -> list[Any]:
    key, reverse = SORTS.get(how, SORTS["newest first"])
    return sorted(runs, key=key, reverse=reverse)


def flatten_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _fmt_value(v) for k, v in (cfg or {}).items()}


def hparam_diff(runs: Sequence[Any], labels: Mapping[str, str] | None = None,
                ignore: Iterable[str] = IGNORED_DIFF) -> pd.DataFrame:
    """The hyperparameters that differ between runs: one row per run, one column per key
    whose value is not the same in every run (keys missing in a run count as differing)."""
    labels = labels or {}
    flat = {r.id: flatten_config(r.config) for r in runs}
    keys = sorted({k for d in flat.values() for k in d} - set(ignore))
    differing = [k for k in keys
                 if len({_show(d.get(k)) for d in flat.values()}) > 1]
    rows = [{"run": labels.get(rid, rid), **{k: _show(d.get(k)) for k in differing}}
            for rid, d in flat.items()]
    return pd.DataFrame(rows, columns=["run", *differing])


def _show(v: Any) -> str:
    return "—" if v is None or v == "" else str(v)


def summary_row(history: pd.DataFrame, flags: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Best val loss and its epoch, final train/val gap, epochs used, flags."""
    out: dict[str, Any] = {"best val loss": None, "best epoch": None, "final train loss": None,
                           "final val loss": None, "final gap (val-train)": None,
                           "best val acc": None, "epochs": int(len(history)),
                           "flags": flag_badges(flags)}
    if "val_loss" in history.columns and len(history):
        v = pd.to_numeric(history["val_loss"], errors="coerce")
        v = v.where(np.isfinite(v))
        if v.notna().any():
            i = v.idxmin()
            out["best val loss"] = float(v[i])
            out["best epoch"] = int(history.loc[i, "epoch"])
        out["final val loss"] = _num(history["val_loss"].iloc[-1])
    if "train_loss" in history.columns and len(history):
        out["final train loss"] = _num(history["train_loss"].iloc[-1])
    if out["final val loss"] is not None and out["final train loss"] is not None:
        out["final gap (val-train)"] = out["final val loss"] - out["final train loss"]
    if "val_acc" in history.columns and len(history):
        a = pd.to_numeric(history["val_acc"], errors="coerce")
        out["best val acc"] = float(a.max()) if a.notna().any() else None
    return out


def history_csv(history: pd.DataFrame) -> bytes:
    """The history as CSV bytes (NaN written as 'NaN', infinities as 'inf'/'-inf')."""
    return history.to_csv(index=False, na_rep="NaN").encode("utf-8")


SCORED_STATES = ("completed", "early_stopped", "stopped", "running")


def group_row(group: Any, runs_by_id: Mapping[str, Any]) -> dict[str, Any]:
    """One group as one Runs-list row: method, members' states, progress (epochs done over
    epochs planned, from the members' status.json), and the score: the group's recorded
    aggregate when it has one, else mean ± population sd of the members' best val loss so
    far (status.json `best_val_loss`, the number the aggregate uses)."""
    progress = group_progress([_member_progress(m, runs_by_id) for m in group.members])
    agg = group.aggregate
    sc = (agg.scores.get("val_loss") if agg is not None and agg.scores else None) or {}
    mean, sd, n = sc.get("mean"), sc.get("std"), sc.get("n") or 0
    if mean is None:
        vals = [r.best_val_loss for r in (runs_by_id.get(rid) for rid in group.run_ids)
                if r is not None and r.state in SCORED_STATES and r.best_val_loss is not None
                and math.isfinite(r.best_val_loss)]
        if vals:
            mean, sd, n = float(np.mean(vals)), float(np.std(vals)), len(vals)
    counts = " · ".join(f"{k} {state_label(s)}" for s, k in group.counts.items())
    return {"id": group.id, "name": group.name or group.id, "method": group.method,
            "validation": group.validation, "state": state_label(group.state),
            "members": counts or "no members", "progress": progress.fraction,
            "finished": progress.text,
            "score": "" if mean is None else f"{mean:.4f} ± {0.0 if sd is None else sd:.4f}",
            "n": n}


def _member_progress(m: Any, runs_by_id: Mapping[str, Any]
                     ) -> tuple[str, int | None, int | None]:
    """(state, epochs done, epochs planned) of a member from its run's status.json."""
    r = runs_by_id.get(m.run_id) if m.run_id else None
    return (m.state, None, None) if r is None else (r.state, r.epoch, r.epochs)


def group_members_frame(group: Any, runs_by_id: Mapping[str, Any]) -> pd.DataFrame:
    """The members of a group for the Runs list's expanded row (status.json only)."""
    rows = []
    for m in group.members:
        r = runs_by_id.get(m.run_id) if m.run_id else None
        rows.append({
            "open": f"/run?run={m.run_id}" if r is not None else None,
            "member": m.name,
            "state": state_label(r.state if r is not None else m.state),
            "progress": (min(1.0, r.epoch / r.epochs) if r is not None and r.epochs
                         else None),
            "best val loss": r.best_val_loss if r is not None else None,
            "best epoch": r.best_epoch if r is not None else None,
            "params": ", ".join(f"{k}={v}" for k, v in (m.params or {}).items()),
            "error": m.error or "",
            "run id": m.run_id or "",
        })
    return pd.DataFrame(rows, columns=["open", "member", "state", "progress", "best val loss",
                                       "best epoch", "params", "error", "run id"])
