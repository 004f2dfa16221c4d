"""``EnergyMeter``: hand-checked accounting on toy networks, and consistency on the fixture."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spike2former import Spike2Former
from spike2former.firing import (
    ACCOUNTING,
    PARTS,
    EnergyConstants,
    EnergyMeter,
    FiringRateMonitor,
)
from spike2former.firing.energy import SPIKE_DRIVEN, EnergyReport
from spike2former.modeling.neuron import SpikingNeuron
from tests.golden_fixture import needs_fixture

MAC, AC = 4.6e-9, 0.9e-9  # mJ per operation


class ConvToy(nn.Module):
    """A real-valued first conv, a neuron, a spike-fed conv (bias) and a folded scaling."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 1, bias=False)
        self.spike = SpikingNeuron(4)
        self.conv = nn.Conv2d(2, 3, 1)
        self.gamma = nn.Parameter(torch.full((3, 1, 1), 0.5))
        nn.init.ones_(self.stem.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * self.conv(self.spike(self.stem(x)))


class AttentionToy(nn.Module):
    """``(q k^T) v`` on spikes (v with an output multiplier of 4), scalar scaling, upsampling."""

    def __init__(self) -> None:
        super().__init__()
        self.q_spike = SpikingNeuron(8)
        self.k_spike = SpikingNeuron(8)
        self.v_spike = SpikingNeuron(8, scale=4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, L, d]
        q, k, v = self.q_spike(x), self.k_spike(x * 2), self.v_spike(x)
        scores = (q @ k.transpose(-2, -1)) * 0.25
        out = scores @ v
        return F.interpolate(out[:, None], scale_factor=2, mode="bilinear")


def _run(model: nn.Module, x: torch.Tensor) -> EnergyReport:
    with EnergyMeter(model) as meter, torch.no_grad():
        model(x)
    return meter.report()


def _ops(report: EnergyReport) -> dict[tuple[str, str], dict]:
    return {(row["module"], row["op"]): row for row in report.operation_rows()}


def test_conv_toy_by_hand() -> None:
    # stem output = x on both channels; k = 0, 1, 2, 4 (clamped) -> mean count 7/4 per image
    x = torch.tensor([0.0, 1.0, 2.0, 9.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    report = _run(ConvToy(), x)
    assert report.images == 2
    ops = _ops(report)
    assert set(ops) == {("stem", "conv2d"), ("conv", "conv2d")}  # gamma * (.) is folded
    stem, conv = ops["stem", "conv2d"], ops["conv", "conv2d"]
    assert (stem["rule"], stem["macs"], stem["sops"]) == ("real", 8, 0.0)  # 2 ch x 4 px x 1
    assert stem["energy_mj"] == pytest.approx(8 * MAC)
    assert (conv["rule"], conv["spike_input"], conv["macs"]) == ("spike x weights", "spike", 24)
    assert conv["mean_count"] == 1.75
    assert conv["sops"] == 24 * 1.75
    assert conv["energy_mj"] == pytest.approx(42 * AC)
    assert conv["conventional_mj"] == pytest.approx(24 * MAC)
    total = report.total()
    assert total.energy_mj == pytest.approx(8 * MAC + 42 * AC)
    assert total.conventional_mj == pytest.approx(32 * MAC)
    assert total.ratio == pytest.approx(32 * 4.6 / (8 * 4.6 + 42 * 0.9))
    assert (total.macs, total.sops, total.real_macs) == (32, 42, 8)


def test_attention_toy_by_hand() -> None:
    x = torch.tensor([[0.5, 1.0], [2.0, 0.0], [0.25, 3.0]])[None]  # [1, L=3, d=2]
    report = _run(AttentionToy(), x)
    ops = {row["rule"]: row for row in report.operation_rows()}
    assert set(ops) == {"spike x spike", "spike x real", "bilinear"}  # x*2 and *0.25 folded
    qk, sv, up = ops["spike x spike"], ops["spike x real"], ops["bilinear"]
    # q counts round(clamp(x, 0, 8)) = 0 1 2 0 0 3 (half to even); the first operand drives
    assert qk["spike_input"] == "q_spike x k_spike"
    assert qk["macs"] == 3 * 3 * 2 and qk["mean_count"] == 6 / 6
    # v: the same counts as q (its output multiplier changes values, not spikes)
    assert sv["spike_input"] == "v_spike"
    assert sv["macs"] == 3 * 3 * 2 and sv["mean_count"] == 6 / 6
    assert (up["op"], up["macs"]) == ("interpolate", 4 * 6 * 4)  # 4 per value of [1,1,6,4]
    assert up["energy_mj"] == pytest.approx(96 * MAC)


def test_saturated_spikes_can_cost_more_than_macs() -> None:
    """Spiking beats the conventional network only while mean counts stay below 4.6 / 0.9."""
    net = nn.Sequential(SpikingNeuron(8), nn.Linear(4, 4))
    report = _run(net, torch.full((2, 4), 100.0))  # k = 8 everywhere
    assert report.total().sops == 8 * report.total().macs
    assert report.total().energy_mj > report.total().conventional_mj


def test_custom_constants_and_parameters_restored() -> None:
    model = ConvToy()
    with EnergyMeter(model, EnergyConstants(mac_pj=1.0, ac_pj=0.5)) as meter, torch.no_grad():
        model(torch.ones(1, 1, 2, 2))
    assert all(p.requires_grad for p in model.parameters())
    total = meter.report().total()
    assert total.energy_mj == pytest.approx((8 * 1.0 + 24 * 0.5) * 1e-9)


def test_accounting_rules_are_documented() -> None:
    keys = [rule.key for rule in ACCOUNTING]
    assert len(keys) == len(set(keys))
    assert SPIKE_DRIVEN <= set(keys) and {"real", "bilinear", "folded"} <= set(keys)
    assert all(rule.operation and rule.counted_as and rule.reason for rule in ACCOUNTING)


@pytest.fixture(scope="module")
def fixture_energy(fixture_model: Spike2Former, golden: dict) -> tuple:
    with (
        EnergyMeter(fixture_model) as meter,
        FiringRateMonitor(fixture_model) as monitor,
        torch.no_grad(),
    ):
        out = fixture_model(golden["input"].double(), return_aux=True)
    return meter.report(), monitor.records(), out


@needs_fixture
def test_fixture_outputs_untouched(fixture_energy: tuple, golden: dict) -> None:
    out = fixture_energy[2]
    assert torch.equal(out["mask_logits"], golden["all_mask_preds_f64"][-1])


@needs_fixture
def test_fixture_parts_sum_to_the_total(fixture_energy: tuple) -> None:
    report: EnergyReport = fixture_energy[0]
    assert report.images == 2
    parts, total = report.by_part(), report.total()
    assert [p.name for p in parts] == list(PARTS)
    for field in ("macs", "sops", "real_macs", "energy_mj", "conventional_mj"):
        assert sum(getattr(p, field) for p in parts) == pytest.approx(getattr(total, field))
        modules = report.by_module()
        assert sum(getattr(m, field) for m in modules) == pytest.approx(getattr(total, field))
    for part in parts:  # every mean count is far below 4.6 / 0.9 here
        assert part.conventional_mj >= part.energy_mj
    assert total.ratio > 1


@needs_fixture
def test_fixture_operations(fixture_energy: tuple) -> None:
    report, layers, _ = fixture_energy
    rows = report.operation_rows()
    real = [r for r in rows if r["rule"] == "real"]
    assert [r["module"] for r in real] == ["backbone.downsample1_1.encode_conv"]
    assert real[0]["macs"] == 8 * 48 * 64 * 3 * 7 * 7  # per image
    bilinear = {r["module"] for r in rows if r["rule"] == "bilinear"}
    assert bilinear == {"decode_head.pixel_decoder"} | {
        f"decode_head.pixel_decoder.encoder.layers.{i}.dcn" for i in range(6)
    }
    by_name = {layer.name: layer for layer in layers}
    conv = next(r for r in rows if r["module"] == "backbone.ConvBlock1_1.0.Conv.pwconv1.0")
    assert conv["spike_input"] == "backbone.ConvBlock1_1.0.Conv.spike1"
    assert conv["mean_count"] == pytest.approx(by_name[conv["spike_input"]].mean_count)
    mask = next(r for r in rows if r["module"] == "decode_head" and r["op"] == "einsum")
    assert (mask["rule"], mask["spike_input"]) == ("spike x real", "decode_head.mask_embed_spike")
    assert mask["macs"] == 7 * 20 * 64 * 48 * 64
    attention = [r for r in rows if r["rule"] == "spike x spike"]
    assert len(attention) == 8 + 12  # backbone blocks + decoder self/cross attention
