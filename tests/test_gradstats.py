"""The epoch's gradient figures are those of its steps, whichever way the trainer gets them:
grad_norm is the mean and grad_norm_max the maximum of each step's global L2 norm (before
clipping), and each parameter tensor's value is the root mean square of its per-step norms."""
from __future__ import annotations

import math

import pytest
import torch

from curvewatch.trainer import gradstats
from curvewatch.trainer.config import validate
from curvewatch.trainer.gradstats import FlatGrads, TensorGrads
from curvewatch.trainer.runner import prepare

CFG = {"dataset": "wine", "hidden": "16,8", "batch_size": 32, "epochs": 2, "lr": 0.05}


def _trainer(**overrides):
    return prepare(validate({**CFG, **overrides}))


def _epoch_with_reference(trainer, epoch):
    """Train one epoch, measuring every step's gradients independently, one tensor at a time,
    after the optimizer step (which leaves the gradients as they were); also returns the
    global norm each step reported to the step logger."""
    steps: list[list[float]] = []
    reported: list[float] = []

    def measure(step, loss, total, lr):
        steps.append([float(torch.linalg.vector_norm(p.grad)) for p in trainer.params])
        reported.append(float(total))

    record, layers = trainer.train_epoch(epoch, measure)
    return record, layers, steps, reported


@pytest.mark.parametrize("kind, chunk", [
    (FlatGrads, gradstats.CHUNK),  # chunk norms; tensors of 1 to several chunks, padded
    (FlatGrads, 16),  # chunk norms, most tensors over several chunks
    (FlatGrads, 2),  # more steps in an epoch than a chunk holds: whole-buffer norm + squares
    (TensorGrads, gradstats.CHUNK)])
def test_epoch_figures_summarise_each_steps_norms(kind, chunk, monkeypatch):
    monkeypatch.setattr(gradstats, "CHUNK", chunk)
    trainer = _trainer()
    trainer.grads = kind(trainer.params, trainer.steps_per_epoch)
    if kind is FlatGrads:
        assert trainer.grads.by_chunk == (trainer.steps_per_epoch <= chunk)
    for epoch in (1, 2):  # the second epoch checks that the first one's sums were reset
        record, layers, steps, reported = _epoch_with_reference(trainer, epoch)
        assert len(steps) == trainer.steps_per_epoch
        totals = [math.sqrt(sum(v * v for v in s)) for s in steps]
        assert reported == pytest.approx(totals, rel=1e-5)  # what steps.jsonl gets
        assert record["grad_norm"] == pytest.approx(sum(totals) / len(totals), rel=1e-5)
        assert record["grad_norm_max"] == pytest.approx(max(totals), rel=1e-5)
        for j, name in enumerate(trainer.names):
            rms = math.sqrt(sum(s[j] ** 2 for s in steps) / len(steps))
            assert layers[name] == pytest.approx(rms, rel=1e-5), name
        # RMS values compose: their squares add up to the mean squared global norm
        assert sum(v * v for v in layers.values()) == pytest.approx(
            sum(t * t for t in totals) / len(totals), rel=1e-5)
    if kind is FlatGrads:  # the padding after each tensor is never anyone's gradient
        pieces = trainer.grads.flat.split(trainer.grads.padded)
        assert any(len(v) > p.numel() for v, p in zip(pieces, trainer.params, strict=True))
        for view, p in zip(pieces, trainer.params, strict=True):
            assert not view[p.numel():].any() and view[:p.numel()].any()


def test_a_built_in_model_uses_the_flat_buffer_and_trains_exactly_as_without_it():
    flat, plain = _trainer(), _trainer()
    assert isinstance(flat.grads, FlatGrads)
    plain.grads = TensorGrads(plain.params, plain.steps_per_epoch)
    for epoch in (1, 2):
        a, la = flat.train_epoch(epoch)
        b, lb = plain.train_epoch(epoch)
        for key in ("train_loss", "val_loss", "train_acc", "val_acc", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key
        assert la == pytest.approx(lb, rel=1e-5)
    for p, q in zip(flat.params, plain.params, strict=True):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)


def test_clipping_uses_the_norm_before_clipping_and_counts_the_clipped_steps():
    trainer = _trainer(clip_grad_norm=0.05)
    assert isinstance(trainer.grads, FlatGrads)
    record, _, steps, reported = _epoch_with_reference(trainer, 1)
    # what the optimizer saw was clipped to the limit; what was logged was not
    assert all(math.sqrt(sum(v * v for v in s)) <= 0.05 * (1 + 1e-4) for s in steps)
    # some step's norm exceeds the limit: over seeds 0-4 and 1-2 threads the largest is
    # 0.56-0.91, 11-18x the limit (bench/test_margins.py, check `clip`)
    assert record["grad_norm_max"] == pytest.approx(max(reported)) and max(reported) > 0.05
    assert 0 < record["clipped_fraction"] <= 1


def test_a_users_model_keeps_none_gradients_for_unused_parameters():
    """A factory model may skip parameters on a step; they must get no gradient (so momentum
    and weight decay leave them alone), which the flat buffer could not promise."""
    trainer = _trainer(model="trainer_fixtures:unused_head_model")
    assert isinstance(trainer.grads, TensorGrads)
    trainer.train_epoch(1)
    named = dict(trainer.model.named_parameters())
    assert named["aux.weight"].grad is None and named["lin.weight"].grad is not None


def test_the_flat_buffer_needs_dense_parameters_of_one_float_dtype():
    dense = [torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]
    assert FlatGrads.fits(dense)
    assert not FlatGrads.fits(dense + [torch.zeros(2, dtype=torch.float64, requires_grad=True)])
    assert not FlatGrads.fits([])
