"""``Predictor``: the official predict path on the fixture, resizing rules, batching, precisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spike2former import load_model
from spike2former.errors import S2FError
from spike2former.inference import devices as devices_module
from spike2former.inference import predictor as predictor_module
from spike2former.inference.predictor import Predictor, label_dtype, scores_to_labels
from spike2former.inference.preprocess import (
    MEAN_RGB,
    STD_RGB,
    network_input_size,
    normalize,
    resize_image,
)
from tests.golden_fixture import needs_fixture
from tests.helpers import make_model, random_rgb, small_config


@pytest.fixture(scope="module")
def official_fp64(fixture_model_file: Path) -> Predictor:
    """The fixture's weights, converted, in float64 at the native size."""
    return Predictor(load_model(fixture_model_file), device="cpu", precision="fp64", imgsz=0)


@pytest.fixture(scope="module")
def small_fp64() -> Predictor:
    return Predictor(make_model(small_config()), device="cpu", precision="fp64", imgsz=0)


# --- the official fixture --------------------------------------------------------------------


@needs_fixture
def test_normalized_input_reproduces_the_official_map(
    official_fp64: Predictor, golden: dict[str, torch.Tensor]
) -> None:
    labels = official_fp64.semantic_scores(golden["input"].double()).argmax(1).cpu()
    assert labels.dtype == torch.int64
    assert torch.equal(labels, golden["seg_map_f64"])


@needs_fixture
def test_uint8_images_reproduce_the_official_map(
    official_fp64: Predictor, golden: dict[str, torch.Tensor]
) -> None:
    images = list(golden["input_image_uint8"].numpy())
    predictions = official_fp64.predict(images)
    assert len(predictions) == 2
    for prediction, expected in zip(predictions, golden["seg_map_f64"], strict=True):
        assert prediction.network_size == (96, 128)
        assert prediction.labels.dtype == np.uint8
        assert np.array_equal(prediction.labels, expected.numpy())
        assert set(prediction.timings_ms) == {"preprocess", "inference", "postprocess"}


@needs_fixture
def test_normalisation_matches_the_fixture_input(golden: dict[str, torch.Tensor]) -> None:
    images = golden["input_image_uint8"].numpy()
    normalized = torch.stack([normalize(image) for image in images])
    assert normalized.dtype == torch.float32
    assert torch.equal(normalized, golden["input"])


# --- resizing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "short_side", "expected"),
    [
        (96, 128, 512, (512, 683)),  # mmseg: scale min(2048/128, 512/96), sides rounded half up
        (128, 96, 512, (683, 512)),
        (512, 683, 512, (512, 683)),
        (100, 4000, 512, (51, 2048)),  # the long side is capped at 2048
        (1000, 1500, 2560, (1707, 2560)),  # ... or at the short side when that is larger
        (3, 5, 4, (4, 7)),
        (96, 128, 0, (96, 128)),  # 0 keeps the native size
    ],
)
def test_network_input_size(
    height: int, width: int, short_side: int, expected: tuple[int, int]
) -> None:
    assert network_input_size(height, width, short_side) == expected


def test_resize_keeps_the_array_at_its_size() -> None:
    image = random_rgb(40, 56)
    assert resize_image(image, 0) is image
    assert resize_image(image, 40) is image
    assert resize_image(image, 80).shape == (80, 112, 3)


def test_normalize_layout_and_values() -> None:
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[0, 1] = 255
    tensor = normalize(image, torch.float64)
    assert tensor.shape == (3, 2, 3) and tensor.dtype == torch.float64
    for c in range(3):
        assert tensor[c, 0, 0].item() == -MEAN_RGB[c] / STD_RGB[c]
        assert tensor[c, 0, 1].item() == (255 - MEAN_RGB[c]) / STD_RGB[c]


# --- scores to labels ------------------------------------------------------------------------


def _direct(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    resized = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
    return resized.argmax(0)


def test_resize_keeps_the_lowest_of_tied_classes() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(40, 7, 9, generator=gen)
    scores[25] = scores[3]  # identical maps tie everywhere: the lower index must win
    scores[6] = scores[5]
    scores[:, 2:5, 3:6] = 0.5  # a block where every class ties
    size = (23, 31)
    labels = scores_to_labels(scores, size)
    assert torch.equal(labels, _direct(scores, size))
    assert not (labels == 25).any() and not (labels == 6).any()
    assert (labels == 3).any() and (labels == 5).any() and (labels == 0).any()


def test_resize_of_random_scores_interpolates_everywhere() -> None:
    """Neighbouring pixels of random scores disagree: every output pixel is interpolated."""
    scores = torch.randn(37, 12, 16, generator=torch.Generator().manual_seed(1))
    for size in [(40, 56), (7, 9), (12, 17), (5, 40)]:
        assert torch.equal(scores_to_labels(scores, size), _direct(scores, size))


def test_resize_of_smooth_scores_matches_resizing_every_class() -> None:
    """Regions of one class are read off the source labels; only their borders are interpolated."""
    coarse = torch.rand(12, 5, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    scores = F.interpolate(coarse[None], size=(40, 48), mode="bilinear", align_corners=False)[0]
    source = scores.argmax(0)
    assert (source[1:] == source[:-1]).float().mean() > 0.8, "the test needs uniform regions"
    for size in [(97, 131), (33, 41), (40, 200)]:
        assert torch.equal(scores_to_labels(scores, size), _direct(scores, size))
    channels_last = scores[None].contiguous(memory_format=torch.channels_last)[0]
    assert torch.equal(scores_to_labels(channels_last, (97, 131)), _direct(scores, (97, 131)))


def test_resize_in_pixel_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    scores = torch.randn(9, 10, 12, generator=torch.Generator().manual_seed(6))
    expected = scores_to_labels(scores, (31, 29))
    monkeypatch.setattr(predictor_module, "_PIXEL_CHUNK", 7)
    assert torch.equal(scores_to_labels(scores, (31, 29)), expected)
    assert torch.equal(expected, _direct(scores, (31, 29)))


def test_same_size_is_a_plain_argmax() -> None:
    scores = torch.randn(5, 6, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(scores_to_labels(scores, (6, 8)), scores.argmax(0))


def test_float64_scores_are_resized_in_float64() -> None:
    """A difference float32 cannot hold must still decide the label."""
    base = torch.rand(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 1
    scores = torch.zeros(34, 2, 3, dtype=torch.float64)
    scores[2] = base
    scores[30] = base + 1e-12
    labels = scores_to_labels(scores, (5, 7))
    assert torch.equal(labels, _direct(scores, (5, 7)))
    assert (labels == 30).all()


def test_half_scores() -> None:
    scores = torch.randn(20, 4, 5, generator=torch.Generator().manual_seed(4)).half()
    assert torch.equal(scores_to_labels(scores, (9, 11)), _direct(scores.float(), (9, 11)))


# --- predictions -----------------------------------------------------------------------------


def test_images_of_different_sizes_in_one_call(small_fp64: Predictor) -> None:
    images = [random_rgb(40, 56, 0), random_rgb(32, 48, 1), random_rgb(40, 56, 2)]
    together = small_fp64.predict(images)
    for image, prediction in zip(images, together, strict=True):
        assert prediction.labels.shape == image.shape[:2]
        assert prediction.network_size == image.shape[:2]
        alone = small_fp64.predict([image])[0]
        assert np.array_equal(prediction.labels, alone.labels)
    assert small_fp64.predict([]) == []


def test_resized_network_input_and_scores() -> None:
    predictor = Predictor(make_model(small_config()), device="cpu", imgsz=32)
    image = random_rgb(40, 56)
    prediction = predictor.predict([image], keep_scores=True)[0]
    assert prediction.network_size == (32, 45)
    assert prediction.labels.shape == (40, 56)
    assert prediction.scores is not None
    assert prediction.scores.shape == (5, 32, 45) and prediction.scores.dtype == torch.float32
    expected = scores_to_labels(prediction.scores, (40, 56)).numpy()
    assert np.array_equal(prediction.labels, expected)
    assert predictor.predict([image])[0].scores is None


def test_class_fractions() -> None:
    predictor = Predictor(make_model(small_config()), device="cpu", imgsz=0)
    prediction = predictor.predict([random_rgb()])[0]
    prediction.labels = np.array([[3, 3, 3, 0], [1, 1, 3, 0]], dtype=np.uint8)
    assert prediction.class_fractions() == {3: 0.5, 0: 0.25, 1: 0.25}


def test_default_size_and_class_names() -> None:
    config = small_config(class_names=("sky", "road", "tree", "car", "person"))
    predictor = Predictor(make_model(config), device="cpu")
    assert predictor.imgsz == config.test_size
    assert predictor.class_names == config.class_names
    assert len(predictor.palette) == 5
    unnamed = Predictor(make_model(small_config()), device="cpu")
    assert unnamed.class_names == tuple(f"class {i}" for i in range(5))
    colours = ((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12), (13, 14, 15))
    coloured = Predictor(make_model(small_config(palette=colours)), device="cpu")
    assert coloured.palette == list(colours)


def test_label_dtype() -> None:
    assert label_dtype(150) == np.uint8
    assert label_dtype(256) == np.uint8
    assert label_dtype(257) == np.uint16
    predictor = Predictor(make_model(small_config(head={"num_classes": 300})), "cpu", imgsz=0)
    assert predictor.predict([random_rgb()])[0].labels.dtype == np.uint16


# --- devices and precisions ------------------------------------------------------------------


def test_fp16_on_cpu_falls_back_with_a_note() -> None:
    predictor = Predictor(make_model(small_config()), device="cpu", precision="fp16", imgsz=0)
    assert predictor.dtype == torch.float32
    assert predictor.precision == "fp32"
    assert predictor.precision_note is not None
    assert "fp16" in predictor.precision_note and "cpu" in predictor.precision_note
    assert predictor.predict([random_rgb()])[0].labels.shape == (40, 56)


def test_bf16_falls_back_on_a_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices_module, "cpu_has_native_bf16", lambda: False)
    predictor = Predictor(make_model(small_config()), device="cpu", precision="bf16", imgsz=0)
    assert predictor.dtype == torch.float32 and predictor.precision == "fp32"
    assert predictor.precision_note is not None and "bf16" in predictor.precision_note


def test_native_bf16_detection_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices_module.platform, "machine", lambda: "x86_64")
    for avx512_bf16, amx, expected in [
        (False, False, False),
        (True, False, True),
        (False, True, True),
    ]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert devices_module.cpu_has_native_bf16() is expected
    monkeypatch.setattr(devices_module.platform, "machine", lambda: "arm64")
    assert devices_module.cpu_has_native_bf16()


@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp64", torch.float64), ("bf16", torch.bfloat16)]
)
def test_supported_precisions_on_cpu(
    precision: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices_module, "cpu_has_native_bf16", lambda: True)
    predictor = Predictor(make_model(small_config()), device="cpu", precision=precision, imgsz=0)
    assert predictor.dtype == dtype
    assert predictor.precision == precision
    assert predictor.precision_note is None
    assert next(predictor.model.parameters()).dtype == dtype


@pytest.mark.parametrize(
    ("device", "precision", "fragment"),
    [("cpu", "fp8", "unknown precision"), ("tpu", "fp32", "device"), ("cuda:7", "fp32", "cuda")],
)
def test_bad_device_or_precision(device: str, precision: str, fragment: str) -> None:
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(S2FError, match=fragment):
        Predictor(make_model(small_config()), device=device, precision=precision)
