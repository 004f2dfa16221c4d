"""Spike-train execution: every integer activation really travels as binary spikes.

At inference a neuron's integer count k in [0, D] stands for k binary spikes over D virtual time
steps, with the 1/D normalisation (and the mask embedding's x4) folded into the next layer's
weights (architecture notes, section 2.5). Under ``spike_train_mode(model)`` every neuron output
is a ``SpikeTrain``: a tensor that carries its D binary planes (plane t holds 1 where k > t, the
encoding of the official ``expand_with_binary_sequence``). Layers fed by spikes then run once per
plane on 0/1 inputs and accumulate the D results; no module changes.

- Convolutions and linear layers: ``sum_t f(plane_t) * (scale / D) + bias``.
- Products of activations (attention ``q k^T``, ``(q k^T) v``, the mask product, the DCN
  modulation): the first spike operand runs plane by plane; a second spike operand enters as its
  integer counts (``k * scale / D``, summed from its planes), as a spike-driven chip would hold it
  in an accumulator.
- Rearrangements (view, reshape, transpose, permute, zero padding, indexing, ...) act on every
  plane and give a spike train again.
- Anything else (additions, clamps, sigmoid, ...) sees the value ``sum_t plane_t * scale / D``.

In float64 the results equal integer mode up to summation order (about 1e-12 on the fixture);
the binary spike counts (number of ones per layer) are collected in ``BinarySpikeCounts``. It is a
verification mode: D times the activation memory and slow, inference only (``torch.no_grad``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..modeling.neuron import SpikingNeuron
from .operations import PRODUCTS, WEIGHTED, is_rearrangement

_IN_PLACE_DUNDERS = frozenset(
    f"__{op}__"
    for op in (
        "setitem",
        "iadd",
        "isub",
        "imul",
        "imatmul",
        "itruediv",
        "ifloordiv",
        "imod",
        "ipow",
        "iand",
        "ior",
        "ixor",
        "ilshift",
        "irshift",
    )
)


class SpikeTrain(Tensor):
    """A neuron output as D binary planes ``planes [D, *shape]`` (0/1) worth ``unit`` each.

    The tensor's own value is ``planes.sum(0) * unit``, what every non-spike operation sees.
    """

    planes: Tensor
    unit: float

    @staticmethod
    def __new__(cls, planes: Tensor, unit: float) -> SpikeTrain:
        with torch._C.DisableTorchFunctionSubclass():
            value = planes.sum(0) * unit
        train = Tensor._make_subclass(cls, value)
        train.planes = planes
        train.unit = unit
        return train

    @property
    def levels(self) -> int:
        """D, the number of virtual time steps."""
        return self.planes.shape[0]

    @classmethod
    def __torch_function__(
        cls, func: Any, types: tuple, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _IN_PLACE_DUNDERS or (name.endswith("_") and not name.startswith("__")):
            raise RuntimeError(f"in-place {name} on a spike train would desynchronise its planes")
        with torch._C.DisableTorchFunctionSubclass():
            if func in PRODUCTS:
                return _accumulate_over_planes(func, args, kwargs)
            if is_rearrangement(func, args, kwargs):
                return _rearrange_planes(func, args, kwargs)
            leaves, spec = tree_flatten((args, kwargs))
            args, kwargs = tree_unflatten([_value(leaf) for leaf in leaves], spec)
            return func(*args, **kwargs)


def _value(leaf: Any) -> Any:
    return leaf.as_subclass(Tensor) if isinstance(leaf, SpikeTrain) else leaf


def _with_plane(leaves: list, driver: int, t: int) -> list:
    """The leaves with the driving spike train replaced by its plane ``t`` and any other spike
    train by its value."""
    return [leaves[driver].planes[t] if i == driver else _value(x) for i, x in enumerate(leaves)]


def _accumulate_over_planes(func: Any, args: tuple, kwargs: dict) -> Tensor:
    """A product with a spike operand, run on its binary planes and accumulated."""
    if func in WEIGHTED:
        return _weighted_layer(func, args, kwargs)
    leaves, spec = tree_flatten((args, kwargs))
    driver = next(i for i, leaf in enumerate(leaves) if isinstance(leaf, SpikeTrain))
    train = leaves[driver]
    total = None
    for t in range(train.levels):
        plane_args, plane_kwargs = tree_unflatten(_with_plane(leaves, driver, t), spec)
        out = func(*plane_args, **plane_kwargs)
        total = out if total is None else total + out
    return total * train.unit


def _weighted_layer(func: Any, args: tuple, kwargs: dict) -> Tensor:
    """``sum_t layer(plane_t) * unit + bias`` for a convolution or linear layer fed by spikes,
    with the D planes run as one batch."""
    train, weight, *rest = args
    bias = rest[0] if rest else kwargs.get("bias")
    rest = rest[1:]
    kwargs = {k: v for k, v in kwargs.items() if k != "bias"}
    if not isinstance(train, SpikeTrain) or isinstance(weight, SpikeTrain):
        raise NotImplementedError(f"{func.__name__} with spike-train weights")
    planes = train.planes
    if func is torch.nn.functional.linear:
        out = func(planes, weight, None, *rest, **kwargs).sum(0)
    else:
        batched = planes.flatten(0, 1) if planes.dim() == weight.dim() + 1 else planes
        out = func(batched, weight, None, *rest, **kwargs)
        out = out.unflatten(0, planes.shape[:2]).sum(0) if batched is not planes else out.sum(0)
    out = out * train.unit
    if bias is None:
        return out
    shape = (-1,) if func is torch.nn.functional.linear else (-1, *[1] * (out.dim() - 2))
    return out + bias.reshape(shape)


def _rearrange_planes(func: Any, args: tuple, kwargs: dict) -> Any:
    """A layout change applied to every plane; the result is a spike train again."""
    leaves, spec = tree_flatten((args, kwargs))
    driver = next(i for i, leaf in enumerate(leaves) if isinstance(leaf, SpikeTrain))
    train = leaves[driver]
    outs = []
    for t in range(train.levels):
        plane_args, plane_kwargs = tree_unflatten(_with_plane(leaves, driver, t), spec)
        outs.append(func(*plane_args, **plane_kwargs))
    if isinstance(outs[0], Tensor):
        return SpikeTrain(torch.stack(outs), train.unit)
    if isinstance(outs[0], (tuple, list)):
        return type(outs[0])(
            SpikeTrain(torch.stack(p), train.unit) for p in zip(*outs, strict=True)
        )
    return outs[0]


@dataclass
class BinarySpikeCounts:
    """Binary spikes (ones in the planes) and outputs per neuron layer, accumulated."""

    spikes: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, spikes: int, outputs: int) -> None:
        self.spikes[name] = self.spikes.get(name, 0) + spikes
        self.outputs[name] = self.outputs.get(name, 0) + outputs

    @property
    def total(self) -> int:
        return sum(self.spikes.values())


def to_spike_train(output: Tensor, levels: int, scale: float) -> SpikeTrain:
    """A neuron output ``k * scale / D`` -> its D binary planes (k ones, first steps first)."""
    counts = torch.round(output * (levels / scale))
    steps = torch.arange(levels, device=output.device).view(-1, *[1] * output.dim())
    return SpikeTrain((counts.unsqueeze(0) > steps).to(output.dtype), scale / levels)


@contextmanager
def spike_train_mode(model: nn.Module) -> Iterator[BinarySpikeCounts]:
    """Run ``model`` on binary spike trains inside the context (see the module docstring).

    Yields the ``BinarySpikeCounts`` it fills. Needs ``torch.no_grad()`` and integer neurons.

    Example::

        with spike2former.spike_train_mode(model) as counts, torch.no_grad():
            out = model(images)
        counts.spikes["backbone.block3.0.attn.q_spike"]
    """
    counts = BinarySpikeCounts()

    def hook(name: str):  # noqa: ANN202 - a forward hook
        def emit(neuron: SpikingNeuron, inputs: tuple, output: Tensor) -> SpikeTrain:
            if torch.is_grad_enabled() and output.requires_grad:
                raise RuntimeError("spike_train_mode runs inference only: use torch.no_grad()")
            if not neuron.quantize:
                raise RuntimeError(f"{name} is not spiking (set_spiking(False)); no spike train")
            train = to_spike_train(output, neuron.levels, neuron.scale)
            counts.add(name, int(train.planes.sum(dtype=torch.float64).item()), output.numel())
            return train

        return emit

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, SpikingNeuron)
    ]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()
