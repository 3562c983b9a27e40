"""What a wandb-style `curvewatch.log` call costs against writing the same lines through
`tracking.Run` directly (log_step per batch, log_epoch per epoch), rounds alternating.

    python bench/wandb_log.py [--rounds 5] [--batches 100] [--epochs 50]
"""
import argparse
import statistics
import tempfile
import time

import curvewatch


def wandb_style(batches: int, epochs: int) -> float:
    """Seconds per log call: `batches` batch-loss calls and one epoch call per epoch."""
    with tempfile.TemporaryDirectory() as d:
        curvewatch.init(runs_dir=d, name="bench")
        began = time.perf_counter()
        for epoch in range(epochs):
            for _ in range(batches):
                curvewatch.log({"batch_loss": 0.5, "lr": 0.1})
            curvewatch.log({"epoch": epoch, "train_loss": 0.4, "val_loss": 0.5, "val_acc": 0.9})
        curvewatch.finish()
        return (time.perf_counter() - began) / (epochs * (batches + 1))


def direct(batches: int, epochs: int) -> float:
    """The same lines through Run.log_step and Run.log_epoch."""
    with tempfile.TemporaryDirectory() as d:
        run = curvewatch.Run.create(d, name="bench")
        began = time.perf_counter()
        step = 0
        for epoch in range(1, epochs + 1):
            for _ in range(batches):
                run.log_step(step, loss=0.5, lr=0.1)
                step += 1
            run.log_epoch(epoch, train_loss=0.4, val_loss=0.5, val_acc=0.9, step=step)
            step += 1
        run.finish()
        return (time.perf_counter() - began) / (epochs * (batches + 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--epochs", type=int, default=50)
    a = p.parse_args()
    ratios = []
    for r in range(a.rounds):
        ours, base = wandb_style(a.batches, a.epochs), direct(a.batches, a.epochs)
        ratios.append(ours / base)
        print(f"round {r}: curvewatch.log {ours * 1e6:.1f} us a call, Run directly "
              f"{base * 1e6:.1f} us, {ours / base:.2f}x")
    print(f"median {statistics.median(ratios):.2f}x over {a.rounds} rounds")


if __name__ == "__main__":
    main()
