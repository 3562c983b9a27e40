"""Evaluate the diagnosis engine on the committed real-curve corpus.

    python -m eval.evaluate                     # prints the tables of docs/diagnosis.md
    python -m eval.evaluate --json out.json     # also writes the figures
    python -m eval.evaluate --half odd --forecast   # the held-out half, and the forecast's error

Per kind: precision, recall and median detection delay (first epoch the online detector
reports the kind, minus the labelled onset; for overfitting the onset is the epoch of the
validation minimum). A run counts as flagged for a kind if `diagnose(history[:t])`
reports it as ongoing at any epoch t, except `still_improving`, a statement about the end
of the run: flagged if `diagnose(history)` reports it at the last epoch (no delay).
Noisy-but-healthy runs (recipes noisy and noisy_healthy, no problem label): the fraction
flagged at any epoch with anything but the info kinds (still_improving, overconfidence).
Early stopping: for every rule, the stop epoch s, the fraction s / planned epochs, and the
test-loss regret of the restored checkpoint (the lowest validation loss up to s) relative
to the best checkpoint of the full run. Synthetic edge curves (eval/synthetic.py): each
case's expected and forbidden findings, pass or fail.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from curvewatch.diagnosis import KINDS, Thresholds, diagnose
from eval import goals
from eval.labels import chance_level, label
from eval.synthetic import CASES, check

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "eval" / "corpus.jsonl.gz"
COLS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "grad_norm", "grad_norm_max", "lr",
        "test_loss", "test_acc")


def load(path: Path = CORPUS) -> list[dict]:
    runs = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            h = pd.DataFrame({c: [float(x) if isinstance(x, str) else x for x in r[c]] for c in COLS if c in r})
            if len(h):
                r["history"] = h
                runs.append(r)
    return runs


# ------------------------------------------------------------------ classic stop rules

def keras(v, patience, min_delta=0.0):
    best, wait = math.inf, 0
    for i, x in enumerate(v):
        if x - abs(min_delta) < best:  # NaN compares False: no improvement
            best, wait = x, 0
        else:
            wait += 1
            if wait >= patience:
                return i + 1
    return len(v)


def reduce_lr_style(v, patience=10, rel=1e-4):
    best, bad = math.inf, 0
    for i, x in enumerate(v):
        if x < best * (1 - rel):
            best, bad = x, 0
        else:
            bad += 1
            if bad > patience:
                return i + 1
    return len(v)


def _gl(v, i):
    prev = v[: i + 1]
    prev = prev[np.isfinite(prev)]
    if not np.isfinite(v[i]) or prev.size == 0:
        return math.inf
    return 100.0 * (v[i] / prev.min() - 1.0)


def prechelt_gl(v, alpha):
    for i in range(len(v)):
        if _gl(v, i) > alpha:
            return i + 1
    return len(v)


def prechelt_pq(v, tr, alpha, k=5):
    for i in range(k - 1, len(v), k):
        strip = tr[i - k + 1: i + 1]
        if not np.all(np.isfinite(strip)) or strip.min() <= 0:
            return i + 1
        pk = 1000.0 * (strip.sum() / (k * strip.min()) - 1.0)
        if pk <= 0 or _gl(v, i) / pk > alpha:
            return i + 1
    return len(v)


def prechelt_up(v, s, k=5):
    run = 0
    for i in range(2 * k - 1, len(v), k):
        if not (v[i] <= v[i - k]):  # a rise (or NaN) at this strip end
            run += 1
            if run >= s:
                return i + 1
        else:
            run = 0
    return len(v)


CLASSIC = {
    **{f"Keras patience {p}": (lambda v, tr, p=p: keras(v, p)) for p in (5, 10, 20)},
    "ReduceLROnPlateau-style (rel 1e-4, patience 10)": lambda v, tr: reduce_lr_style(v),
    **{f"Prechelt GL{a}": (lambda v, tr, a=a: prechelt_gl(v, a)) for a in (1, 2, 3, 5)},
    **{f"Prechelt PQ{a}": (lambda v, tr, a=a: prechelt_pq(v, tr, a)) for a in (0.5, 0.75, 1, 2, 3)},
    **{f"Prechelt UP{s}": (lambda v, tr, s=s: prechelt_up(v, s)) for s in (2, 3, 4, 6, 8)},
}


# ------------------------------------------------------------------ engine, online

#: Kinds scored at the last epoch only (statements about the end of the run).
AT_END = ("still_improving",)
#: Info kinds: not a false alarm on a healthy run.
INFO = ("still_improving", "overconfidence", "converged", "possible_overfitting")
#: Kinds without a label of their own: counted (runs reported at some epoch), not scored.
UNSCORED = ("possible_overfitting",)
#: Kinds scored as another: a run that converged is a plateau at a low loss (the same detector,
#: the same stop: should_stop's "plateau" stops on it); the labels do not tell them apart.
SCORED_AS = {"converged": "plateau"}
NOISY_RECIPES = ("noisy", "noisy_healthy")


def online(h: pd.DataFrame, th: Thresholds, chance: float | None = None) -> dict[str, int]:
    """First epoch at which each kind is reported ongoing, scanning prefixes t = 1..N; the
    kinds in AT_END only if reported at the last epoch (value: the last epoch). `chance`: the
    run's chance-level loss, passed to diagnose as the trainer records it in run.json."""
    first: dict[str, int] = {}
    ep = h["epoch"].to_numpy(int)
    last: list = []
    for t in range(1, len(h) + 1):
        last = diagnose(h.iloc[:t], th, chance_loss=chance)
        for f in last:
            if f.ongoing and f.kind not in first and f.kind not in AT_END:
                first[f.kind] = int(ep[t - 1])
    for f in last:
        if f.kind in AT_END and f.ongoing:
            first[f.kind] = int(ep[-1])
    return first


def scored(det: dict[str, int]) -> dict[str, int]:
    """First epochs per scored kind: a kind in SCORED_AS counts as the one it names."""
    out = {k: e for k, e in det.items() if k not in SCORED_AS}
    for k, as_kind in SCORED_AS.items():
        if k in det:
            out[as_kind] = min(det[k], out.get(as_kind, det[k]))
    return out


def engine_stop(h: pd.DataFrame, th: Thresholds, kinds=("overfitting", "plateau")) -> int:
    for t in range(2, len(h) + 1):
        for f in diagnose(h.iloc[:t], th):
            if SCORED_AS.get(f.kind, f.kind) in kinds and f.ongoing:
                return t
    return len(h)


def regret(v, test, stop):
    fv = np.where(np.isfinite(v), v, np.inf)
    ref = int(np.argmin(fv))
    got = int(np.argmin(fv[:stop]))
    if not np.isfinite(test[ref]) or not np.isfinite(test[got]) or test[ref] <= 0:
        return float("nan")
    return float((test[got] - test[ref]) / test[ref])


def evaluate(runs: list[dict], th: Thresholds | None = None) -> dict:
    th = th or Thresholds()
    per_kind = {k: {"tp": 0, "fp": 0, "fn": 0, "delays": []} for k in KINDS
                if k not in SCORED_AS and k not in UNSCORED}
    stops: dict[str, list[tuple[float, float]]] = {name: [] for name in CLASSIC}
    stops["Curvewatch defaults (overfitting, plateau)"] = []
    healthy: dict[str, list[str]] = {k: [] for k in NOISY_RECIPES}
    healthy_flagged: dict[str, list[str]] = {k: [] for k in NOISY_RECIPES}
    problems = set(KINDS) - set(INFO)
    rows, goal_rows = [], []
    for r in runs:
        h = r["history"]
        chance = chance_level(r.get("config", {}))
        lab = label(h, chance)
        raw = online(h, th, chance)
        det = scored(raw)
        rows.append({"id": r["id"], "recipe": r["recipe"], "labels": lab, "detected": raw})
        for k in per_kind:
            if k in det and k in lab:
                per_kind[k]["tp"] += 1
                if k not in AT_END:
                    per_kind[k]["delays"].append(det[k] - lab[k])
            elif k in det:
                per_kind[k]["fp"] += 1
            elif k in lab:
                per_kind[k]["fn"] += 1
        if r["recipe"] in NOISY_RECIPES and not (set(lab) & problems):
            healthy[r["recipe"]].append(r["id"])
            if set(raw) & problems:
                healthy_flagged[r["recipe"]].append(f"{r['id']}:{','.join(sorted(set(raw) & problems))}")
        v = h["val_loss"].to_numpy(float)
        tr = h["train_loss"].to_numpy(float)
        test = h["test_loss"].to_numpy(float) if "test_loss" in h else None
        if test is None or not np.isfinite(v).any():
            continue
        n = len(v)
        for name, rule in CLASSIC.items():
            s = rule(v, tr)
            stops[name].append((s / n, regret(v, test, s)))
        # the first epoch at which overfitting or plateau is ongoing is where should_stop stops
        s_ep = min([det[k] for k in ("overfitting", "plateau") if k in det], default=int(h["epoch"].iloc[-1]))
        s = int(np.searchsorted(h["epoch"].to_numpy(int), s_ep)) + 1
        stops["Curvewatch defaults (overfitting, plateau)"].append((s / n, regret(v, test, s)))
        goal_rows.append(_goal_row(r, h, lab, det, v, tr, test))
    kinds_out = {}
    for k, d in per_kind.items():
        n_lab, n_det = d["tp"] + d["fn"], d["tp"] + d["fp"]
        kinds_out[k] = {"labelled": n_lab, "flagged": n_det,
                        "precision": d["tp"] / n_det if n_det else float("nan"),
                        "recall": d["tp"] / n_lab if n_lab else float("nan"),
                        "median_delay": float(np.median(d["delays"])) if d["delays"] else float("nan")}
    trade = {}
    for name, xs in stops.items():
        a = np.array(xs, dtype=float)
        ok = np.isfinite(a[:, 1])
        trade[name] = {"epochs_fraction": float(a[ok, 0].mean()), "regret": float(a[ok, 1].mean()),
                       "runs": int(ok.sum())}
    nh = {k: {"runs": len(healthy[k]), "flagged": len(healthy_flagged[k]), "which": healthy_flagged[k]}
          for k in NOISY_RECIPES}
    nh["all"] = {"runs": sum(d["runs"] for d in nh.values()), "flagged": sum(d["flagged"] for d in nh.values())}
    conv = sum("converged" in row["detected"] for row in rows)
    possible = sum("possible_overfitting" in row["detected"] for row in rows)
    return {"runs": len(runs), "kinds": kinds_out, "tradeoff": trade, "noisy_healthy": nh,
            "converged_runs": conv, "possible_overfitting_runs": possible, "goals": goals.summarise(goal_rows),
            "clean_runs": goals.clean_runs(goal_rows),
            "recipes": {rc: sum(r["recipe"] == rc for r in runs) for rc in sorted({r["recipe"] for r in runs})},
            "synthetic": [check(c, th) for c in CASES], "per_run": rows}


#: The rules of the goal table besides the engine (issue 13): the same curves, the same regret.
GOAL_RULES = {name: CLASSIC[name] for name in ("Keras patience 10", "ReduceLROnPlateau-style (rel 1e-4, patience 10)",
                                               "Prechelt UP4")} | goals.HINDSIGHT


def _goal_row(r: dict, h: pd.DataFrame, lab: dict, det: dict, v, tr, test) -> dict:
    """One run of the goal table: its labels, planned and trained epochs, and per rule the
    stop (epochs trained) with the regret of the checkpoint restored there."""
    ep = h["epoch"].to_numpy(int)
    s_ep = min([det[k] for k in goals.STOP_LABELS if k in det], default=int(ep[-1]))
    out = {goals.ENGINE: int(np.searchsorted(ep, s_ep)) + 1}
    out |= {name: rule(v, tr) for name, rule in GOAL_RULES.items()}
    planned = max(len(v), int(r.get("config", {}).get("epochs", len(v))))
    return {"labels": sorted(lab), "planned": planned, "trained": len(v),
            "stops": {name: (s, regret(v, test, s)) for name, s in out.items()}}


def report(res: dict) -> str:
    rec = ", ".join(f"{k} {v}" for k, v in res["recipes"].items())
    lines = [f"Corpus: {res['runs']} real runs ({rec}).", "",
             goals.report(res["goals"], res["kinds"], res["clean_runs"]), "",
             f"plateau counts a 'converged' finding (a plateau at a low loss, info) as a plateau; "
             f"{res.get('converged_runs', 0)} runs were reported converged at some epoch; "
             f"{res.get('possible_overfitting_runs', 0)} possible_overfitting (info, never stops) at some epoch.", "",
             "| kind | labelled | flagged | precision | recall | median delay (epochs) |",
             "|---|---|---|---|---|---|"]
    for k, d in res["kinds"].items():
        f = lambda x: "-" if x != x else f"{x:.2f}"  # noqa: E731
        delay = ("at end" if k in AT_END else "-") if d["median_delay"] != d["median_delay"] else f"{d['median_delay']:.0f}"
        lines.append(f"| {k} | {d['labelled']} | {d['flagged']} | {f(d['precision'])} | {f(d['recall'])} | {delay} |")
    nh = res["noisy_healthy"]
    part = "; ".join(f"{k}: {nh[k]['flagged']} of {nh[k]['runs']}" for k in NOISY_RECIPES)
    frac = nh["all"]["flagged"] / nh["all"]["runs"] if nh["all"]["runs"] else float("nan")
    lines += ["", f"Noisy-but-healthy runs (recipes {', '.join(NOISY_RECIPES)}, no problem label): "
                  f"{nh['all']['flagged']} of {nh['all']['runs']} ({frac:.0%}) flagged at any epoch with anything "
                  f"but {'/'.join(INFO)} ({part}).", "",
              "| early-stopping rule | mean fraction of planned epochs | mean test-loss regret |", "|---|---|---|"]
    for name, d in sorted(res["tradeoff"].items(), key=lambda kv: kv[1]["epochs_fraction"]):
        lines.append(f"| {name} | {d['epochs_fraction']:.3f} | {d['regret']:+.4f} |")
    syn = res["synthetic"]
    lines += ["", f"Synthetic edge curves: {sum(c['ok'] for c in syn)} of {len(syn)} pass.", "",
              "| case | epochs | expected (first epoch) | found (first epoch) | forbidden | ok |", "|---|---|---|---|---|---|"]
    for c in syn:
        exp = ", ".join(f"{k} ({e})" if e else k for k, e in c["expect"].items()) or "nothing"
        got = ", ".join(f"{k} ({e})" for k, e in c["found"].items()) or "nothing"
        lines.append(f"| {c['name']} | {c['epochs']} | {exp} | {got} | {', '.join(c['forbid']) or '-'} | "
                     f"{'yes' if c['ok'] else 'NO'} |")
    return "\n".join(lines)


def in_half(run_id: str, half: str) -> bool:
    """Whether a run (id like 'c0123') is in the even or the odd half of the corpus."""
    digits = "".join(ch for ch in str(run_id) if ch.isdigit())
    return bool(digits) and (int(digits) % 2 == 0) == (half == "even")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--half", choices=("even", "odd"), default=None,
                    help="only the runs with even (or odd) ids: tune on one half, report the other")
    ap.add_argument("--forecast", action="store_true",
                    help="also the forecast's error on the final best validation loss (eval/forecast_eval.py)")
    a = ap.parse_args(argv)
    runs = load(Path(a.corpus))
    if a.half:
        runs = [r for r in runs if in_half(r["id"], a.half)]
    res = evaluate(runs, Thresholds.from_pairs(a.threshold))
    print(report(res))
    if a.forecast:
        from eval import forecast_eval  # it reads the corpus through this module

        print("\nForecast of the final best validation loss (diagnosis.forecast):\n")
        print(forecast_eval.report(forecast_eval.score(runs)))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
