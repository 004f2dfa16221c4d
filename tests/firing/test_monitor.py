"""``FiringRateMonitor``: the official per-layer firing table of the golden fixture, exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spike2former import Spike2Former
from spike2former.firing import FiringRateMonitor, LayerFiring
from spike2former.firing.monitor import by_part, pooled
from spike2former.firing.parts import PARTS, network_part
from spike2former.modeling.neuron import SpikingNeuron
from tests.golden_fixture import needs_fixture


def _measure(model: nn.Module, *batches: torch.Tensor) -> list[LayerFiring]:
    with FiringRateMonitor(model) as monitor, torch.no_grad():
        for batch in batches:
            model(batch, return_aux=True)
    return monitor.records()


@needs_fixture
def test_fixture_firing_table_every_layer(
    fixture_model: Spike2Former, golden: dict, official_firing: dict[str, dict]
) -> None:
    """Every one of the 298 official layers, float64: counts exactly, statistics to 1e-12."""
    records = {r.name: r for r in _measure(fixture_model, golden["input"].double())}
    assert set(records) == set(official_firing)
    assert "decode_head.pixel_decoder.encoder_in_proj_spike" not in records
    for name, official in official_firing.items():
        layer = records[name]
        numel = official["numel"]
        assert layer.levels == official["D"], name
        assert layer.scale == official["output_multiplier_applied_by_caller"], name
        assert layer.outputs == numel, name
        assert layer.spikes == round(official["mean_int_count"] * numel), name
        assert layer.zeros == round(official["zero_frac"] * numel), name
        assert layer.saturated == round(official["sat_frac"] * numel), name
        assert layer.mean_count == pytest.approx(official["mean_int_count"], abs=1e-12), name
        assert layer.rate == pytest.approx(official["rate"], abs=1e-12), name
        assert layer.zero_frac == pytest.approx(official["zero_frac"], abs=1e-12), name
        assert layer.sat_frac == pytest.approx(official["sat_frac"], abs=1e-12), name


@needs_fixture
def test_two_forwards_accumulate_to_the_combined_statistics(
    fixture_model: Spike2Former, golden: dict
) -> None:
    images = golden["input"].double()
    together = _measure(fixture_model, images)
    apart = _measure(fixture_model, images[:1], images[1:])
    assert together == apart  # same names, order and integer sums


@needs_fixture
def test_records_are_in_execution_order_and_grouped_by_part(
    fixture_model: Spike2Former, golden: dict
) -> None:
    records = _measure(fixture_model, golden["input"].double()[:1])
    assert records[0].name == "backbone.ConvBlock1_1.0.Conv.spike1"
    assert records[-1].name == "decode_head.mask_embed_spike"
    parts = [r.part for r in records]
    assert [p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1]] == list(PARTS)
    groups = by_part(records)
    assert [g.name for g in groups] == list(PARTS)
    total = pooled("total", records)
    assert sum(g.spikes for g in groups) == total.spikes
    assert sum(g.outputs for g in groups) == total.outputs
    assert total.rate == pytest.approx(
        sum(r.spikes for r in records) / sum(r.outputs * r.levels for r in records)
    )


def test_hand_counted_layer() -> None:
    """Counts, zeros and saturation of a known input, with an output multiplier of 4."""
    net = nn.Sequential(SpikingNeuron(8, scale=4.0))
    x = torch.tensor([-1.0, 0.4, 0.5, 1.5, 2.6, 7.9, 8.0, 30.0])  # k = 0 0 0 2 3 8 8 8
    with FiringRateMonitor(net) as monitor:
        out = net(x)
    assert torch.equal(out, torch.tensor([0, 0, 0, 2, 3, 8, 8, 8]) * 0.5)
    [layer] = monitor.records()
    assert (layer.name, layer.levels, layer.scale) == ("0", 8, 4.0)
    assert (layer.outputs, layer.spikes, layer.zeros, layer.saturated) == (8, 29, 3, 3)
    assert layer.mean_count == 29 / 8 and layer.rate == 29 / 64
    assert layer.part == network_part("0") == "other"


def test_hooks_are_removed_and_statistics_kept() -> None:
    neuron = SpikingNeuron(4)
    monitor = FiringRateMonitor(neuron)
    with monitor:
        neuron(torch.ones(3))
    neuron(torch.ones(5))  # outside the context: not observed
    assert [r.outputs for r in monitor.records()] == [3]
    with monitor:  # re-entering accumulates
        neuron(torch.ones(2))
    assert [r.outputs for r in monitor.records()] == [5]
    monitor.reset()
    assert monitor.records() == []
    assert not neuron._forward_hooks


def test_part_names() -> None:
    assert network_part("backbone.downsample1_1.encode_conv") == "backbone stage 1"
    assert network_part("backbone.ConvBlock1_2.0.spike1") == "backbone stage 1"
    assert network_part("backbone.ConvBlock2_2.0.Conv.spike3") == "backbone stage 2"
    assert network_part("backbone.block3.5.attn.q_spike") == "backbone stage 3"
    assert network_part("backbone.downsample4.encode_spike") == "backbone stage 4"
    assert network_part("decode_head.pixel_decoder.encoder.layers.0.dcn") == "pixel decoder"
    assert network_part("decode_head.transformer_decoder.layers.1.ffn") == "transformer decoder"
    assert network_part("decode_head.mask_embed.spike1") == "mask embedding"
    assert network_part("decode_head") == "mask embedding"
