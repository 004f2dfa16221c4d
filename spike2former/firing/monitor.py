"""Per-layer firing statistics of the spiking neurons, observed while the model runs.

A neuron with D levels emits an integer count k in [0, D] per output: k binary spikes over D
virtual time steps. The official tool (``tools/cal_firing_num.py``) reports the mean of k per
neuron layer; this monitor reports the same ``mean_count`` together with the per-virtual-step
``rate`` = mean_count / D and the fractions of silent (k = 0) and saturated (k = D) outputs.
Statistics are exact integer sums over every forward run inside the context, so two forwards give
the same numbers as one forward on both inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..modeling.neuron import SpikingNeuron
from .parts import PARTS, network_part, part_order


@dataclass(frozen=True)
class LayerFiring:
    """Firing statistics of one neuron layer (or, with ``name`` a part, of several).

    ``outputs`` neuron outputs were observed; together they emitted ``spikes`` binary spikes
    (the sum of their counts k); ``zeros`` had k = 0 and ``saturated`` k = D. ``slots`` is the
    number of virtual time steps available to them (outputs x D).
    """

    name: str
    levels: int
    scale: float
    outputs: int
    spikes: int
    zeros: int
    saturated: int
    slots: int

    @property
    def part(self) -> str:
        """The network part of the layer (a pooled record is named after its part)."""
        return self.name if self.name in PARTS else network_part(self.name)

    @property
    def mean_count(self) -> float:
        """Mean integer spike count per output, in [0, D] (the official definition)."""
        return self.spikes / self.outputs if self.outputs else 0.0

    @property
    def rate(self) -> float:
        """Spikes per output per virtual time step, in [0, 1] (spikes / slots)."""
        return self.spikes / self.slots if self.slots else 0.0

    @property
    def zero_frac(self) -> float:
        return self.zeros / self.outputs if self.outputs else 0.0

    @property
    def sat_frac(self) -> float:
        return self.saturated / self.outputs if self.outputs else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "part": self.part,
            "D": self.levels,
            "scale": self.scale,
            "outputs": self.outputs,
            "spikes": self.spikes,
            "mean_count": self.mean_count,
            "rate": self.rate,
            "zero_frac": self.zero_frac,
            "sat_frac": self.sat_frac,
        }


def pooled(name: str, layers: Iterable[LayerFiring]) -> LayerFiring:
    """Several layers' statistics taken together (D and scale 0 where the layers differ)."""
    layers = list(layers)
    levels = {layer.levels for layer in layers}
    scales = {layer.scale for layer in layers}
    return LayerFiring(
        name=name,
        levels=levels.pop() if len(levels) == 1 else 0,
        scale=scales.pop() if len(scales) == 1 else 0.0,
        outputs=sum(layer.outputs for layer in layers),
        spikes=sum(layer.spikes for layer in layers),
        zeros=sum(layer.zeros for layer in layers),
        saturated=sum(layer.saturated for layer in layers),
        slots=sum(layer.slots for layer in layers),
    )


def by_part(layers: Iterable[LayerFiring]) -> list[LayerFiring]:
    """One pooled record per network part (named after the part), in network order."""
    groups: dict[str, list[LayerFiring]] = {}
    for layer in layers:
        groups.setdefault(layer.part, []).append(layer)
    return [pooled(part, groups[part]) for part in sorted(groups, key=part_order)]


class FiringRateMonitor:
    """Observes every ``SpikingNeuron`` of ``model`` while the context is active.

    ``records()`` gives one ``LayerFiring`` per neuron layer that ran, named by its dotted module
    name (the official names, e.g. ``backbone.block3.0.attn.q_spike``), in the order the layers
    first ran. Statistics accumulate over every forward inside the context and over re-entries;
    ``reset()`` clears them.

    Example::

        with FiringRateMonitor(model) as monitor, torch.no_grad():
            model(images, return_aux=True)
        for layer in monitor.records():
            print(layer.name, layer.mean_count, layer.rate)
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._neurons = {
            name: module
            for name, module in model.named_modules()
            if isinstance(module, SpikingNeuron)
        }
        self._stats: dict[str, list[int]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FiringRateMonitor:
        if self._handles:
            raise RuntimeError("this FiringRateMonitor is already active")
        for name, neuron in self._neurons.items():
            self._handles.append(neuron.register_forward_hook(self._observer(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def reset(self) -> None:
        self._stats.clear()

    def _observer(self, name: str):  # noqa: ANN202 - a forward hook
        def observe(neuron: SpikingNeuron, inputs: tuple, output: Tensor) -> None:
            with torch.no_grad():
                counts = torch.round(neuron.count(output))
                levels = neuron.levels
                stats = self._stats.setdefault(name, [0, 0, 0, 0])
                stats[0] += counts.numel()
                stats[1] += int(counts.sum(dtype=torch.float64).item())
                stats[2] += int((counts == 0).sum().item())
                stats[3] += int((counts == levels).sum().item())

        return observe

    def records(self) -> list[LayerFiring]:
        """Statistics per neuron layer that ran, in the order the layers first ran."""
        records = []
        for name, (outputs, spikes, zeros, saturated) in self._stats.items():
            neuron = self._neurons[name]
            records.append(
                LayerFiring(
                    name=name,
                    levels=neuron.levels,
                    scale=neuron.scale,
                    outputs=outputs,
                    spikes=spikes,
                    zeros=zeros,
                    saturated=saturated,
                    slots=outputs * neuron.levels,
                )
            )
        return records
