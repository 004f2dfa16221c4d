"""A firing run split into shares and merged equals one run: exact sums, input order, first-seen
order of layers and operations (``exact_sum``, ``totals``, ``shares``)."""

from __future__ import annotations

import math
import random

from spike2former.firing.energy import EnergyConstants, EnergyReport, OperationCost
from spike2former.firing.exact_sum import ExactSum
from spike2former.firing.monitor import LayerFiring
from spike2former.firing.run import FiringRun
from spike2former.firing.shares import RunShare, merge_shares
from spike2former.firing.totals import FiringTotals
from tests.helpers import make_model, random_rgb, small_config

SIZES = [(40, 56), (48, 32), (36, 60), (44, 44), (32, 48)]


def test_exact_sum_does_not_depend_on_order_or_grouping() -> None:
    rng = random.Random(0)
    terms = [rng.uniform(-1, 1) * 10 ** rng.randint(-8, 12) for _ in range(500)]
    expected = math.fsum(terms)
    assert sum(terms) != expected  # plain addition loses bits here
    for seed in range(5):
        shuffled = terms[:]
        random.Random(seed).shuffle(shuffled)
        halves = ExactSum(shuffled[::2]).plus(ExactSum(shuffled[1::2]))
        assert ExactSum(shuffled).value == expected
        assert halves.value == expected


def _layer(name: str, outputs: int, spikes: int) -> LayerFiring:
    return LayerFiring(name, 8, 1.0, outputs, spikes, outputs - spikes, 0, 8 * outputs)


def _energy(*ops: tuple[str, float]) -> EnergyReport:
    costs = tuple(
        OperationCost(module, "conv2d", "spike x weights", "n", 10, s) for module, s in ops
    )
    return EnergyReport(costs, 1)


# Per image: the layers and operations its forward runs, in order; some first run at later images.
IMAGES = [
    ([_layer("a", 10, 3), _layer("b", 5, 1)], _energy(("m1", 0.1), ("m2", 1e9))),
    ([_layer("c", 7, 2), _layer("a", 10, 4)], _energy(("m3", 0.3), ("m1", 0.2))),
    ([_layer("b", 5, 5), _layer("d", 1, 0)], _energy(("m2", 1e-9), ("m4", 0.7))),
    ([_layer("d", 2, 1), _layer("e", 3, 3)], _energy(("m5", 0.4), ("m3", 1e-7))),
]


def test_merged_totals_keep_the_order_of_one_process() -> None:
    whole = FiringTotals()
    shares = [FiringTotals(), FiringTotals()]
    for index, (layers, energy) in enumerate(IMAGES):
        whole.add(layers, energy)
        shares[index % 2].add(layers, energy)
    merged = FiringTotals.merged([(shares[0], [0, 2]), (shares[1], [1, 3])])
    assert [layer.name for layer in merged.layer_records()] == ["a", "b", "c", "d", "e"]
    assert merged.layer_records() == whole.layer_records()
    constants = EnergyConstants()
    assert merged.energy_report(constants) == whole.energy_report(constants)
    modules = [op.module for op in merged.energy_report(constants).operations]
    assert modules == ["m1", "m2", "m3", "m4", "m5"]
    assert merged.images == whole.images == 4


def test_runs_of_two_shares_merge_into_the_run_of_one() -> None:
    """Mixed sizes and a failed input, measured by one run and round robin by two."""
    model = make_model(small_config())
    whole = FiringRun(model, device="cpu", imgsz=0, energy=True)
    shares = [FiringRun(model, device="cpu", imgsz=0, energy=True) for _ in range(2)]
    inputs: list[tuple[int, int] | None] = [*SIZES[:2], None, *SIZES[2:]]
    for index, size in enumerate(inputs):
        share = shares[index % 2]
        if size is None:
            whole.fail(f"{index}.png", "empty file")
            share.fail(f"{index}.png", "empty file", index)
            continue
        image = random_rgb(*size, seed=index)
        whole.measure(image, f"{index}.png")
        share.measure(image, f"{index}.png", index)
    merged = merge_shares([share.share() for share in shares])
    assert isinstance(merged, RunShare)
    rebuilt = shares[1]
    rebuilt.records, rebuilt.totals = merged.records, merged.totals
    expected, actual = whole.to_dict("m"), rebuilt.to_dict("m")
    for document in (expected, actual):
        for record in document["images"]:
            record.pop("time_ms", None)
    assert actual == expected
    assert rebuilt.csv_text() == whole.csv_text()
    assert [r["status"] for r in actual["images"]].count("error") == 1
