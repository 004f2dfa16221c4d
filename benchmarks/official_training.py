"""The official training computation, for side-by-side measurements and reference gradients.

The official neuron (``Qtrick``'s ``quant`` / ``Multispike_norm`` autograd functions) saves its
float input for backward and tests the [0, D] range there. ``official_neurons()`` makes every
s2f neuron do the same; with ``spike2former.training.lean.OFFICIAL`` (per-stage mask maps from
the full projection, ``(q k^T) v`` attention, every upsampled mask kept for the loss's backward)
a training step then computes and keeps what the official code does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from spike2former.modeling import neuron


class OfficialSpike(torch.autograd.Function):
    """``round(clamp(x, 0, D)) / D * scale``; saves ``x``; ``scale / D`` inside [0, D]."""

    @staticmethod
    def forward(ctx, x: Tensor, levels: int, scale: float) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.levels, ctx.scale = levels, scale
        out = torch.round(torch.clamp(x, 0, levels)) / levels
        no_codes = x.new_empty(0, dtype=torch.uint8)
        ctx.mark_non_differentiable(no_codes)
        return (out * scale if scale != 1.0 else out), no_codes

    @staticmethod
    def backward(ctx, grad: Tensor, _: Tensor | None) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if ctx.scale != 1.0:
            grad = grad * ctx.scale
        inside = (x >= 0) & (x <= ctx.levels)
        return grad * inside.to(grad.dtype) / ctx.levels, None, None


@contextmanager
def official_neurons() -> Iterator[None]:
    """Every neuron recorded for autograd inside this block is the official one."""
    lean = neuron._NormalizedIntegerSpike
    neuron._NormalizedIntegerSpike = OfficialSpike  # type: ignore[misc]
    try:
        yield
    finally:
        neuron._NormalizedIntegerSpike = lean  # type: ignore[misc]
