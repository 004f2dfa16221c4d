"""What a firing run has summed over its images: per-layer spike counts and per-operation costs.

Counts are Python integers and the synaptic operations (the only floating sums) are
``ExactSum``s, so the totals of a set of images are the same however the images were ordered or
split between processes. Layers and operations keep the order they first ran in, as the monitor
and the meter list them; each entry remembers the image it first appeared at, so that ``merged``
can restore the order one process measuring every image in input order would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from .energy import EnergyConstants, EnergyReport, OperationCost
from .exact_sum import ExactSum
from .monitor import LayerFiring, pooled

# module, op, rule, spike_input: an operation site of ``OperationCost``
OperationKey = tuple[str, str, str, str]
K = TypeVar("K")
E = TypeVar("E", "_LayerSum", "_CostSum")


@dataclass(frozen=True)
class _LayerSum:
    first: int  # the image the layer first ran at
    firing: LayerFiring

    def plus(self, other: _LayerSum) -> _LayerSum:
        both = pooled(self.firing.name, [self.firing, other.firing])
        return _LayerSum(min(self.first, other.first), both)


@dataclass(frozen=True)
class _CostSum:
    first: int  # the image the operation first ran at
    macs: int = 0
    sops: ExactSum = field(default_factory=ExactSum)

    def plus(self, other: _CostSum) -> _CostSum:
        first = min(self.first, other.first)
        return _CostSum(first, self.macs + other.macs, self.sops.plus(other.sops))


@dataclass
class FiringTotals:
    """Sums over ``images`` images, each added with ``add``."""

    images: int = 0
    layers: dict[str, _LayerSum] = field(default_factory=dict)
    costs: dict[OperationKey, _CostSum] = field(default_factory=dict)

    def add(self, layers: list[LayerFiring], energy: EnergyReport | None) -> None:
        """One image's layer statistics (``FiringRateMonitor.records``) and, when measured, its
        operation costs (``EnergyMeter.report`` of that image alone)."""
        image = self.images
        for layer in layers:
            entry = _LayerSum(image, layer)
            known = self.layers.get(layer.name)
            self.layers[layer.name] = entry if known is None else known.plus(entry)
        for op in energy.operations if energy is not None else ():
            key = (op.module, op.op, op.rule, op.spike_input)
            known_cost = self.costs.get(key) or _CostSum(image)
            sops = known_cost.sops.plus(ExactSum([op.sops]))
            self.costs[key] = replace(known_cost, macs=known_cost.macs + op.macs, sops=sops)
        self.images += 1

    def layer_records(self) -> list[LayerFiring]:
        return [entry.firing for entry in self.layers.values()]

    def energy_report(self, constants: EnergyConstants) -> EnergyReport:
        operations = tuple(
            OperationCost(*key, entry.macs, entry.sops.value) for key, entry in self.costs.items()
        )
        return EnergyReport(operations, self.images, constants)

    @classmethod
    def merged(cls, parts: Sequence[tuple[FiringTotals, Sequence[int]]]) -> FiringTotals:
        """The totals of several processes as one: ``parts`` pairs each process's totals with
        the position, among all images in input order, of each of its images."""
        total = cls(images=sum(totals.images for totals, _ in parts))
        total.layers = _merged([(t.layers, positions) for t, positions in parts], _LayerSum.plus)
        total.costs = _merged([(t.costs, positions) for t, positions in parts], _CostSum.plus)
        return total


def _merged(
    tables: Sequence[tuple[dict[K, E], Sequence[int]]], combine: Callable[[E, E], E]
) -> dict[K, E]:
    """Entries summed by key and ordered by (first image in input order, order within it).

    Within one table, entries are in first-seen order; the entries that first appeared at a
    given image all come from the one process that measured it, so their order there is the order
    that image's forward ran them in.
    """
    found: dict[K, tuple[tuple[int, int], E]] = {}
    for table, positions in tables:
        for rank, (key, entry) in enumerate(table.items()):
            entry = replace(entry, first=positions[entry.first])
            stamp = (entry.first, rank)
            if key in found:
                earlier, known = found[key]
                found[key] = (min(earlier, stamp), combine(known, entry))
            else:
                found[key] = (stamp, entry)
    ordered = sorted(found.items(), key=lambda item: item[1][0])
    return {key: entry for key, (_, entry) in ordered}
