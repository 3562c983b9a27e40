"""What monitoring costs: the full trainer (metrics, gradient norms, per-layer norms,
checkpoints, run-folder writes) against a bare hand-written torch loop with the same model,
data, batch size and thread count, in the same process.

    .venv/bin/python bench/trainer_overhead.py [--epochs 30] [--short 5] [--rounds 7] [--threads 1]
        [--case mlp-digits] [--case cnn-digits-images]
    .venv/bin/python bench/trainer_overhead.py --parts   # where the per-epoch cost goes
    .venv/bin/python bench/trainer_overhead.py --interleaved 300   # epoch by epoch, with
        # the trainer's cycle split into its train_epoch and the rest (run_epochs' writes)

Each round runs both loops for --short and for --epochs epochs, alternating bare / full so
machine noise hits both alike. The cost of one more epoch is the slope between the two
lengths, (T(long) - T(short)) / (long - short); what is left, T(short) - short * slope, is the
per-run cost (creating the folder, the final checkpoints and diagnosis, fsyncs). Printed, in
wall time and in process CPU time: the median and quartiles of the rounds' per-epoch ratios
(trainer / bare; the goal: at most 1.02x), the per-run extra in ms, and the whole-run ratio at
--epochs epochs (medians over the rounds). Which loop goes first alternates between rounds. On
a shared machine read the CPU line: wall time mostly measures the other jobs.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from curvewatch.tracking import Run  # noqa: E402
from curvewatch.trainer.config import validate  # noqa: E402
from curvewatch.trainer.runner import prepare, run_epochs  # noqa: E402

CASES = {
    "mlp-digits": {"dataset": "digits", "model": "mlp", "hidden": "128,64", "batch_size": 64},
    "cnn-digits-images": {"dataset": "digits-images", "model": "cnn", "hidden": "64",
                          "batch_size": 64},
}


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    now = _clock()
    return now[0] - start[0], now[1] - start[1]


def bare_loop(trainer, epochs: int, *, grads: str = "plain", outputs: bool = False
              ) -> tuple[float, float]:
    """A careful hand-written loop: train() + shuffled index batches, eval() + inference_mode
    validation with loss and accuracy, one host sync per epoch. Returns (wall, cpu) seconds.
    For --parts: `grads` "buffer" zeroes the gradients the trainer's way (its flat buffer,
    for a built-in model) instead of zero_grad(set_to_none=True), "norms" also records the
    trainer's per-step gradient norms; `outputs` keeps each step's outputs for the train
    accuracy."""
    model, opt, loss_fn, stats_of = trainer.model, trainer.optimizer, trainer.loss_fn, \
        trainer.grads
    x, y = trainer.train_t.x, trainer.train_t.y
    vx, vy = trainer.val_t.x, trainer.val_t.y
    bs, n = trainer.cfg.batch_size, len(y)
    gen = torch.Generator().manual_seed(1)
    start = _clock()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        total = torch.zeros(())
        kept_outputs = []
        for i in range(math.ceil(n / bs)):
            idx = order[i * bs:(i + 1) * bs]
            out = model(x[idx])
            loss = loss_fn(out, y[idx])
            if grads == "plain":
                opt.zero_grad(set_to_none=True)
            else:
                stats_of.zero_grad()
            loss.backward()
            if grads == "norms":
                stats_of.after_backward(i, False)
            opt.step()
            total += loss.detach() * len(idx)
            if outputs:
                kept_outputs.append(out.detach())
        model.eval()
        with torch.inference_mode():
            vout = model(vx)
            stats = torch.stack([total / n, loss_fn(vout, vy),
                                 (vout.argmax(1) == vy).float().mean()]).tolist()
        if grads == "norms":
            stats.append(float(stats_of.end_epoch()[0].max()))
        if outputs:
            stats.append(float((torch.cat(kept_outputs).argmax(1) == y[order]).float().mean()))
        assert all(math.isfinite(s) for s in stats)
    return _since(start)


def trainer_epochs(trainer, epochs: int, run: Run | None = None) -> tuple[float, float]:
    """The trainer's own epochs (all in-epoch monitoring), optionally each logged to `run`."""
    start = _clock()
    for epoch in range(1, epochs + 1):
        record, layers = trainer.train_epoch(epoch)
        if run is not None:
            run.log_epoch(layers=layers, **record)
    return _since(start)


def full_trainer(cfg, epochs: int, runs_dir: Path) -> tuple[float, float]:
    """The trainer's epochs into a new run folder, its creation included; (wall, cpu) s."""
    trainer = prepare(cfg)
    start = _clock()
    run = Run.create(runs_dir, name="bench", config=cfg.to_dict(), epochs=epochs)
    state = run_epochs(trainer, run, quiet=True)
    assert state == "completed", state
    return _since(start)


def _fit(short: tuple[float, float], long: tuple[float, float], n_short: int, n_long: int
         ) -> tuple[list[float], list[float], list[float]]:
    """Per-epoch slope, per-run intercept and whole-run time, per clock, from one round's
    run times at two lengths."""
    slope = [(tl - ts) / (n_long - n_short) for ts, tl in zip(short, long, strict=True)]
    fixed = [ts - n_short * k for ts, k in zip(short, slope, strict=True)]
    return slope, fixed, list(long)


def measure(cfg_of, n_short: int, n_long: int, rounds: int, runs_dir: Path
            ) -> tuple[dict, list[list[float]]]:
    """Median per-epoch, per-run and whole-run times of both loops, per clock; and per clock,
    each round's per-epoch ratio (full / bare), sorted."""
    samples: dict[str, list] = {"bare": [], "full": []}
    bare_loop(prepare(cfg_of(2)), 2)  # warm-up: first-call allocations and kernels
    full_trainer(cfg_of(2), 2, runs_dir)
    for r in range(rounds):
        times = {}
        for n in (n_short, n_long):
            for kind in ("bare", "full") if r % 2 == 0 else ("full", "bare"):  # alternate
                times[kind, n] = bare_loop(prepare(cfg_of(n)), n) if kind == "bare" \
                    else full_trainer(cfg_of(n), n, runs_dir)
        for kind in samples:
            samples[kind].append(_fit(times[kind, n_short], times[kind, n_long],
                                      n_short, n_long))
    ratios = [sorted(f[0][clock] / b[0][clock]
                     for b, f in zip(samples["bare"], samples["full"], strict=True))
              for clock in (0, 1)]
    return {kind: [[statistics.median(r[part][clock] for r in rows) for clock in (0, 1)]
                   for part in range(3)] for kind, rows in samples.items()}, ratios


def _spread(ratios: list[float]) -> str:
    """Median and quartiles of sorted per-round ratios."""
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return f"median {statistics.median(ratios):.3f}x (quartiles {q[0]:.3f}x-{q[2]:.3f}x)"


def interleaved(cfg, runs_dir: Path) -> tuple[list[list[float]], ...]:
    """Epoch by epoch, alternating in one process: the trainer's run (run_epochs, all of an
    epoch's monitoring and writes) calls back after each epoch, and the callback trains one
    epoch of the bare loop on a second copy. Returns, per clock, the trainer's epoch cycles
    (callback to callback, the bare epoch taken out), the bare epochs and, within each cycle,
    its Trainer.train_epoch (the rest is run_epochs' writes and checks), in seconds."""
    bare, trainer = prepare(cfg), prepare(cfg)
    full: list[list[float]] = [[], []]
    plain: list[list[float]] = [[], []]
    inner: list[list[float]] = [[], []]
    mark: list[tuple[float, float]] = []
    train_epoch = trainer.train_epoch

    def timed_epoch(*args, **kwargs):
        start = _clock()
        try:
            return train_epoch(*args, **kwargs)
        finally:
            for clock, took in enumerate(_since(start)):
                inner[clock].append(took)

    def on_epoch(record: dict) -> None:
        now = _clock()
        if mark:
            for clock in (0, 1):
                full[clock].append(now[clock] - mark[0][clock])
        took = bare_loop(bare, 1)
        for clock in (0, 1):
            plain[clock].append(took[clock])
        mark[:] = [_clock()]

    bare_loop(bare, 2)
    trainer.train_epoch = timed_epoch
    run = Run.create(runs_dir, name="interleaved", config=cfg.to_dict(), epochs=cfg.epochs)
    assert run_epochs(trainer, run, quiet=True, on_epoch=on_epoch) == "completed"
    # the first epoch has no cycle (its callback starts the clock)
    return full, plain, [times[1:len(full[0]) + 1] for times in inner]


def parts(cfg, epochs: int, rounds: int, runs_dir: Path) -> dict[str, list[float]]:
    """Median [wall, cpu] seconds per epoch of the bare loop with one monitoring piece added
    at a time, then the trainer's epochs without and with the run-folder writes (process CPU
    time too: on a loaded machine wall time mostly measures the other jobs)."""
    def logged(trainer):
        run = Run.create(runs_dir, name="parts", heartbeat_seconds=0)
        try:
            return trainer_epochs(trainer, epochs, run)
        finally:
            run.finish()

    variants = {
        "bare loop": lambda t: bare_loop(t, epochs),
        "gradients zeroed the trainer's way": lambda t: bare_loop(t, epochs, grads="buffer"),
        "+ per-step gradient norms": lambda t: bare_loop(t, epochs, grads="norms"),
        "+ outputs kept for train acc": lambda t: bare_loop(t, epochs, outputs=True),
        "trainer epochs, no writes": lambda t: trainer_epochs(t, epochs),
        "trainer epochs + log_epoch": logged,
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    bare_loop(prepare(cfg), 2)
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(fn(prepare(cfg)))
    return {k: [statistics.median(t[clock] for t in v) / epochs for clock in (0, 1)]
            for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30, help="the long run's epochs")
    ap.add_argument("--short", type=int, default=5, help="the short run's epochs")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--case", choices=list(CASES), action="append",
                    help="only this case (repeatable; default: all)")
    ap.add_argument("--interleaved", type=int, metavar="EPOCHS", default=0,
                    help="instead: one run of EPOCHS epochs, a bare epoch after each")
    ap.add_argument("--parts", action="store_true",
                    help="instead: what each piece of monitoring adds to the bare loop")
    args = ap.parse_args()
    if not 1 <= args.short < args.epochs:
        ap.error(f"--short must be >= 1 and below --epochs ({args.epochs}), got {args.short}")
    torch.set_num_threads(args.threads)
    cases = {k: v for k, v in CASES.items() if not args.case or k in args.case}
    print(f"torch {torch.__version__}, {args.threads} thread(s), "
          + (f"{args.epochs} epochs" if args.parts else
             f"runs of {args.short} and {args.epochs} epochs")
          + f" x {args.rounds} rounds, alternating")
    if args.interleaved:
        with tempfile.TemporaryDirectory() as tmp:
            for name, raw in cases.items():
                full, plain, inner = interleaved(
                    validate({**raw, "epochs": args.interleaved}), Path(tmp))
                for clock, label in enumerate(("wall", "cpu")):
                    after = plain[clock][1:]  # the bare epoch that followed each cycle
                    pairs = sorted(f / b for f, b in zip(full[clock], after, strict=True))
                    epochs = sorted(e / b for e, b in zip(inner[clock], after, strict=True))
                    rest = statistics.median(f - e for f, e in zip(full[clock], inner[clock],
                                                                   strict=True))
                    print(f"{name:18s} {label:4s}  per epoch, {len(pairs)} pairs: bare "
                          f"{statistics.median(plain[clock]) * 1000:6.2f} ms, trainer "
                          f"{statistics.median(full[clock]) * 1000:6.2f} ms, ratio "
                          f"{_spread(pairs)}, of the means "
                          f"{statistics.fmean(full[clock]) / statistics.fmean(plain[clock]):.3f}x"
                          f"; train_epoch alone {_spread(epochs)}, the rest of the cycle "
                          f"{rest * 1e6:.0f} us")
        return
    if args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            for name, raw in cases.items():
                got = parts(validate({**raw, "epochs": args.epochs}), args.epochs,
                            args.rounds, Path(tmp))
                base = got["bare loop"]
                for label, (wall, cpu) in got.items():
                    print(f"{name:18s} {label:36s} wall {wall * 1000:7.2f} ms/epoch "
                          f"{wall / base[0]:.3f}x | cpu {cpu * 1000:7.2f} ms/epoch "
                          f"{cpu / base[1]:.3f}x")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, raw in cases.items():
            m, ratios = measure(lambda n, raw=raw: validate({**raw, "epochs": n}), args.short,
                                args.epochs, args.rounds, Path(tmp))
            (b_ep, b_fix, b_run), (f_ep, f_fix, f_run) = m["bare"], m["full"]
            for clock, label in enumerate(("wall", "cpu")):
                print(f"{name:18s} {label:4s}  per epoch: bare "
                      f"{b_ep[clock] * 1000:6.2f} ms, trainer {f_ep[clock] * 1000:6.2f} ms, "
                      f"per-round ratio {_spread(ratios[clock])} | per run: +"
                      f"{(f_fix[clock] - b_fix[clock]) * 1000:5.1f} ms | whole "
                      f"{args.epochs}-epoch run: ratio {f_run[clock] / b_run[clock]:.3f}x")


if __name__ == "__main__":
    main()
