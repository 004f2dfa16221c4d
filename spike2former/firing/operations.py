"""Which torch functions move spikes around, and which multiply them.

Spike-train execution (``spike_train.py``) and the energy accounting (``energy.py``) both follow
neuron outputs through the network by the functions below: a *rearrangement* keeps a tensor of
spikes a tensor of spikes (the same values in another layout, or zero padding), a *product* is
where spikes meet weights or other activations. Everything else turns spikes into ordinary numbers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# Same elements, new layout (or new dtype/device). ``F.pad`` only counts with a zero value.
REARRANGEMENTS = frozenset(
    {
        Tensor.view,
        Tensor.view_as,
        Tensor.reshape,
        Tensor.reshape_as,
        Tensor.flatten,
        Tensor.unflatten,
        Tensor.transpose,
        Tensor.permute,
        Tensor.contiguous,
        Tensor.expand,
        Tensor.expand_as,
        Tensor.unsqueeze,
        Tensor.squeeze,
        Tensor.movedim,
        Tensor.swapaxes,
        Tensor.t,
        Tensor.narrow,
        Tensor.select,
        Tensor.split,
        Tensor.chunk,
        Tensor.unbind,
        Tensor.__getitem__,
        Tensor.repeat,
        Tensor.clone,
        Tensor.detach,
        Tensor.to,
        Tensor.double,
        Tensor.float,
        Tensor.half,
        Tensor.bfloat16,
        Tensor.cpu,
        Tensor.cuda,
        torch.reshape,
        torch.flatten,
        torch.transpose,
        torch.permute,
        torch.unsqueeze,
        torch.squeeze,
        torch.movedim,
        torch.swapaxes,
        torch.t,
        torch.narrow,
        torch.select,
        torch.split,
        torch.chunk,
        torch.unbind,
        torch.clone,
        F.pad,
    }
)

# Convolutions and linear layers: (input, weight, bias, ...).
WEIGHTED = frozenset({F.conv1d, F.conv2d, F.conv3d, F.linear})
# Products of two activations (either may be spikes).
MATRIX_PRODUCTS = frozenset(
    {
        torch.matmul,
        Tensor.matmul,
        Tensor.__matmul__,
        Tensor.__rmatmul__,
        torch.bmm,
        Tensor.bmm,
        torch.mm,
        Tensor.mm,
        torch.einsum,
    }
)
ELEMENTWISE_PRODUCTS = frozenset({torch.mul, Tensor.mul, Tensor.__mul__, Tensor.__rmul__})
PRODUCTS = WEIGHTED | MATRIX_PRODUCTS | ELEMENTWISE_PRODUCTS


def is_rearrangement(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether ``func(*args, **kwargs)`` only moves (or zero-pads) the elements of its input."""
    if func not in REARRANGEMENTS:
        return False
    if func is F.pad:
        mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
        value = args[3] if len(args) > 3 else kwargs.get("value")
        return mode == "constant" and not value
    return True


def op_name(func: Any) -> str:
    """A short name for reports: ``conv2d``, ``linear``, ``matmul``, ``einsum``, ``mul``..."""
    name = getattr(func, "__name__", str(func)).strip("_")
    return {"rmatmul": "matmul", "rmul": "mul"}.get(name, name)
