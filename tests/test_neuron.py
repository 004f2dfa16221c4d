from __future__ import annotations

import pytest
import torch

from spike2former.modeling.neuron import SpikingNeuron, spike


@pytest.mark.parametrize("levels", [1, 4, 8])
def test_values_are_normalised_integers_in_range(levels: int) -> None:
    x = torch.linspace(-3, levels + 3, 1001, dtype=torch.float64)
    y = spike(x, levels)
    counts = y * levels
    assert torch.equal(counts, counts.round())
    assert counts.min() == 0 and counts.max() == levels
    expected = torch.round(torch.clamp(x, 0, levels)) / levels
    assert torch.equal(y, expected)


def test_rounds_half_to_even() -> None:
    x = torch.tensor([0.5, 1.5, 2.5, 3.5, 7.5, 8.5])
    assert torch.equal(spike(x, 8) * 8, torch.tensor([0.0, 2.0, 2.0, 4.0, 8.0, 8.0]))


def test_straight_through_gradient_on_closed_interval() -> None:
    levels = 4
    x = torch.tensor([-0.5, 0.0, 0.3, 2.5, 4.0, 4.01, 9.0], requires_grad=True)
    spike(x, levels).backward(torch.ones_like(x))
    expected = torch.tensor([0, 1, 1, 1, 1, 0, 0], dtype=torch.float32) / levels
    assert torch.equal(x.grad, expected)


def test_scaled_neuron_output_and_counts() -> None:
    neuron = SpikingNeuron(8, scale=4.0)
    x = torch.tensor([-1.0, 0.2, 3.0, 5.49, 100.0], requires_grad=True)
    y = neuron(x)
    assert torch.equal(y, torch.tensor([0.0, 0.0, 1.5, 2.5, 4.0]))
    assert torch.equal(neuron.count(y), torch.tensor([0.0, 0.0, 3.0, 5.0, 8.0]))
    y.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.0, 0.5, 0.5, 0.5, 0.0]))


def test_real_valued_counterpart_skips_rounding() -> None:
    neuron = SpikingNeuron(4)
    neuron.quantize = False
    x = torch.tensor([-1.0, 0.3, 2.6, 5.0])
    assert torch.allclose(neuron(x), torch.tensor([0.0, 0.075, 0.65, 1.0]))


def test_float64_stays_float64() -> None:
    x = torch.rand(10, dtype=torch.float64) * 5
    assert spike(x, 4).dtype == torch.float64
