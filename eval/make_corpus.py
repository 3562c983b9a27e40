"""Generate the real-curve corpus: short trainings with the project's own trainer.

    python -m eval.make_corpus --out eval/corpus.jsonl.gz --jobs 2
    python -m eval.make_corpus --append --recipe noisy_healthy   # add only the missing runs

Each run is `python -m trainer run ...` with a held-out test split (--test-fraction 0.2)
that the detectors never see. Settings are drawn from recipes meant to produce healthy
runs, overfitting, plateaus, noisy validation, instability and divergence, but the
labels (eval/labels.py) come from the finished curves, not from the recipe. The compact
curves (per-epoch metrics rounded to 6 significant digits) and each run's config are
written as one JSON object per line, gzip-compressed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "grad_norm", "grad_norm_max", "lr",
           "test_loss", "test_acc")

SIZES = {"digits": 1797, "breast_cancer": 569, "wine": 178, "moons": 1000, "spirals": 1000, "blobs": 1000}


def recipes(rng: random.Random) -> list[dict]:
    """The run settings, drawn reproducibly. Each dict maps trainer option -> value."""
    out: list[dict] = []

    def add(recipe: str, **kw):
        kw.setdefault("test-fraction", 0.2)
        kw.setdefault("seed", rng.randrange(10_000))
        kw.setdefault("model", "mlp")
        kw["_recipe"] = recipe
        out.append({k: v for k, v in kw.items() if v is not None})  # None: the trainer's default

    ds_all = ["digits", "breast_cancer", "wine", "moons", "spirals"]
    for _ in range(40):  # overfitting: little data, label noise, wide nets, no regularisation
        ds = rng.choice(ds_all)
        add("overfit", dataset=ds, epochs=rng.choice([80, 100, 120]),
            **{"train-size": rng.choice([40, 60, 100, 150, 250]) if ds != "wine" else rng.choice([30, 50]),
               "label-noise": rng.choice([0.0, 0.1, 0.2, 0.3]), "hidden": rng.choice(["256,256", "128,128", "512"]),
               "lr": rng.choice([1e-3, 3e-3, 1e-2]), "batch-size": rng.choice([16, 32])})
    for _ in range(30):  # healthy: regularised, more data
        ds = rng.choice(ds_all)
        add("healthy", dataset=ds, epochs=60,
            **{"hidden": rng.choice(["64,32", "128,64", "32"]), "dropout": rng.choice([0.0, 0.1, 0.3]),
               "weight-decay": rng.choice([1e-4, 1e-3, 1e-2]), "lr": rng.choice([3e-4, 1e-3]),
               "batch-size": rng.choice([64, 128]), "schedule": rng.choice(["constant", "cosine"])})
    for _ in range(30):  # plateau: small or decayed learning rates, saturated small models
        ds = rng.choice(ds_all)
        opt = rng.choice(["sgd", "adam"])
        add("plateau", dataset=ds, epochs=rng.choice([80, 100]), optimizer=opt,
            model=rng.choice(["mlp", "logreg"]),
            **{"hidden": rng.choice(["8", "16", "32"]), "lr": (rng.choice([0.01, 0.05, 0.1]) if opt == "sgd" else rng.choice([1e-3, 3e-3])),
               "schedule": rng.choice(["step", "exponential", "constant"]), "weight-decay": rng.choice([0.0, 1e-3]),
               "batch-size": rng.choice([64, 128])})
    for _ in range(30):  # noisy validation: small val sets, large learning rates, small batches
        ds = rng.choice(["digits", "breast_cancer", "moons", "spirals"])
        add("noisy", dataset=ds, epochs=60,
            **{"val-fraction": rng.choice([0.05, 0.08, 0.1]), "lr": rng.choice([3e-3, 1e-2, 2e-2]),
               "batch-size": rng.choice([16, 32]), "hidden": rng.choice(["64", "128,64"]),
               "dropout": rng.choice([0.0, 0.2]), "weight-decay": rng.choice([0.0, 1e-4]),
               "train-size": rng.choice([300, 600])})
    for _ in range(15):  # unstable / divergent: far too large learning rates, no clipping
        ds = rng.choice(ds_all)
        opt = rng.choice(["sgd", "adam"])
        add("diverge", dataset=ds, epochs=40, optimizer=opt,
            **{"lr": rng.choice([0.5, 1.0, 3.0]) if opt == "sgd" else rng.choice([0.05, 0.1, 0.3]),
               "hidden": rng.choice(["128,64", "256,256"]), "batch-size": 64, "momentum": 0.9})
    for _ in range(10):  # underfitting: tiny learning rate or sigmoid bottleneck
        ds = rng.choice(ds_all)
        add("underfit", dataset=ds, epochs=60, optimizer="sgd",
            **{"lr": rng.choice([1e-4, 3e-4, 1e-3]), "hidden": rng.choice(["4", "8,4"]),
               "activation": rng.choice(["sigmoid", "tanh"]), "momentum": 0.0, "batch-size": 128})
    for _ in range(10):  # longer runs with schedules
        ds = rng.choice(ds_all)
        add("schedule", dataset=ds, epochs=100,
            **{"lr": rng.choice([1e-3, 3e-3]), "schedule": rng.choice(["step", "cosine", "plateau"]),
               "hidden": rng.choice(["128,64", "256"]), "train-size": rng.choice([100, 300]) if ds != "wine" else 60,
               "batch-size": 64})
    # Appended later (indices 165..204; the draws above are unchanged): noisy but healthy runs.
    # Small validation sets and small batches make the validation curve noisy; a moderate
    # learning rate, weight decay and dropout, and a budget too short to overfit keep it healthy.
    for _ in range(40):
        ds = rng.choice(["digits", "breast_cancer", "moons", "spirals", "wine"])
        add("noisy_healthy", dataset=ds, epochs=rng.choice([20, 25, 30, 40]),
            **{"val-fraction": rng.choice([0.05, 0.08, 0.1]), "lr": rng.choice([3e-4, 5e-4, 1e-3]),
               "batch-size": rng.choice([8, 16, 32]), "hidden": rng.choice(["64", "128,64", "32,32"]),
               "dropout": rng.choice([0.1, 0.2, 0.3]), "weight-decay": rng.choice([1e-4, 1e-3, 3e-3]),
               "schedule": rng.choice(["constant", "cosine"])})
    _wave2(add, rng)
    return out


def _wave2(add, rng: random.Random) -> None:
    """Issue 13 (indices 205..404, drawn after the runs above, which stay unchanged): what the
    held-out set varies: runs up to 300 epochs; step, cosine, exponential, warm-up and
    ReduceLROnPlateau schedules; validation sets from a dozen to thousands of examples;
    divergence inside the first epoch and spikes that recover; saddles; regression targets."""
    ds_all = ["digits", "breast_cancer", "wine", "moons", "spirals"]
    regress = ["eval.datasets:diabetes", "eval.datasets:friedman", "eval.datasets:friedman_small"]
    scheds = ["step", "cosine", "exponential", "plateau"]
    for _ in range(35):  # long runs under every schedule, with or without warm-up
        ds = rng.choice(ds_all)
        add("long", dataset=ds, epochs=rng.choice([150, 200, 300]),
            **{"schedule": rng.choice(scheds), "warmup-epochs": rng.choice([0, 0, 5, 10]),
               "lr": rng.choice([1e-3, 3e-3]), "hidden": rng.choice(["64", "128,64"]),
               "train-size": rng.choice([80, 150, 300]) if ds != "wine" else rng.choice([40, 80]),
               "batch-size": rng.choice([32, 64]), "dropout": rng.choice([0.0, 0.2]),
               "label-noise": rng.choice([0.0, 0.1])})
    for _ in range(30):  # validation sets of a dozen (wine, breast_cancer) to thousands (moons_large)
        small = rng.random() < 0.5
        ds = rng.choice(["wine", "breast_cancer"]) if small else rng.choice(["eval.datasets:moons_large",
                                                                          "digits"])
        vf = (0.07 if ds == "wine" else 0.03) if small else rng.choice([0.3, 0.5])
        add("valsize", dataset=ds, epochs=rng.choice([60, 100]),
            **{"val-fraction": vf, "lr": rng.choice([1e-3, 3e-3, 1e-2]), "hidden": rng.choice(["32", "128,64"]),
               "batch-size": rng.choice([16, 64]) if small else 128,
               "schedule": rng.choice(["constant", "cosine", "plateau"]),
               "train-size": rng.choice([60, 120]) if ds == "digits" else None})
    for _ in range(20):  # divergence inside epoch 1: huge steps, then chance level (or NaN)
        ds = rng.choice(ds_all + ["eval.datasets:diabetes"])
        opt = rng.choice(["sgd", "adam", "rmsprop"])
        add("diverge_early", dataset=ds, epochs=rng.choice([30, 60]), optimizer=opt,
            **{"lr": rng.choice([1.0, 2.0, 6.0]) if opt == "sgd" else rng.choice([0.1, 0.3, 1.0]),
               "momentum": 0.9, "hidden": rng.choice(["128,64", "256,256"]), "batch-size": 16})
    for _ in range(25):  # spikes that recover: large steps tamed by clipping, warm-up or decay
        ds = rng.choice(ds_all)
        opt = rng.choice(["sgd", "adam"])
        add("spike", dataset=ds, epochs=rng.choice([60, 100]), optimizer=opt,
            **{"lr": rng.choice([0.2, 0.5]) if opt == "sgd" else rng.choice([0.01, 0.03, 0.05]),
               "momentum": 0.9, "clip-grad-norm": rng.choice([1.0, 5.0, 0.0]),
               "schedule": rng.choice(["constant", "step", "exponential"]),
               "hidden": rng.choice(["128,64", "256"]), "batch-size": rng.choice([16, 32])})
    for _ in range(25):  # saddles: deep saturating nets with plain SGD sit flat, then drop
        ds = rng.choice(["spirals", "moons", "digits", "breast_cancer"])
        add("saddle", dataset=ds, epochs=rng.choice([100, 150, 200]), optimizer="sgd",
            **{"activation": rng.choice(["sigmoid", "tanh"]), "hidden": rng.choice(["32,32,32", "16,16,16,16"]),
               "lr": rng.choice([0.02, 0.05, 0.1, 0.3]), "momentum": rng.choice([0.0, 0.5]),
               "batch-size": rng.choice([32, 64])})
    for _ in range(45):  # regression targets (MSE): healthy, overfitting and plateauing ones
        ds = rng.choice(regress)
        opt = rng.choice(["adam", "sgd"])
        add("regression", dataset=ds, epochs=rng.choice([60, 100, 150, 200]), optimizer=opt,
            **{"hidden": rng.choice(["16", "64", "256,256"]), "momentum": 0.9,
               "lr": rng.choice([1e-3, 3e-3, 1e-2]) if opt == "adam" else rng.choice([1e-3, 1e-2, 3e-2]),
               "weight-decay": rng.choice([0.0, 0.0, 1e-3]), "schedule": rng.choice(["constant"] + scheds),
               "batch-size": rng.choice([16, 32, 64]), "dropout": rng.choice([0.0, 0.1]),
               "train-size": rng.choice([60, 150, None])})
    for _ in range(20):  # overfitting under schedules and warm-up, up to 300 epochs
        ds = rng.choice(ds_all)
        add("overfit_sched", dataset=ds, epochs=rng.choice([120, 200, 300]),
            **{"train-size": rng.choice([40, 80, 150]) if ds != "wine" else 40,
               "label-noise": rng.choice([0.1, 0.2, 0.3]), "hidden": rng.choice(["256,256", "512"]),
               "lr": rng.choice([1e-3, 3e-3]), "batch-size": 16, "schedule": rng.choice(scheds),
               "warmup-epochs": rng.choice([0, 5])})


def _read(path: Path) -> dict:
    """A run folder's JSON file, or {} while another job is still writing it."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _run_one(cfg: dict, runs_dir: Path) -> dict | None:
    name = f"c{cfg['_idx']:04d}"
    done = [d for d in runs_dir.iterdir() if d.is_dir() and _read(d / "run.json").get("name") == name
            and _read(d / "status.json").get("state") in ("completed", "failed")]
    if done:
        return _record(cfg, name, done[0], 0, 0.0)
    args = [sys.executable, "-m", "curvewatch.trainer", "run", "--runs-dir", str(runs_dir), "--name", name, "--device", "cpu"]
    for k, v in cfg.items():
        if not k.startswith("_"):
            args += [f"--{k}", str(v)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.time()
    p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    dirs = [d for d in runs_dir.iterdir() if d.is_dir() and _read(d / "run.json").get("name") == name]
    if not dirs:
        print(f"{name}: no run folder (rc {p.returncode}): {p.stderr[-300:]}", file=sys.stderr)
        return None
    return _record(cfg, name, dirs[0], p.returncode, time.time() - t0)


def _record(cfg: dict, name: str, run_dir: Path, rc: int, seconds: float) -> dict:
    from curvewatch.tracking import read_history  # noqa: WPS433

    h = read_history(run_dir)
    rec = {"id": name, "recipe": cfg["_recipe"], "config": {k: v for k, v in cfg.items() if not k.startswith("_")},
           "rc": rc, "seconds": round(seconds, 2)}
    for c in COLUMNS:
        if c in h.columns:
            rec[c] = [_compact(x) for x in h[c].tolist()]
    print(f"{name} {cfg['_recipe']:9s} {len(h):4d} epochs rc={rc} {rec['seconds']:.1f}s", flush=True)
    return rec


def _compact(x):
    if x is None:
        return "NaN"
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return float(f"{x:.6g}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "eval" / "corpus.jsonl.gz"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--limit", type=int, default=0, help="only the first N runs (smoke test)")
    ap.add_argument("--runs-dir", default=None, help="keep the run folders here (finished runs are reused)")
    ap.add_argument("--recipe", action="append", default=[], help="only runs of this recipe (repeatable)")
    ap.add_argument("--append", action="store_true",
                    help="keep the runs already in --out and train only the missing ones")
    a = ap.parse_args(argv)
    cfgs = recipes(random.Random(a.seed))
    for i, c in enumerate(cfgs):
        c["_idx"] = i
    if a.recipe:
        cfgs = [c for c in cfgs if c["_recipe"] in a.recipe]
    if a.limit:
        cfgs = cfgs[: a.limit]
    old: list[dict] = []
    if a.append and Path(a.out).exists():
        with gzip.open(a.out, "rt", encoding="utf-8") as f:
            old = [json.loads(line) for line in f]
        have = {r["id"] for r in old}
        cfgs = [c for c in cfgs if f"c{c['_idx']:04d}" not in have]
    with tempfile.TemporaryDirectory(prefix="curvewatch-corpus-") as tmp:
        runs_dir = Path(a.runs_dir or tmp)
        runs_dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(a.jobs) as ex:
            recs = [r for r in ex.map(lambda c: _run_one(c, runs_dir), cfgs) if r is not None]
    recs += old
    recs.sort(key=lambda r: r["id"])
    with gzip.open(a.out, "wt", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, allow_nan=False) + "\n")
    print(f"wrote {len(recs)} runs to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
