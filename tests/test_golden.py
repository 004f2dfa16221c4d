"""Numerical equivalence with the official implementation (fixture ``official_tiny_v3``).

The fixture's weights go through ``convert_checkpoint`` first, so these tests also prove that a
converted official checkpoint reproduces the official network. Float64 runs must match every stored
``*_f64`` tensor to 1e-8 and the segmentation map exactly. Float32 is checked stage by stage, each
stage fed with the official float32 input of that stage, because one spike flipped by float32
rounding would cascade through the decoder (see the fixture README).
"""

from __future__ import annotations

from pathlib import Path

import torch

from spike2former import load_model
from tests.golden_fixture import needs_fixture

F64_ATOL = 1e-8
F32_ATOL = 1e-4

pytestmark = needs_fixture


def _model(path: Path, dtype: torch.dtype):
    return load_model(path).to(dtype)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} vs {expected.shape}"
    error = (actual.double() - expected.double()).abs().max().item()
    assert error <= atol, f"{name}: max abs error {error:.3g} > {atol:g}"


def test_converted_config_matches_fixture_constructor(fixture_model_file: Path) -> None:
    config = load_model(fixture_model_file).config
    assert config.backbone.version == "sdtv3"
    assert config.backbone.embed_dims == (16, 32, 64, 80)
    assert (config.backbone.stage3_depth, config.backbone.stage4_depth) == (6, 2)
    head = config.head
    assert (head.num_classes, head.channels, head.num_queries) == (7, 64, 20)
    assert (head.encoder_layers, head.encoder_ffn_channels) == (6, 128)
    assert (head.dcn_groups, head.dcn_kernel_size, head.dcn_dw_kernel_size) == (32, 3, 5)
    assert (head.decoder_layers, head.decoder_ffn_channels) == (6, 256)


@torch.no_grad()
def test_float64_matches_every_stage(
    fixture_model_file: Path, golden: dict[str, torch.Tensor]
) -> None:
    model = _model(fixture_model_file, torch.float64)
    images = golden["input"].double()
    feats = model.extract_features(images)
    for i, feat in enumerate(feats):
        _assert_close(feat, golden[f"backbone_out_{i}_f64"][0], F64_ATOL, f"backbone_out_{i}")

    head = model.decode_head
    mask_features, memory, memories = head.pixel_decoder(feats)
    _assert_close(mask_features, golden["mask_features_f64"][0], F64_ATOL, "mask_features")
    _assert_close(memory, golden["encoder_memory_f64"][0], F64_ATOL, "encoder_memory")
    for i, level in enumerate(memories):
        expected = golden[f"multi_scale_memory_{i}_f64"][0]
        _assert_close(level, expected, F64_ATOL, f"multi_scale_memory_{i}")

    states = head.decode_queries(memories)
    _assert_close(states, golden["decoder_query_states_f64"][:, 0], F64_ATOL, "query states")
    class_logits, mask_logits, embedding = head.embed_masks(states, mask_features, 1)
    _assert_close(embedding, golden["sme_mask_embedding_f64"][:, 0], F64_ATOL, "mask embedding")
    _assert_close(class_logits, golden["all_cls_scores_f64"], F64_ATOL, "all_cls_scores")
    _assert_close(mask_logits, golden["all_mask_preds_f64"], F64_ATOL, "all_mask_preds")


@torch.no_grad()
def test_float64_public_outputs(fixture_model_file: Path, golden: dict[str, torch.Tensor]) -> None:
    model = _model(fixture_model_file, torch.float64)
    images = golden["input"].double()
    out = model(images, return_aux=True)
    stages = [*out["aux"], {"class_logits": out["class_logits"], "mask_logits": out["mask_logits"]}]
    assert len(stages) == 7
    for s, stage in enumerate(stages):
        _assert_close(stage["class_logits"], golden["all_cls_scores_f64"][s], F64_ATOL, f"cls {s}")
        _assert_close(stage["mask_logits"], golden["all_mask_preds_f64"][s], F64_ATOL, f"mask {s}")

    fast = model(images)
    assert "aux" not in fast
    assert torch.equal(fast["mask_logits"], out["mask_logits"])
    seg_logits = model.semantic_logits(images)
    _assert_close(seg_logits, golden["seg_logits_f64"], F64_ATOL, "seg_logits")
    assert torch.equal(seg_logits.argmax(1), golden["seg_map_f64"])


@torch.no_grad()
def test_float32_backbone(fixture_model_file: Path, golden: dict[str, torch.Tensor]) -> None:
    model = _model(fixture_model_file, torch.float32)
    for i, feat in enumerate(model.extract_features(golden["input"])):
        _assert_close(feat, golden[f"backbone_out_{i}"][0], F32_ATOL, f"backbone_out_{i}")


@torch.no_grad()
def test_float32_pixel_decoder(fixture_model_file: Path, golden: dict[str, torch.Tensor]) -> None:
    model = _model(fixture_model_file, torch.float32)
    feats = [golden[f"backbone_out_{i}"][0] for i in range(4)]
    mask_features, memory, memories = model.decode_head.pixel_decoder(feats)
    _assert_close(mask_features, golden["mask_features"][0], F32_ATOL, "mask_features")
    assert torch.equal(memory, golden["encoder_memory"][0]), "encoder spikes differ"
    for i, level in enumerate(memories):
        _assert_close(level, golden[f"multi_scale_memory_{i}"][0], F32_ATOL, f"memory {i}")


@torch.no_grad()
def test_float32_each_decoder_layer(
    fixture_model_file: Path, golden: dict[str, torch.Tensor]
) -> None:
    head = _model(fixture_model_file, torch.float32).decode_head
    memories = [golden[f"multi_scale_memory_{i}"][0] for i in range(3)]
    keys, positions = head.decoder_inputs(memories)
    states = golden["decoder_query_states"][:, 0]
    for i, layer in enumerate(head.transformer_decoder.layers):
        level = i % 3
        out = layer(states[i], keys[level], head.query_embed.weight, positions[level])
        _assert_close(out, states[i + 1], F32_ATOL, f"decoder layer {i}")


@torch.no_grad()
def test_float32_mask_embedding(fixture_model_file: Path, golden: dict[str, torch.Tensor]) -> None:
    head = _model(fixture_model_file, torch.float32).decode_head
    states = golden["decoder_query_states"][:, 0]
    class_logits, mask_logits, embedding = head.embed_masks(states, golden["mask_features"][0], 1)
    assert torch.equal(embedding, golden["sme_mask_embedding"][:, 0])
    _assert_close(class_logits, golden["all_cls_scores"], F32_ATOL, "all_cls_scores")
    _assert_close(mask_logits, golden["all_mask_preds"], F32_ATOL, "all_mask_preds")


def test_training_mode_outputs(fixture_model_file: Path, golden: dict[str, torch.Tensor]) -> None:
    """Batch-statistics BatchNorm (shortcut BN pooled over all stages) as the official training."""
    model = load_model(fixture_model_file).train()
    with torch.no_grad():
        out = model(golden["input"])
    stages = [*out["aux"], out]
    for s, stage in enumerate(stages):
        expected_cls, expected_masks = (
            golden["train_all_cls_scores"][s],
            golden["train_all_mask_preds"][s],
        )
        _assert_close(stage["class_logits"], expected_cls, F32_ATOL, f"cls {s}")
        _assert_close(stage["mask_logits"], expected_masks, F32_ATOL, f"mask {s}")
