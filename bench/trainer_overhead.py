"""What monitoring costs: the full trainer (metrics, gradient norms, per-layer norms,
checkpoints, run-folder writes) against a bare hand-written torch loop with the same model,
data, batch size and thread count, in the same process. Prints seconds per epoch and the ratio.

    .venv/bin/python bench/trainer_overhead.py [--epochs 30] [--rounds 5] [--threads 1]

Rounds alternate bare / full so machine noise hits both alike; ratios are of the medians.
Both wall time and process CPU time (all threads: the trainer's background writer counts)
are reported; on a shared, busy machine the CPU-time ratio is the steadier one.
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

from tracking import Run  # noqa: E402
from trainer.config import validate  # noqa: E402
from trainer.runner import prepare, run_epochs  # noqa: E402

CASES = {
    "mlp-digits": {"dataset": "digits", "model": "mlp", "hidden": "128,64", "batch_size": 64},
    "cnn-digits-images": {"dataset": "digits-images", "model": "cnn", "hidden": "64",
                          "batch_size": 64},
}


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _per_epoch(start: tuple[float, float], epochs: int) -> tuple[float, float]:
    now = _clock()
    return (now[0] - start[0]) / epochs, (now[1] - start[1]) / epochs


def bare_loop(trainer, epochs: int) -> tuple[float, float]:
    """A careful hand-written loop: train() + shuffled index batches, eval() + inference_mode
    validation with loss and accuracy, one host sync per epoch. Returns seconds per epoch."""
    model, opt, loss_fn = trainer.model, trainer.optimizer, trainer.loss_fn
    x, y = trainer.train_t.x, trainer.train_t.y
    vx, vy = trainer.val_t.x, trainer.val_t.y
    bs, n = trainer.cfg.batch_size, len(y)
    gen = torch.Generator().manual_seed(1)
    start = _clock()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        total = torch.zeros(())
        for i in range(math.ceil(n / bs)):
            idx = order[i * bs:(i + 1) * bs]
            out = model(x[idx])
            loss = loss_fn(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        model.eval()
        with torch.inference_mode():
            vout = model(vx)
            stats = torch.stack([total / n, loss_fn(vout, vy),
                                 (vout.argmax(1) == vy).float().mean()]).tolist()
        assert all(math.isfinite(s) for s in stats)
    return _per_epoch(start, epochs)


def full_trainer(cfg, epochs: int, runs_dir: Path) -> tuple[float, float]:
    trainer = prepare(cfg)
    run = Run.create(runs_dir, name="bench", config=cfg.to_dict(), epochs=epochs)
    start = _clock()
    state = run_epochs(trainer, run, quiet=True)
    assert state == "completed", state
    return _per_epoch(start, epochs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.epochs} epochs x "
          f"{args.rounds} rounds, alternating")
    with tempfile.TemporaryDirectory() as tmp:
        for name, raw in CASES.items():
            cfg = validate({**raw, "epochs": args.epochs})
            bare, full = [], []
            bare_loop(prepare(cfg), 2)  # warm-up: first-call allocations and kernels
            for _ in range(args.rounds):
                bare.append(bare_loop(prepare(cfg), args.epochs))
                full.append(full_trainer(cfg, args.epochs, Path(tmp)))
            for i, clock in enumerate(("wall", "cpu")):
                b = statistics.median(x[i] for x in bare)
                f = statistics.median(x[i] for x in full)
                print(f"{name:18s} {clock:4s}  bare {b * 1000:7.2f} ms/epoch   trainer "
                      f"{f * 1000:7.2f} ms/epoch   ratio {f / b:.3f}x")


if __name__ == "__main__":
    main()
