"""The goal rows of issue 13 on one set of curves: the engine as an early-stopping rule (the run
stopped at the first overfitting, plateau or divergence finding, best weights restored)
against Keras EarlyStopping patience 10, a ReduceLROnPlateau-style rule, Prechelt UP_4 and
hindsight stops that know each curve's future.

Per rule and run: the stop epoch s (epochs trained), the fraction s / planned epochs, the
test-loss regret of the checkpoint with the lowest validation loss up to s relative to the
full run's (eval.evaluate.regret); a stop is *early* when s < the epochs the run trained.
A clean run has none of the labels overfitting, plateau, divergence.
"""

from __future__ import annotations

import numpy as np

#: The labels whose runs deserve a stop; a run with none of them is clean.
STOP_LABELS = ("overfitting", "plateau", "divergence")
ENGINE = "Curvewatch (stop at overfitting, plateau, divergence)"
#: The goals of issue 13 (held-out set), for the report.
GOALS = {"regret": "≤ 0.5%", "regret_p90": "≤ 1%", "epochs_fraction": "≤ 0.45",
         "of_precision": "≥ 0.93", "of_recall": "≥ 0.95", "of_delay": "≤ 8",
         "clean_stops": "≤ 5 of 75", "plateau_precision": "≥ 0.9", "plateau_recall": "≥ 0.9",
         "divergence_recall": "≥ 0.9"}


def hindsight(v: np.ndarray, tolerance: float) -> int:
    """The first epoch whose best validation loss so far is within `tolerance` (relative) of
    the whole run's best: a stop that knows the future."""
    fv = np.where(np.isfinite(v), v, np.inf)
    if not np.isfinite(fv).any():
        return len(v)
    target = fv.min() + tolerance * abs(fv.min())
    return int(np.argmax(np.minimum.accumulate(fv) <= target)) + 1


HINDSIGHT = {f"hindsight stop (best within {100 * t:g}%)": (lambda v, tr, t=t: hindsight(v, t))
             for t in (0.0, 0.005, 0.01)}


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per rule: mean and p90 regret, mean fraction of planned epochs, early stops on clean
    runs, and the fraction of early stops on runs labelled overfitting (its precision as an
    overfitting detector). rows: {"labels", "planned", "stops": {rule: (s, regret)}}."""
    rules = sorted({name for r in rows for name in r["stops"]})
    out = {}
    for name in rules:
        fr, rg, clean, early, early_of = [], [], 0, 0, 0
        for r in rows:
            s, reg = r["stops"][name]
            fr.append(s / r["planned"])
            if np.isfinite(reg):
                rg.append(reg)
            if s < r["trained"]:
                early += 1
                early_of += "overfitting" in r["labels"]
                clean += not (set(r["labels"]) & set(STOP_LABELS))
        out[name] = {"regret": float(np.mean(rg)) if rg else float("nan"),
                     "regret_p90": float(np.percentile(rg, 90)) if rg else float("nan"),
                     "epochs_fraction": float(np.mean(fr)) if fr else float("nan"),
                     "clean_stops": clean, "early_stops": early,
                     "of_precision": early_of / early if early else float("nan"), "runs": len(rows)}
    return out


def clean_runs(rows: list[dict]) -> int:
    return sum(not (set(r["labels"]) & set(STOP_LABELS)) for r in rows)


def report(goals: dict[str, dict], kinds: dict[str, dict], n_clean: int) -> str:
    """The goal rows for the engine, then every rule on the same curves."""
    e = goals[ENGINE]
    of, pl, dv = kinds["overfitting"], kinds["plateau"], kinds["divergence"]

    def f2(x: float) -> str:
        return "-" if x != x else f"{x:.2f}"

    lines = [f"Goal rows (the engine stops at the first overfitting, plateau or divergence finding; "
             f"{e['runs']} runs with a test split, {n_clean} clean):", "",
             "| measure | this half | goal (held-out) |", "|---|---|---|",
             f"| mean test-loss regret of the restored checkpoint (p90) | {100 * e['regret']:.2f}% "
             f"({100 * e['regret_p90']:.2f}%) | {GOALS['regret']}, p90 {GOALS['regret_p90']} |",
             f"| fraction of planned epochs used | {e['epochs_fraction']:.2f} | {GOALS['epochs_fraction']} |",
             f"| overfitting precision / recall | {f2(of['precision'])} / {f2(of['recall'])} | "
             f"{GOALS['of_precision']} / {GOALS['of_recall']} |",
             f"| median overfitting delay (epochs after the minimum) | {of['median_delay']:.0f} | "
             f"{GOALS['of_delay']} |",
             f"| any stop on a clean run | {e['clean_stops']} of {n_clean} | {GOALS['clean_stops']} |",
             f"| plateau precision / recall | {f2(pl['precision'])} / {f2(pl['recall'])} | "
             f"{GOALS['plateau_precision']} / {GOALS['plateau_recall']} |",
             f"| divergence recall | {f2(dv['recall'])} ({dv['labelled']} labelled) | "
             f"{GOALS['divergence_recall']} |", "",
             "| rule (same curves) | mean regret | p90 regret | fraction of planned epochs | "
             "early stops | on clean runs | overfitting precision of its stops |",
             "|---|---|---|---|---|---|---|"]
    for name, d in sorted(goals.items(), key=lambda kv: kv[1]["epochs_fraction"]):
        lines.append(f"| {name} | {100 * d['regret']:.2f}% | {100 * d['regret_p90']:.2f}% | "
                     f"{d['epochs_fraction']:.2f} | {d['early_stops']} | {d['clean_stops']} | "
                     f"{f2(d['of_precision'])} |")
    return "\n".join(lines)
