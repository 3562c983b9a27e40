"""How well does `diagnosis.forecast` project a run's final best validation loss?

    python -m eval.forecast_eval --half odd      # or: python -m eval.evaluate --half odd --forecast

For every run of the corpus that trained all its planned epochs N, from the rows up to 25% and
50% of N: the projected final best is min(best so far, forecast at N); "the last value stays"
(the baseline) projects the best so far. Both are scored against the run's true final best
(the lowest validation loss of all N epochs): median absolute error, absolute and relative to
the true value. Where the forecast says nothing (None) the table counts it and the "with
fallback" row uses the baseline there. `interval holds` is the fraction of forecasts whose
[min(best, low), min(best, high)] contains the true final best.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from curvewatch.diagnosis import forecast
from eval.evaluate import CORPUS, in_half, load

FRACTIONS = (0.25, 0.5)


def _planned(r: dict) -> int:
    return int(r.get("config", {}).get("epochs", len(r["history"])))


def score(runs: list[dict], fractions: tuple[float, ...] = FRACTIONS) -> dict[float, dict]:
    """Per fraction: the errors of the forecast and of the baseline on the same runs."""
    out: dict[float, dict] = {}
    for frac in fractions:
        rows = []
        for r in runs:
            h = r["history"]
            v = h["val_loss"].to_numpy(float)
            n = _planned(r)
            t = int(round(frac * n))
            if len(h) != n or t < 2 or not np.isfinite(v).any():
                continue  # a run that stopped early has no final best at its planned end
            truth = float(np.nanmin(np.where(np.isfinite(v), v, np.nan)))
            seen = v[:t][np.isfinite(v[:t])]
            if seen.size == 0:
                continue
            best = float(seen.min())
            fc = forecast(h.iloc[:t], int(h["epoch"].iloc[-1]))
            rows.append((truth, best, None if fc is None else
                         (min(best, fc.projected), min(best, fc.low), min(best, fc.high))))
        out[frac] = _summary(rows)
    return out


def _summary(rows: list[tuple]) -> dict:
    truth = np.array([r[0] for r in rows])
    base = np.array([r[1] for r in rows])
    has = np.array([r[2] is not None for r in rows], dtype=bool)
    proj = np.array([r[2][0] if r[2] else r[1] for r in rows])
    lo = np.array([r[2][1] if r[2] else np.nan for r in rows])
    hi = np.array([r[2][2] if r[2] else np.nan for r in rows])

    def mae(pred: np.ndarray, m: np.ndarray) -> tuple[float, float]:
        if not m.any():
            return float("nan"), float("nan")
        err = np.abs(pred[m] - truth[m])
        pos = np.abs(truth[m]) > 0  # (a validation loss of exactly 0 has no relative error)
        return float(np.median(err)), float(np.median(err[pos] / np.abs(truth[m][pos])))

    alls = np.ones(len(rows), dtype=bool)
    return {"runs": len(rows), "forecasts": int(has.sum()),
            "forecast": mae(proj, has), "baseline_same": mae(base, has),
            "with_fallback": mae(proj, alls), "baseline_all": mae(base, alls),
            "interval_holds": float(np.mean((lo[has] <= truth[has]) & (truth[has] <= hi[has])))
            if has.any() else float("nan")}


def report(res: dict[float, dict]) -> str:
    lines = ["| from | runs | forecasts | median abs. error: forecast | the last value stays "
             "(same runs) | forecast, baseline where None (all runs) | the last value stays "
             "(all runs) | interval holds |", "|---|---|---|---|---|---|---|---|"]

    def cell(x: tuple[float, float]) -> str:
        return f"{x[0]:.4f} ({100 * x[1]:.1f}%)"

    for frac, d in res.items():
        lines.append(f"| {100 * frac:.0f}% | {d['runs']} | {d['forecasts']} | {cell(d['forecast'])} | "
                     f"{cell(d['baseline_same'])} | {cell(d['with_fallback'])} | "
                     f"{cell(d['baseline_all'])} | {d['interval_holds']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--half", choices=("even", "odd"), default=None)
    a = ap.parse_args(argv)
    runs = load(Path(a.corpus))
    if a.half:
        runs = [r for r in runs if in_half(r["id"], a.half)]
    print(report(score(runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
