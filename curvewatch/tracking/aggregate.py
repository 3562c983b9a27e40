"""Aggregates of a group of runs (folds, resamples, seeds, sweep settings): pure pandas, no
files. The trainer writes them into group.json when a group ends; the dashboard computes the
same numbers live with `tracking.aggregate_group` while a group runs, so both always agree.

Standard deviations are population standard deviations (ddof=0), as numpy and scikit-learn's
cross-validation examples report them; one member gives a std of 0. NaN values are skipped.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

#: Per-member score columns: the lowest finite val_loss, and the accuracy (or R²) of that
#: same epoch — the weights best.pt holds — not the best accuracy of any epoch.
SCORE_METRICS = ("val_loss", "val_acc", "val_r2")
#: Columns of a history that are not averaged across members.
NOT_AVERAGED = ("epoch", "time")


def curve_stats(histories: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-epoch mean and std of every numeric metric over the members' histories.

    Returns one row per epoch: `epoch`, `n` (members that reached the epoch), and for each
    metric M the columns `M_mean` and `M_std`. Members that stopped early simply stop
    contributing, so `n` can fall in the later epochs."""
    frames = [h.assign(_member=key) for key, h in histories.items()
              if h is not None and len(h) and "epoch" in h.columns]
    if not frames:
        return pd.DataFrame({"epoch": pd.Series(dtype="int64"), "n": pd.Series(dtype="int64")})
    rows = pd.concat(frames, ignore_index=True)
    metrics = [c for c in rows.columns if c not in NOT_AVERAGED and c != "_member"
               and pd.api.types.is_numeric_dtype(rows[c])
               and not pd.api.types.is_bool_dtype(rows[c])]
    by_epoch = rows.groupby("epoch", sort=True)
    out = pd.DataFrame({"n": by_epoch["_member"].nunique()})
    if metrics:
        mean = by_epoch[metrics].mean().add_suffix("_mean")
        std = by_epoch[metrics].std(ddof=0).add_suffix("_std")
        stats = pd.concat([mean, std], axis=1)
        out = out.join(stats[[f"{m}_{s}" for m in metrics for s in ("mean", "std")]])
    return out.reset_index()


def member_score(history: pd.DataFrame) -> dict[str, Any]:
    """The best epoch of one member (lowest finite val_loss) and its scores there:
    {best_epoch, epochs, val_loss, val_acc or val_r2}; None values when there is no finite
    val_loss yet."""
    out: dict[str, Any] = {"best_epoch": None, "epochs": int(len(history))}
    for m in SCORE_METRICS:
        if m in history.columns:
            out[m] = None
    if "val_loss" not in history.columns or not len(history):
        return out
    vl = pd.to_numeric(history["val_loss"], errors="coerce")
    finite = vl[vl.map(lambda v: math.isfinite(v) if isinstance(v, float) else False)]
    if finite.empty:
        return out
    best = history.loc[[finite.idxmin()]].iloc[0]  # a list: one row even if labels repeat
    out["best_epoch"] = int(best["epoch"])
    for m in SCORE_METRICS:
        if m in history.columns:
            v = best[m]
            out[m] = float(v) if isinstance(v, (int, float)) and not pd.isna(v) else None
    return out


def score_summary(values: Sequence[float | None]) -> dict[str, Any]:
    """{mean, std, n, values} of the members' scores (None entries left out)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": []}
    s = pd.Series(vals)
    return {"mean": float(s.mean()), "std": float(s.std(ddof=0)), "n": len(vals),
            "values": vals}


def rank_settings(per_member: pd.DataFrame, settings: Sequence[Mapping[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Sweep settings ranked by their members' mean best val_loss (lowest first; settings
    without a finished member last). `per_member` has `setting`, `included` and the score
    columns; `settings[i]` is the parameter dict of setting i."""
    ranking = []
    for i, params in enumerate(settings):
        rows = per_member[(per_member["setting"] == i)] if len(per_member) else per_member
        used = rows[rows["included"]] if len(rows) else rows
        entry: dict[str, Any] = {"setting": i, "params": dict(params),
                                 "members": [r for r in rows.get("run_id", pd.Series()).tolist()
                                             if r],
                                 "failed": int((~rows["included"]).sum()) if len(rows) else 0}
        for m in SCORE_METRICS:
            if m in per_member.columns:
                entry[m] = score_summary(used[m].tolist() if len(used) else [])
        ranking.append(entry)
    def order(e: dict[str, Any]) -> tuple[bool, float, int]:
        mean = (e.get("val_loss") or {}).get("mean")
        return mean is None, mean if mean is not None else 0.0, e["setting"]
    ranking.sort(key=order)
    for r, entry in enumerate(ranking, 1):
        entry["rank"] = r
    return ranking


def aggregate(members: Sequence[Mapping[str, Any]], histories: Mapping[str, pd.DataFrame], *,
              include_states: Sequence[str], settings: Sequence[Mapping[str, Any]] = ()
              ) -> dict[str, Any]:
    """The aggregate of a group as plain JSON-ready data.

    `members`: one mapping per member with `index`, `run_id`, `state`, `setting`, `fold`,
    `seed`; `histories[run_id]`: that member's metrics. Members whose state is in
    `include_states` (and that have a history) make the curves and the scores; the others are
    listed in `per_member` with `included: false`."""
    per_member = []
    used: dict[str, pd.DataFrame] = {}
    for m in members:
        rid = m.get("run_id")
        h = histories.get(rid) if rid else None
        row = {"index": m.get("index"), "run_id": rid, "state": m.get("state"),
               "setting": m.get("setting"), "fold": m.get("fold"), "seed": m.get("seed")}
        row.update(member_score(h) if h is not None else {"best_epoch": None, "epochs": 0})
        row["included"] = False
        if rid and h is not None and len(h) and m.get("state") in include_states:
            row["included"] = True
            used[rid] = h
        per_member.append(row)
    frame = pd.DataFrame.from_records(per_member) if per_member else pd.DataFrame(
        columns=["setting", "included", "run_id"])
    for metric in SCORE_METRICS:  # a metric appears once any member has it
        if any(metric in r for r in per_member):
            frame[metric] = [r.get(metric) for r in per_member]
    included = frame[frame["included"]] if len(frame) else frame
    scores = {m: score_summary(included[m].tolist() if len(included) else [])
              for m in SCORE_METRICS if m in frame.columns}
    curves = curve_stats(used)
    out = {"members": list(used), "per_member": per_member, "scores": scores,
           "curves": curves.to_dict("records")}
    if settings:
        out["ranking"] = rank_settings(frame, settings)
    return out


# ------------------------------------------------------------------------- words
#: The verdict of a group none of whose members has a score yet.
NO_VERDICT = "no finished member"


def score_words(summary: Mapping[str, Any] | None, spec: str = ".4f", *,
                count: bool = True) -> str:
    """One score summary {mean, std, n} as text: "0.1022 ± 0.0131 (3 runs)", or "0.0891
    (1 run)" with no ± for a single run (an sd of one value says nothing); "-" when empty.
    `count=False` leaves out the "(n runs)"."""
    if not summary or summary.get("mean") is None:
        return "-"
    n = int(summary.get("n") or 0)
    text = format(float(summary["mean"]), spec)
    if n > 1 and summary.get("std") is not None:
        text += f" ± {format(float(summary['std']), spec)}"
    return f"{text} ({n} run{'s' if n != 1 else ''})" if count else text


def setting_words(params: Mapping[str, Any]) -> str:
    """A sweep setting as "lr=0.01, batch_size=32"."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(base setting)"


def ranking_text(ranking: Sequence[Mapping[str, Any]], metric: str = "val_loss",
                 spec: str = ".4f") -> str:
    """A sweep's headline, its ranking of settings best first (`rank_settings` entries):
    "best lr=0.01: val_loss 0.0891 (1 run) · lr=0.001: 0.1153 (1 run)"."""
    scored = [e for e in ranking if (e.get(metric) or {}).get("mean") is not None]
    if not scored:
        return NO_VERDICT
    best, rest = scored[0], scored[1:]
    return " · ".join([f"best {setting_words(best.get('params') or {})}: {metric} "
                       f"{score_words(best.get(metric), spec)}",
                       *(f"{setting_words(e.get('params') or {})}: "
                         f"{score_words(e.get(metric), spec)}" for e in rest)])


def headline(method: str, scores: Mapping[str, Any],
             ranking: Sequence[Mapping[str, Any]] = (), metric: str = "val_loss") -> str:
    """The one-line verdict of a group. A sweep's members try different settings, so a
    sweep is judged per setting: its ranking. Folds, resamples and seeds repeat one setting,
    so the mean ± sd of the members' best `metric` (and the accuracy or R² there) is theirs:
    "val_loss 0.9433 ± 0.0106, val_acc 0.7190 ± 0.0101 (3 runs)"."""
    if method == "sweep":
        return ranking_text(ranking, metric)
    if (scores.get(metric) or {}).get("mean") is None:
        return NO_VERDICT
    shown = [metric, *(m for m in SCORE_METRICS if m != metric and m in scores)]
    n = int(scores[metric].get("n") or 0)
    return ", ".join(f"{m} {score_words(scores[m], count=False)}" for m in shown
                     if (scores[m] or {}).get("mean") is not None) \
        + f" ({n} run{'s' if n != 1 else ''})"
