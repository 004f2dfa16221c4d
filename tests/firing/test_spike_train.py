"""Spike-train execution: the network on real binary spikes equals integer mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spike2former
from spike2former import Spike2Former, build_model
from spike2former.firing import FiringRateMonitor, SpikeTrain
from spike2former.firing.spike_train import to_spike_train
from spike2former.modeling.fusion import optimize_for_inference
from spike2former.modeling.neuron import SpikingNeuron
from spike2former.modeling.spike2former import combine_masks
from spike2former.presets import get_preset
from tests.golden_fixture import needs_fixture
from tests.helpers import randomize_, small_config

F64_ATOL = 1e-9


def _stages(out: dict) -> list[dict]:
    return [*out["aux"], out]


@needs_fixture
def test_fixture_float64_equals_the_official_outputs(
    fixture_model: Spike2Former, golden: dict
) -> None:
    images = golden["input"].double()
    with spike2former.spike_train_mode(fixture_model) as counts, torch.no_grad():
        out = fixture_model(images, return_aux=True)
    seg_logits = combine_masks(out["class_logits"], out["mask_logits"], images.shape[-2:])
    for s, stage in enumerate(_stages(out)):
        expected_cls = golden["all_cls_scores_f64"][s]
        expected_masks = golden["all_mask_preds_f64"][s]
        assert (stage["class_logits"] - expected_cls).abs().max() <= F64_ATOL
        assert (stage["mask_logits"] - expected_masks).abs().max() <= F64_ATOL
    assert type(seg_logits) is torch.Tensor
    assert (seg_logits - golden["seg_logits_f64"]).abs().max() <= F64_ATOL
    assert torch.equal(seg_logits.argmax(1), golden["seg_map_f64"])
    assert len(counts.spikes) == 298


@pytest.fixture(scope="module")
def tiny() -> Spike2Former:
    return randomize_(build_model(get_preset("tiny")), seed=3).double().eval()


def test_tiny_preset_equals_integer_mode_and_counts_are_binary(tiny: Spike2Former) -> None:
    images = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(0)).double()
    with FiringRateMonitor(tiny) as integer, torch.no_grad():
        expected = tiny(images, return_aux=True)
    with (
        FiringRateMonitor(tiny) as binary,
        spike2former.spike_train_mode(tiny) as counts,
        torch.no_grad(),
    ):
        actual = tiny(images, return_aux=True)
    for want, got in zip(_stages(expected), _stages(actual), strict=True):
        for key in ("class_logits", "mask_logits"):
            assert (got[key] - want[key]).abs().max() <= F64_ATOL
            assert want[key].std() > 0.1  # spikes really fired: outputs are not flat
    # the same integer spikes in every layer, and the binary planes hold exactly those spikes
    assert integer.records() == binary.records()
    layers = integer.records()
    assert counts.spikes == {layer.name: layer.spikes for layer in layers}
    assert counts.outputs == {layer.name: layer.outputs for layer in layers}
    assert 0.05 < sum(layer.spikes for layer in layers) / sum(layer.slots for layer in layers)


def test_fused_sdtv2_network_equals_integer_mode() -> None:
    """The inference rewrites (BN folding, k^T v first, late mask projection, zero-padded
    re-parameterised convs of SDT-V2) also run on binary spikes."""
    model = randomize_(build_model(small_config({"version": "sdtv2"})), seed=1).double().eval()
    fast = optimize_for_inference(model)
    images = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        expected = fast.semantic_logits(images)
        with spike2former.spike_train_mode(fast):
            actual = fast.semantic_logits(images)
    assert (actual - expected).abs().max() <= F64_ATOL


def test_spike_train_tensor() -> None:
    output = torch.tensor([[0.0, 0.5, 2.0], [4.0, 1.5, 3.5]])  # values k * 4 / 8
    train = to_spike_train(output, levels=8, scale=4.0)
    assert isinstance(train, SpikeTrain) and train.unit == 0.5 and train.levels == 8
    assert train.planes.shape == (8, 2, 3)
    assert set(train.planes.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(train.planes.sum(0), output * 2)  # k ones per output
    assert torch.equal(train.planes[:, 1, 0], torch.ones(8))  # k = 8: every step
    assert torch.equal(train.planes[:, 0, 2], torch.tensor([1.0] * 4 + [0.0] * 4))  # first k
    assert torch.equal(train.as_subclass(torch.Tensor), output)

    moved = train.t().reshape(6)  # rearrangements keep the planes
    assert isinstance(moved, SpikeTrain) and moved.planes.shape == (8, 6)
    assert torch.equal(moved.as_subclass(torch.Tensor), output.t().reshape(6))
    padded = F.pad(train, [1, 1])
    assert isinstance(padded, SpikeTrain)
    assert not isinstance(F.pad(train, [1, 1], value=2.0), SpikeTrain)

    weight, bias = torch.randn(4, 3).double(), torch.randn(4).double()
    exact = F.linear(output.double(), weight, bias)
    assert torch.allclose(F.linear(train.double(), weight, bias), exact, atol=1e-12)
    assert torch.allclose(train.double() @ weight.T, output.double() @ weight.T, atol=1e-12)
    summed = train + 1  # anything else sees the value
    assert type(summed) is torch.Tensor and torch.equal(summed, output + 1)
    with pytest.raises(RuntimeError, match="in-place"):
        train.add_(1)
    with pytest.raises(RuntimeError, match="in-place"):
        train[0] = 1.0


def test_needs_no_grad_and_integer_neurons() -> None:
    net = nn.Sequential(nn.Linear(3, 3), SpikingNeuron(4), nn.Linear(3, 2))
    with spike2former.spike_train_mode(net), pytest.raises(RuntimeError, match="no_grad"):
        net(torch.ones(1, 3))
    net[1].quantize = False
    with spike2former.spike_train_mode(net), torch.no_grad():
        with pytest.raises(RuntimeError, match="not spiking"):
            net(torch.ones(1, 3))
    assert not net[1]._forward_hooks
