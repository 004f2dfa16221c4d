from __future__ import annotations

import pytest
import torch
from torch import nn

from spike2former import build_model
from spike2former.modeling.fusion import optimize_for_inference
from tests.golden_fixture import FIXTURE, needs_fixture
from tests.helpers import randomize_, small_config

torch_f64 = torch.float64


@pytest.mark.parametrize("version", ["sdtv2", "sdtv3"])
@pytest.mark.parametrize("time_steps", [1, 2])
def test_fused_model_matches_reference_in_float64(version: str, time_steps: int) -> None:
    config = small_config({"version": version, "time_steps": time_steps})
    reference = randomize_(build_model(config), seed=3).eval().double()
    fast = optimize_for_inference(reference)
    images = torch.randn(2, 3, 48, 80, dtype=torch_f64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = reference(images), fast(images)
    assert expected["mask_logits"].std() > 1e-2, "weights too weak for a meaningful check"
    for key in ("class_logits", "mask_logits"):
        assert torch.allclose(actual[key], expected[key], rtol=0, atol=1e-9), key


def test_fusion_removes_every_batchnorm_and_leaves_the_original_alone() -> None:
    model = build_model(small_config({"version": "sdtv2"})).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.repeat_time_steps and not fast.repeat_time_steps


@needs_fixture
def test_fused_official_model_reproduces_the_fixture(golden: dict[str, torch.Tensor]) -> None:  # noqa: F811
    from spike2former.convert import infer_config, read_state_dict
    from spike2former.model_file import load_weights
    from spike2former.modeling.spike2former import Spike2Former

    state = read_state_dict(FIXTURE / "weights.safetensors")
    model = Spike2Former(infer_config(state))
    load_weights(model, state, "fixture")
    fast = optimize_for_inference(model.eval())
    with torch.no_grad():
        seg64 = fast.double().semantic_logits(golden["input"].double())
        seg32 = fast.float().semantic_logits(golden["input"])
    assert (seg64 - golden["seg_logits_f64"]).abs().max() < 1e-8
    assert torch.equal(seg64.argmax(1), golden["seg_map_f64"])
    assert torch.equal(seg32.argmax(1), golden["seg_map"])


@pytest.mark.parametrize("version", ["sdtv2", "sdtv3"])
def test_pixel_major_backbone_stages_compute_the_same_features(version: str) -> None:
    fast = optimize_for_inference(randomize_(build_model(small_config({"version": version})), 4))
    fast = fast.double()
    assert fast.backbone.pixel_major_convs
    images = torch.randn(1, 3, 48, 80, dtype=torch_f64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pixel_major = fast.backbone(images)
        fast.backbone.pixel_major_convs = False
        channel_first = fast.backbone(images)
    assert pixel_major[0].is_contiguous(memory_format=torch.channels_last)
    assert all(x.is_contiguous() for x in pixel_major[1:])
    assert pixel_major[0].std() > 1e-2
    for got, want in zip(pixel_major, channel_first, strict=True):
        assert torch.allclose(got, want, rtol=0, atol=1e-9)


@pytest.mark.parametrize("version", ["sdtv2", "sdtv3"])
def test_spiking_temporaries_in_place_changes_nothing(version: str) -> None:
    from spike2former.modeling.neuron import SpikingNeuron

    fast = optimize_for_inference(randomize_(build_model(small_config({"version": version})), 5))
    neurons = [m for m in fast.modules() if isinstance(m, SpikingNeuron)]
    in_place = [m for m in neurons if m.overwrites_input]
    assert 0 < len(in_place) < len(neurons)
    images = torch.randn(2, 3, 48, 80, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        overwriting = fast(images)
        for neuron in in_place:
            neuron.overwrites_input = False
        copying = fast(images)
    assert overwriting["mask_logits"].std() > 1e-2
    for key in ("class_logits", "mask_logits"):
        assert torch.equal(overwriting[key], copying[key]), key
