"""Per-step gradient norms, kept on the device and summarised once per epoch.

Two ways to get them, one contract. `FlatGrads` makes every parameter's .grad a view into one
contiguous buffer, so a step's whole monitoring is one kernel on that buffer (the norms of its
fixed-size chunks, each tensor starting on a chunk boundary) however many parameter tensors
the model has; on a CPU, where each op costs microseconds of dispatch, a per-tensor norm costs
more than that for a small model. Zeroing the buffer replaces `zero_grad(set_to_none=True)`, so
a parameter that a step did not use gets a zero gradient rather than none, and an optimizer
with momentum or weight decay would still move it: the flat buffer is therefore used only for
the built-in models, which use every parameter on every step. `TensorGrads` handles the rest
(user models, mixed devices or dtypes, sparse gradients) with one fused per-tensor norm per
step.

Both summarise an epoch the same way: the global L2 norm of every step (its mean and maximum
go into metrics.jsonl) and, per parameter tensor, the root mean square over the steps of its
norm. The RMS (not the mean) is what a running sum of squares gives, and it composes: the
squares of the per-tensor values add up to the mean squared global norm.
"""
from __future__ import annotations

import torch

#: Elements per chunk of the flat buffer (see FlatGrads). Each tensor is padded to a multiple
#: of it (at most CHUNK - 1 zeros a tensor, a few percent of a small MLP's buffer).
CHUNK = 256


class FlatGrads:
    """All gradients as views into one buffer; see the module docstring for when to use it.

    A step records the L2 norm of each CHUNK-element row of the buffer (one kernel: it reads
    the gradients once). A chunk holds one tensor's elements only, so at the epoch's end the
    squared chunk norms add up, in float64, to each tensor's squared norm of each step, and
    those to the step's squared global norm: the same figures as a norm of the whole buffer
    plus a running sum of squares (two kernels, three passes over the buffer), which is
    still the way for an epoch of more than CHUNK steps, where the chunk norms kept until
    the epoch's end would outgrow the buffer itself."""

    def __init__(self, params: list[torch.Tensor], steps_per_epoch: int):
        self.params, self.steps = params, steps_per_epoch
        sizes = [p.numel() for p in params]
        self.padded = [-(-n // CHUNK) * CHUNK for n in sizes]
        first = params[0]
        kw = {"dtype": first.dtype, "device": first.device}
        self.flat = torch.zeros(sum(self.padded), **kw)  # padding stays 0: never a grad
        for p, view in zip(params, self.flat.split(self.padded), strict=True):
            p.grad = view[:p.numel()].view_as(p)
        self.by_chunk = steps_per_epoch <= CHUNK
        if self.by_chunk:
            self.chunks = self.flat.view(-1, CHUNK)
            # which tensor each chunk belongs to, as a 0/1 matrix: the epoch's per-tensor
            # sums of squared chunk norms are one matrix product
            owner = torch.repeat_interleave(
                torch.arange(len(params), device=first.device),
                torch.tensor([n // CHUNK for n in self.padded], device=first.device))
            self.owner = torch.nn.functional.one_hot(owner, len(params)).double()
            self.norms = torch.zeros(steps_per_epoch, len(self.chunks), **kw)
            self.rows = list(self.norms.unbind())  # views made once, not indexed every step
        else:
            self.squares = torch.zeros_like(self.flat)
            self.totals = torch.zeros(steps_per_epoch, **kw)
            self.rows = list(self.totals.unbind())

    @staticmethod
    def fits(params: list[torch.Tensor]) -> bool:
        """Whether the parameters can share one buffer: dense, one device, one float dtype."""
        return bool(params) and all(
            p.layout == torch.strided and p.device == params[0].device
            and p.dtype == params[0].dtype and p.dtype.is_floating_point for p in params)

    def zero_grad(self) -> None:
        self.flat.zero_()

    def after_backward(self, i: int, want_total: bool) -> torch.Tensor | None:
        """Record step `i` of the epoch; return its global norm as a 0-d tensor (no host
        sync), or None when not `want_total` and not computed anyway."""
        if self.by_chunk:
            chunk_norms = torch.linalg.vector_norm(self.chunks, dim=1, out=self.rows[i])
            return torch.linalg.vector_norm(chunk_norms) if want_total else None
        total = torch.linalg.vector_norm(self.flat, out=self.rows[i])
        self.squares.addcmul_(self.flat, self.flat)
        return total

    def end_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(global norm of each step, per-tensor RMS norm over the steps); resets the sums.
        Few kernels: at an epoch's end each costs several microseconds on a CPU."""
        if self.by_chunk:
            per_tensor = self.norms.double().square_() @ self.owner  # steps x tensors
            return per_tensor.sum(1).sqrt_(), per_tensor.mean(0).sqrt_()
        mean_squares = torch.stack([s.sum() for s in self.squares.split(self.padded)])
        self.squares.zero_()
        return self.totals.float(), (mean_squares / self.steps).sqrt().float()


class TensorGrads:
    """Per-tensor norms of whatever .grad tensors autograd produced; a missing one counts 0."""

    def __init__(self, params: list[torch.Tensor], steps_per_epoch: int):
        self.params, self.steps = params, steps_per_epoch
        self.kept: list[torch.Tensor] = []

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def after_backward(self, i: int, want_total: bool) -> torch.Tensor | None:
        norms = self._norms()
        self.kept.extend(norms)
        return torch.linalg.vector_norm(torch.stack(norms)) if want_total else None

    def _norms(self) -> list[torch.Tensor]:
        grads = [p.grad for p in self.params]
        try:
            return torch._foreach_norm(grads, 2.0)
        except TypeError:  # a None among them: rare, so it is not checked for on every step
            return torch._foreach_norm([torch.zeros_like(p) if g is None else g
                                        for p, g in zip(self.params, grads, strict=True)], 2.0)

    def end_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        norms = torch.stack(self.kept).float().view(self.steps, len(self.params))
        self.kept = []
        return norms.norm(dim=1), norms.square().mean(0).sqrt()


def grad_stats(params: list[torch.Tensor], steps_per_epoch: int,
               every_param_used: bool) -> FlatGrads | TensorGrads:
    """The cheaper of the two that keeps the optimizer's semantics for this model."""
    if every_param_used and FlatGrads.fits(params):
        return FlatGrads(params, steps_per_epoch)
    return TensorGrads(params, steps_per_epoch)
