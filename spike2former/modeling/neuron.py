"""The normalized-integer spiking neuron (NI-LIF).

At every location the official network calls a neuron exactly once per forward, starting from a
zero membrane, so the neuron is the stateless quantiser ``round(clamp(x, 0, D)) / D``: an integer
count k in [0, D] emitted as k binary spikes over D virtual time steps, with the 1/D folded into
the next layer. Training uses a straight-through gradient of 1/D on the closed interval [0, D].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .saved_spikes import register_spikes

# A saved spike code: the count k in bits 0-3 (D <= 15) and "input inside [0, D]" in bit 4.
INSIDE_SHIFT = 4
INSIDE_BIT = 1 << INSIDE_SHIFT
MAX_LEVELS = INSIDE_BIT - 1


class _NormalizedIntegerSpike(torch.autograd.Function):
    """``round(clamp(x, 0, D)) / D * scale`` forward (round half to even), ``scale / D`` inside
    [0, D] backward (``grad * scale * inside / D``, as the official neuron computes it).

    Returns the output and its codes ``k + 16 * (0 <= x <= D)``, one byte per element, which is
    all that backward keeps (not the float input): the count and whether the input was inside
    [0, D] are all the straight-through gradient and any layer that saves the spikes need.
    Under ``saved_spikes.compact_saved_spikes`` the output is registered with its codes, so such
    layers keep the same byte instead of a float copy.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, levels: int, scale: float
    ) -> tuple[Tensor, Tensor]:
        clamped = torch.clamp(x, 0, levels)
        inside = clamped == x  # False for NaN, as the comparisons of the reference are
        counts = clamped.round_()
        codes = counts.to(torch.uint8).add_(inside, alpha=INSIDE_BIT)
        out = counts.div_(levels)  # in place: one map-sized buffer fewer per neuron
        if scale != 1.0:
            out = out.mul_(scale)
        ctx.save_for_backward(codes)
        ctx.mark_non_differentiable(codes)
        ctx.levels, ctx.scale = levels, scale
        return out, codes

    @staticmethod
    def backward(  # type: ignore[override]
        ctx, grad: Tensor, _: Tensor | None
    ) -> tuple[Tensor, None, None]:
        (codes,) = ctx.saved_tensors
        if ctx.scale != 1.0:
            grad = grad * ctx.scale
        # Times the in-range bit (0 or 1) as a number: masking with a boolean tensor instead
        # (masked_fill, where) takes several times as long on CPUs for the same values.
        inside = codes >> INSIDE_SHIFT
        return grad.mul(inside).div_(ctx.levels), None, None


def spike(x: Tensor, levels: int, overwrite: bool = False, scale: float = 1.0) -> Tensor:
    """Quantise ``x`` to the normalised integer spike count ``k / levels`` (times ``scale``).

    ``overwrite`` lets inference write the spikes over ``x`` itself (ignored when autograd
    records): for inputs nothing else reads, it saves allocating and filling a new buffer.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        if levels > MAX_LEVELS:
            raise ValueError(f"spike levels above {MAX_LEVELS} are not supported, got {levels}")
        out, codes = _NormalizedIntegerSpike.apply(x, levels, scale)
        register_spikes(out, codes, levels, scale)
        return out
    # Inference: the same arithmetic in place on one buffer (no autograd bookkeeping).
    out = x.clamp_(0, levels) if overwrite else torch.clamp(x, 0, levels)
    out = out.round_().div_(levels)
    return out.mul_(scale) if scale != 1.0 else out


class SpikingNeuron(nn.Module):
    """NI-LIF neuron with D = ``levels`` and an optional output multiplier.

    ``scale`` is the constant the official head multiplies some spikes by (the mask embedding's
    alpha = 4); it is kept inside the neuron so that every spike-producing site is one module, and
    ``count(output)`` can recover the integer spike counts for firing-rate statistics.

    ``quantize=False`` turns the neuron into its real-valued counterpart ``clamp(x, 0, D) / D``
    (the same network run as a conventional, non-spiking one).

    ``overwrites_input`` (set by ``optimize_for_inference`` where the input is a temporary that
    nothing else reads, listed by each module's ``temporary_input_neurons``) spikes in place.
    """

    def __init__(self, levels: int, scale: float = 1.0) -> None:
        super().__init__()
        self.levels = int(levels)
        self.scale = float(scale)
        self.quantize = True
        self.overwrites_input = False

    def forward(self, x: Tensor) -> Tensor:
        if self.quantize:
            return spike(x, self.levels, self.overwrites_input, self.scale)
        out = torch.clamp(x, 0, self.levels) / self.levels
        return out * self.scale if self.scale != 1.0 else out

    def count(self, output: Tensor) -> Tensor:
        """Integer spike counts k in [0, D] behind an output of this neuron."""
        return output * (self.levels / self.scale)

    def extra_repr(self) -> str:
        scale = f", scale={self.scale:g}" if self.scale != 1.0 else ""
        return f"levels={self.levels}{scale}"


def set_spiking(network: nn.Module, enabled: bool) -> None:
    """Switch every neuron of ``network`` between integer spikes and its real-valued (clamped)
    counterpart."""
    for module in network.modules():
        if isinstance(module, SpikingNeuron):
            module.quantize = enabled
