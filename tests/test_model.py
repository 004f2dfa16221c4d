from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from spike2former import (
    BackboneConfig,
    HeadConfig,
    ModelConfig,
    build_model,
    load_model,
    save_model,
)
from spike2former.modeling.backbone_sdtv2 import RepConv
from spike2former.modeling.official_layout import (
    channels_as_tokens,
    channels_first_buffer_as_channels_last,
    tokens_as_channels,
)
from spike2former.presets import PRESETS


def _small(version: str = "sdtv3", time_steps: int = 1) -> ModelConfig:
    return ModelConfig(
        BackboneConfig(
            version=version,
            embed_dims=(8, 16, 32, 40),
            stage3_depth=1,
            stage4_depth=1,
            time_steps=time_steps,
        ),
        HeadConfig(
            num_classes=5,
            channels=32,
            num_queries=6,
            encoder_layers=1,
            encoder_ffn_channels=64,
            dcn_groups=4,
            decoder_layers=2,
            decoder_ffn_channels=64,
        ),
    )


def _random_loss(out: dict, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for stage in [*out["aux"], out]:
        for key in ("class_logits", "mask_logits"):
            loss = loss + (stage[key] * torch.randn(stage[key].shape, generator=generator)).sum()
    return loss


@pytest.mark.parametrize(
    ("name", "expected"), [("sdtv3b-ade20k", 38_236_408), ("sdtv2-ade20k", 34_361_112)]
)
def test_learnable_parameter_counts(name: str, expected: int) -> None:
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


def test_presets_are_consistent() -> None:
    assert PRESETS["sdtv3b-voc"].head.num_classes == 21
    assert PRESETS["sdtv2-cityscapes"].head.encoder_ffn_channels == 2048
    assert PRESETS["sdtv2-cocostuff164k"].backbone.time_steps == 4
    assert PRESETS["sdtv3b-ade20k"].backbone.levels == 4
    assert PRESETS["sdtv2-ade20k"].backbone.levels == 8
    with pytest.raises(KeyError, match="known presets"):
        build_model("no-such-preset")


@pytest.mark.parametrize("version", ["sdtv2", "sdtv3"])
def test_output_shapes_inference_and_training(version: str) -> None:
    torch.manual_seed(0)
    model = build_model(_small(version)).eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(images)
        assert set(out) == {"class_logits", "mask_logits"}
        assert out["class_logits"].shape == (2, 6, 6)
        assert out["mask_logits"].shape == (2, 6, 32, 48)
        full = model(images, return_aux=True)
        assert torch.equal(full["mask_logits"], out["mask_logits"])
        assert len(full["aux"]) == 2
        assert all(a["mask_logits"].shape == (2, 6, 32, 48) for a in full["aux"])
        assert model.semantic_logits(images).shape == (2, 5, 64, 96)
    model.train()
    assert len(model(images)["aux"]) == 2


@pytest.mark.parametrize("size", [(67, 101), (33, 48), (128, 40)])
def test_sizes_not_divisible_by_the_stride(size: tuple[int, int]) -> None:
    model = build_model(_small()).eval()
    with torch.no_grad():
        logits = model.semantic_logits(torch.randn(1, 3, *size))
    assert logits.shape == (1, 5, *size)
    assert torch.isfinite(logits).all()


def test_time_steps_repeat_the_input_and_average() -> None:
    torch.manual_seed(0)
    single = build_model(_small(time_steps=1)).eval().double()
    repeated = build_model(_small(time_steps=3)).eval().double()
    repeated.load_state_dict(single.state_dict())
    images = torch.randn(2, 3, 48, 64, dtype=torch.float64)
    with torch.no_grad():
        a, b = single(images, return_aux=True), repeated(images, return_aux=True)
        assert len(repeated.extract_features(images)[0]) == 6
    assert torch.allclose(a["mask_logits"], b["mask_logits"], atol=1e-12)
    assert torch.allclose(a["aux"][0]["class_logits"], b["aux"][0]["class_logits"], atol=1e-12)


def test_double_runs_in_float64_end_to_end() -> None:
    model = build_model(_small()).eval().double()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32, dtype=torch.float64))
    assert out["mask_logits"].dtype == torch.float64
    assert out["class_logits"].dtype == torch.float64


def test_gradients_reach_every_parameter_of_tiny() -> None:
    """Training mode, spiking: every parameter gets a finite gradient. The straight-through
    gradient equals the derivative of the real-valued neuron, so the real-valued run must give a
    non-zero gradient everywhere (with the zero-initialised DCN offset/modulation convs made
    active, as they become after training; at initialisation they silence the DCN branch)."""
    torch.manual_seed(0)
    model = build_model("tiny").train()
    images = torch.randn(2, 3, 64, 64)
    _random_loss(model(images)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name

    model.zero_grad(set_to_none=True)
    for name, module in model.named_modules():
        if name.endswith(("dcn.offset.0", "dcn.mask.0")):
            torch.nn.init.normal_(module.weight, std=0.1)
    model.set_spiking(False)
    _random_loss(model(images)).backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert silent == []


def test_spiking_switch_changes_only_rounding() -> None:
    torch.manual_seed(0)
    model = build_model(_small()).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        spiking = model(images)["mask_logits"]
        model.set_spiking(False)
        real = model(images)["mask_logits"]
        model.set_spiking(True)
        again = model(images)["mask_logits"]
    assert torch.equal(spiking, again)
    assert not torch.equal(spiking, real)


def test_conventional_config_builds_real_valued_neurons(tmp_path: Path) -> None:
    config = dataclasses.replace(_small(), spiking=False)
    torch.manual_seed(0)
    conventional = build_model(config).eval()
    assert all(not m.quantize for m in conventional.modules() if hasattr(m, "quantize"))
    spiking = build_model(_small()).eval()
    spiking.load_state_dict(conventional.state_dict())
    spiking.set_spiking(False)
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(conventional(images)["mask_logits"], spiking(images)["mask_logits"])
    path = save_model(conventional, tmp_path / "conventional.safetensors")
    assert load_model(path).config.spiking is False
    assert ModelConfig.from_json(config.to_json()) == config


def test_rep_conv_is_a_zero_padded_separable_conv() -> None:
    """BN-with-border makes RepConv equal to padding the 1x1 conv output with zeros before BN."""
    torch.manual_seed(0)
    rep = RepConv(6, 5).eval()
    conv1, bn_pad, (dw, pw, bn) = rep.body
    for module in (bn_pad.bn, bn):
        module.running_mean.uniform_(-1, 1)
        module.running_var.uniform_(0.5, 2)
        module.weight.data.uniform_(0.5, 2)
        module.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 6, 7, 9)
    expected = bn(pw(dw(bn_pad.bn(F.pad(conv1(x), [1, 1, 1, 1])))))
    assert torch.allclose(rep(x), expected, atol=1e-6)


def test_official_layout_reinterprets_without_permuting() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    y = tokens_as_channels(x)
    assert y.shape == (2, 4, 3)
    assert torch.equal(y.flatten(), x.flatten())
    assert not torch.equal(y, x.transpose(1, 2))
    assert torch.equal(channels_as_tokens(y), x)
    maps = torch.arange(2 * 5 * 6, dtype=torch.float32).view(2, 5, 6)
    last = channels_first_buffer_as_channels_last(maps, 2, 3)
    assert last.shape == (2, 2, 3, 5)
    assert torch.equal(last.flatten(), maps.flatten())


def test_config_round_trip_and_validation() -> None:
    config = dataclasses.replace(_small(), class_names=tuple("abcde"))
    assert ModelConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="class names"):
        dataclasses.replace(config, class_names=("a",))
    with pytest.raises(ValueError, match="dcn_groups"):
        ModelConfig(head=HeadConfig(channels=64, dcn_groups=48))
    with pytest.raises(ValueError, match="unknown HeadConfig fields"):
        ModelConfig.from_dict({"head": {"hidden": 3}})
    with pytest.raises(ValueError, match="version"):
        ModelConfig(backbone=BackboneConfig(version="sdtv9"))  # type: ignore[arg-type]


def test_palette_round_trips_and_is_checked(tmp_path: Path) -> None:
    palette = ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9))
    config = dataclasses.replace(_small(), palette=palette)
    assert ModelConfig.from_json(config.to_json()) == config
    assert load_model(save_model(build_model(config), tmp_path / "m.safetensors")).config == config
    with pytest.raises(ValueError, match="2 palette colours for 5 classes"):
        dataclasses.replace(config, palette=palette[:2])
    with pytest.raises(ValueError, match="three integers in 0..255"):
        dataclasses.replace(config, palette=(*palette[:4], (0, 0, 256)))


@pytest.mark.parametrize("batch", [1, 3])
def test_combine_masks_is_the_official_channel_first_sum_stored_pixel_major(batch: int) -> None:
    from spike2former.modeling.spike2former import combine_masks

    gen = torch.Generator().manual_seed(7)
    class_logits = torch.randn(batch, 10, 6, generator=gen, dtype=torch.float64)
    mask_logits = torch.randn(batch, 10, 7, 9, generator=gen, dtype=torch.float64) * 4
    masks = F.interpolate(mask_logits, size=(13, 18), mode="bilinear", align_corners=False)
    probs = F.softmax(class_logits, dim=-1)[..., :-1]
    expected = torch.einsum("bqc,bqhw->bchw", probs, masks.sigmoid())
    scores = combine_masks(class_logits, mask_logits, (13, 18))
    assert scores.shape == (batch, 5, 13, 18)
    assert torch.allclose(scores, expected, rtol=0, atol=1e-14)
    # classes innermost in memory, batch stride spelt out (kernels read the layout off it)
    assert scores.stride() == (13 * 18 * 5, 1, 18 * 5, 5)
    assert torch.equal(scores.argmax(1), expected.argmax(1))
