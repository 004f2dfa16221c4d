"""The normalized-integer spiking neuron (NI-LIF).

At every location the official network calls a neuron exactly once per forward, starting from a
zero membrane, so the neuron is the stateless quantiser ``round(clamp(x, 0, D)) / D``: an integer
count k in [0, D] emitted as k binary spikes over D virtual time steps, with the 1/D folded into
the next layer. Training uses a straight-through gradient of 1/D on the closed interval [0, D].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _NormalizedIntegerSpike(torch.autograd.Function):
    """round(clamp(x, 0, D)) / D forward (round half to even), 1/D inside [0, D] backward."""

    @staticmethod
    def forward(ctx, x: Tensor, levels: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.levels = levels
        return torch.round(torch.clamp(x, 0, levels)) / levels

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        inside = (x >= 0) & (x <= ctx.levels)
        return grad * inside.to(grad.dtype) / ctx.levels, None


def spike(x: Tensor, levels: int, overwrite: bool = False) -> Tensor:
    """Quantise ``x`` to the normalised integer spike count ``k / levels``.

    ``overwrite`` lets inference write the spikes over ``x`` itself (ignored when autograd
    records): for inputs nothing else reads, it saves allocating and filling a new buffer.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _NormalizedIntegerSpike.apply(x, levels)
    # Inference: the same arithmetic in place on one buffer (no autograd bookkeeping).
    out = x.clamp_(0, levels) if overwrite else torch.clamp(x, 0, levels)
    return out.round_().div_(levels)


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
            out = spike(x, self.levels, self.overwrites_input)
        else:
            out = torch.clamp(x, 0, self.levels) / self.levels
        return out * self.scale if self.scale != 1.0 else out

    def count(self, output: Tensor) -> Tensor:
        """Integer spike counts k in [0, D] behind an output of this neuron."""
        return output * (self.levels / self.scale)

    def extra_repr(self) -> str:
        scale = f", scale={self.scale:g}" if self.scale != 1.0 else ""
        return f"levels={self.levels}{scale}"
