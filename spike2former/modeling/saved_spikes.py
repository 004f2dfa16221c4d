"""Spikes saved for backward as one byte per element instead of a float.

A neuron's output is ``k / D * scale`` with an integer count k in [0, D], so any layer that saves
it for its backward pass (a convolution for its weight gradient, a matmul for the other
operand's) can keep the neuron's uint8 codes instead and widen them when backward asks. Inside
``compact_saved_spikes()`` every neuron output is registered with its codes, and autograd's
saved-tensor hooks swap a saved tensor for those codes whenever it is (a view of) a registered
output that has not been modified since. Widening repeats the neuron's own arithmetic, so the
unpacked values are bit-identical to the saved ones.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

COUNT_MASK = 15  # bits 0-3 of a code hold the count (bit 4 is the neuron's in-range flag)


@dataclass(frozen=True)
class _Spikes:
    """A registered neuron output: its codes, and how to turn them back into its values."""

    output: weakref.ref[Tensor]
    codes: Tensor
    levels: int
    scale: float
    version: int


@dataclass(frozen=True)
class _PackedSpikes:
    """What autograd keeps for a saved spike tensor: the codes and the saved view's geometry."""

    spikes: _Spikes
    dtype: torch.dtype
    size: torch.Size
    stride: tuple[int, ...]
    offset: int

    def widen(self) -> Tensor:
        spikes = self.spikes
        values = (spikes.codes & COUNT_MASK).to(self.dtype).div_(spikes.levels)
        if spikes.scale != 1.0:
            values = values.mul_(spikes.scale)
        return values.as_strided(self.size, self.stride, self.offset)


class SpikeRegistry:
    """Neuron outputs by storage address, for the duration of one ``compact_saved_spikes``.

    ``saved_as_codes`` counts the saved tensors that were swapped for codes.
    """

    def __init__(self) -> None:
        self._by_storage: dict[int, _Spikes] = {}
        self.saved_as_codes = 0

    def register(self, output: Tensor, codes: Tensor, levels: int, scale: float) -> None:
        if output.stride() != codes.stride() or output.storage_offset() != 0:
            return  # widening could not reproduce the layout; keep the float tensor
        key = output.untyped_storage().data_ptr()
        by_storage = self._by_storage

        def forget(_: object, key: int = key) -> None:
            entry = by_storage.get(key)
            if entry is not None and entry.output() is None:
                del by_storage[key]

        by_storage[key] = _Spikes(
            weakref.ref(output, forget), codes, levels, scale, output._version
        )

    def pack(self, tensor: Tensor) -> Tensor | _PackedSpikes:
        if tensor.layout != torch.strided or not tensor.is_floating_point():
            return tensor
        entry = self._by_storage.get(tensor.untyped_storage().data_ptr())
        if entry is None:
            return tensor
        output = entry.output()
        if output is None or output.dtype != tensor.dtype or tensor._version != entry.version:
            return tensor
        self.saved_as_codes += 1
        return _PackedSpikes(
            entry, tensor.dtype, tensor.size(), tensor.stride(), tensor.storage_offset()
        )

    @staticmethod
    def unpack(packed: Tensor | _PackedSpikes) -> Tensor:
        return packed.widen() if isinstance(packed, _PackedSpikes) else packed


_active: list[SpikeRegistry] = []


def register_spikes(output: Tensor, codes: Tensor, levels: int, scale: float) -> None:
    """Called by the neuron for every output it records for autograd."""
    if _active:
        _active[-1].register(output, codes, levels, scale)


@contextmanager
def compact_saved_spikes() -> Iterator[SpikeRegistry]:
    """Run forward passes under this to save spikes as bytes (backward may run after it)."""
    registry = SpikeRegistry()
    _active.append(registry)
    try:
        with torch.autograd.graph.saved_tensors_hooks(registry.pack, registry.unpack):
            yield registry
    finally:
        _active.pop()
