"""Pure table builders for the pages: RunInfo lists and histories in, DataFrames out."""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from curvewatch.tracking.aggregate import NO_VERDICT
from curvewatch.tracking.groups import group_headline, group_progress

STATE_ICONS = {"running": "● running", "completed": "✓ completed",
               "early_stopped": "■ early stopped", "stopped": "■ stopped",
               "failed": "✗ failed", "crashed": "✗ crashed", "unreadable": "? unreadable",
               "pending": "○ pending", "not_started": "○ not started"}
#: Markdown badge colours per state and per finding severity (Streamlit's :color-badge[]).
STATE_COLORS = {"running": "blue", "completed": "green", "early_stopped": "orange",
                "stopped": "gray", "failed": "red", "crashed": "red", "unreadable": "gray"}
SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}
#: A flag's icon by severity: characters DejaVu Sans has, so every browser here shows them.
FLAG_ICONS = {"critical": "✖", "warning": "⚠", "info": "ℹ"}
FLAGS_HELP = "current findings of the diagnosis: ✖ critical, ⚠ warning, ℹ info"
#: The help of the "Every" selector beside Live (Run and Group pages).
REFRESH_HELP = ("how often the page rereads the files the training writes and redraws, while "
                "Live is on; a longer interval spares this machine's CPU. It stops by itself "
                "when the training ends")
#: Text colour of a flags cell, by its worst severity (readable on light and dark themes).
SEVERITY_TEXT = {"critical": "#e5484d", "warning": "#e08a00", "info": "#3b82f6"}
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
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
    """'⚠ overfitting · ℹ still improving' from (kind, severity) pairs, the icon saying the
    severity (FLAG_ICONS)."""
    return " · ".join(f"{FLAG_ICONS.get(sev, '·')} {kind.replace('_', ' ')}"
                      for kind, sev in flags)


def worst_severity(flags: Iterable[tuple[str, str]]) -> str | None:
    """The most severe of (kind, severity) pairs, None without flags."""
    sevs = [sev for _, sev in flags]
    return max(sevs, key=lambda s: SEVERITY_RANK.get(s, -1)) if sevs else None


def percent(done: int | None, planned: int | None) -> int | None:
    """Progress in whole percent (0-100), None when the plan is unknown."""
    if not planned or done is None:
        return None
    return int(min(100, max(0, 100 * done // planned)))


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
    `best_acc` run id to the best validation accuracy (or R²) of its history; `progress` is
    in whole percent, `severity` the worst flag's (for the flags cell's colour)."""
    flags = flags or {}
    best_acc = best_acc or {}
    rows = []
    for r in runs:
        st_ = r.status or {}
        latest = st_.get("latest") if isinstance(st_.get("latest"), dict) else {}
        epochs = r.epochs
        cfg = r.config or {}
        run_flags = flags.get(r.id, ())
        row = {
            "id": r.id,
            "name": r.name or r.id,
            "state": state_label(r.state),
            "progress": percent(r.epoch, epochs),
            "epoch": f"{r.epoch}/{epochs}" if epochs else str(r.epoch or ""),
            "eta": fmt_duration(eta_seconds(st_, now)) if r.state == "running" else "",
            "dataset": (r.data or {}).get("dataset") or cfg.get("dataset"),
            "model": (r.model or {}).get("name") or cfg.get("model"),
            "best val loss": r.best_val_loss,
            "best epoch": r.best_epoch,
            "best val acc": best_acc.get(r.id, _num(latest.get("val_acc",
                                                                 latest.get("val_r2")))),
            "flags": flag_badges(run_flags),
            "severity": worst_severity(run_flags),
            "tags": ", ".join(r.tags),
            "group": r.group or "",
            "created": _datetime(r.created_at),
            "problem": r.problem or "",
        }
        for k in KEY_PARAMS:
            row[k] = _fmt_value(cfg.get(k))
        rows.append(row)
    cols = ["id", "name", "state", "progress", "epoch", "eta", "flags", "severity",
            "best val loss", "best epoch", "best val acc", "dataset", "model", *KEY_PARAMS,
            "tags", "group", "created", "problem"]
    return pd.DataFrame(rows, columns=cols)


def styled_runs(frame: pd.DataFrame) -> Any:
    """The runs frame as a pandas Styler whose flags cells take their worst severity's
    colour (SEVERITY_TEXT); missing values read as MISSING."""
    colors = [f"color: {SEVERITY_TEXT[sev]}; font-weight: 600" if sev in SEVERITY_TEXT else ""
              for sev in frame["severity"]]
    params = [k for k in KEY_PARAMS if k in frame.columns]
    return (frame.style.format(na_rep=MISSING)
            .format(_short, subset=params, na_rep=MISSING)  # 0.01, not Styler's 0.010000
            .apply(lambda _: colors, subset=["flags"], axis=0))


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


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
    """Runs matching every filter: state in `states` (if any), all of `tags`, and every
    word of `text` (case-insensitive): `key=value` when the run's config has that key with
    that value (`lr=0.01` also matches 1e-2), any other word inside its id, name, group,
    tags, notes or a config `key=value`."""
    states, tags = set(states), set(tags)
    terms = (text or "").lower().split()
    out = []
    for r in runs:
        if states and r.state not in states:
            continue
        if tags and not tags.issubset(set(r.tags)):
            continue
        if terms and not all(_matches(t, r) for t in terms):
            continue
        out.append(r)
    return out


def _matches(term: str, run: Any) -> bool:
    cfg = {str(k).lower(): str(v).lower() for k, v in flatten_config(run.config).items()}
    key, eq, want = term.partition("=")
    if eq and key in cfg:
        return _same_value(cfg[key], want)
    hay = " ".join([run.id, run.name, run.group or "", " ".join(run.tags),
                    getattr(run, "notes", ""), *(f"{k}={v}" for k, v in cfg.items())])
    return term in hay.lower()


def _same_value(have: str, want: str) -> bool:
    """A config value (as text) equals a searched one: the same text, or the same number."""
    if have == want:
        return True
    try:
        a, b = float(have), float(want)
    except ValueError:
        return False
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


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


#: A configuration option left unset (None, or an empty list): the Config tab's word for it.
NOT_SET = "not set"


def config_rows(cfg: Mapping[str, Any]) -> dict[str, list[str]]:
    """The Config tab's table: {"option": names, "value": texts}, an unset option as
    NOT_SET (never Python's "None")."""
    flat = flatten_config(cfg)
    return {"option": list(flat),
            "value": [NOT_SET if v is None or v == "" else str(v) for v in flat.values()]}


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
    epochs planned, from the members' status.json), and the verdict (tracking's
    group_headline: a sweep's ranking of settings, else mean ± sd over the members) from the
    recorded aggregate, or while it runs from the members' best val loss so far (status.json
    `best_val_loss`, the number the aggregate uses)."""
    progress = group_progress([_member_progress(m, runs_by_id) for m in group.members])
    so_far = {rid: r.best_val_loss for rid in group.run_ids
              if (r := runs_by_id.get(rid)) is not None and r.state in SCORED_STATES
              and r.best_val_loss is not None and math.isfinite(r.best_val_loss)}
    verdict = group_headline(group, so_far)
    counts = " · ".join(f"{k} {state_label(s)}" for s, k in group.counts.items())
    return {"id": group.id, "name": group.name or group.id, "method": group.method,
            "validation": group.validation, "state": state_label(group.state),
            "members": counts or "no members", "progress": progress.fraction,
            "finished": progress.text,
            "score": "" if verdict == NO_VERDICT else verdict, "n": len(so_far)}


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
            "progress": percent(r.epoch, r.epochs) if r is not None else None,
            "best val loss": r.best_val_loss if r is not None else None,
            "best epoch": r.best_epoch if r is not None else None,
            "params": ", ".join(f"{k}={v}" for k, v in (m.params or {}).items()),
            "error": m.error or "",
            "run id": m.run_id or "",
        })
    return pd.DataFrame(rows, columns=["open", "member", "state", "progress", "best val loss",
                                       "best epoch", "params", "error", "run id"])
