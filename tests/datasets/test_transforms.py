"""Augmentation steps and the official pipelines: sizes with mmcv's rounding, crop redraws under
cat_max_ratio, padding values, dtypes, and reproducibility from a generator."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from spike2former.datasets.transforms import (
    IMAGE_MEAN,
    IMAGE_STD,
    SHORTEST_EDGE_A_SCALES,
    SHORTEST_EDGE_C_SCALES,
    Compose,
    KeepRatioResize,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRatioResize,
    RandomShortestEdgeResize,
    eval_pipeline_for,
    pipeline_for,
    rescale_size,
)


class ScriptedRng:
    """Stands in for ``numpy.random.Generator``: returns queued values, in call order."""

    def __init__(self, *values: float) -> None:
        self.values = deque(values)

    def integers(self, *args: int) -> int:
        return int(self.values.popleft())

    def uniform(self, low: float, high: float) -> float:
        return float(self.values.popleft())

    def random(self) -> float:
        return float(self.values.popleft())


def _pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = rng.integers(0, 4, (height, width), dtype=np.uint8)
    return image, label


# --- resizing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((375, 500), (2048, 512), (512, 683)),  # short side to 512
        ((512, 4000), (2048, 512), (262, 2048)),  # long side capped at 2048
        ((1024, 2048), (2048, 1024), (1024, 2048)),  # Cityscapes test size is unchanged
        ((333, 333), (2048, 512), (512, 512)),
    ],
)
def test_keep_ratio_sizes_round_like_mmcv(
    size: tuple[int, int], scale: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert rescale_size(*size, scale) == expected


def test_keep_ratio_resize_can_leave_the_label_alone() -> None:
    image, label = _pair(30, 40)
    out_image, out_label = KeepRatioResize((2048, 512), resize_label=False)(image, label, None)
    assert out_image.shape == (512, 683, 3) and out_image.dtype == np.uint8
    assert out_label is label
    _, resized = KeepRatioResize((2048, 512))(image, label, None)
    assert resized.shape == (512, 683)
    assert set(np.unique(resized)) <= set(np.unique(label))  # nearest: no new values


@pytest.mark.parametrize(
    ("size", "short_edge", "max_size", "expected"),
    [
        ((400, 600), 320, 2560, (320, 480)),
        ((600, 400), 1280, 2560, (1920, 1280)),
        ((100, 1000), 320, 2560, (256, 2560)),  # long side capped
        ((1024, 2048), 2048, 4096, (2048, 4096)),
    ],
)
def test_shortest_edge_sizes(
    size: tuple[int, int], short_edge: int, max_size: int, expected: tuple[int, int]
) -> None:
    resize = RandomShortestEdgeResize([short_edge], max_size)
    assert resize.output_size(*size, short_edge) == expected


def test_shortest_edge_resize_draws_a_listed_scale() -> None:
    image, label = _pair(20, 30)
    resize = RandomShortestEdgeResize(SHORTEST_EDGE_A_SCALES, 2560)
    for seed in range(5):
        out_image, out_label = resize(image, label, np.random.default_rng(seed))
        assert min(out_image.shape[:2]) in SHORTEST_EDGE_A_SCALES
        assert out_label.shape == out_image.shape[:2] and out_label.dtype == np.uint8
    out_image, _ = resize(image, label, ScriptedRng(3))
    assert out_image.shape[:2] == (512, 768)


def test_official_scale_lists() -> None:
    assert SHORTEST_EDGE_A_SCALES == tuple(range(320, 1281, 64))
    assert SHORTEST_EDGE_C_SCALES == (
        512, 614, 716, 819, 921, 1024, 1126, 1228, 1331, 1433, 1536, 1638, 1740, 1843, 1945, 2048
    )  # fmt: skip


def test_ratio_resize_scales_within_the_range() -> None:
    image, label = _pair(50, 100)
    resize = RandomRatioResize((2048, 512), (0.5, 2.0))
    out_image, out_label = resize(image, label, ScriptedRng(0.0))  # ratio 0.5 -> (1024, 256)
    assert out_image.shape[:2] == (256, 512) and out_label.shape == (256, 512)
    out_image, _ = resize(image, label, ScriptedRng(0.999999))  # ratio ~2 -> (4095, 1023)
    assert out_image.shape[:2] == (1023, 2046)


# --- cropping ------------------------------------------------------------------------------------


def test_crop_size_and_small_images() -> None:
    image, label = _pair(40, 50)
    crop = RandomCrop((16, 24), cat_max_ratio=1.0)
    out_image, out_label = crop(image, label, ScriptedRng(5, 7))
    assert np.array_equal(out_image, image[5:21, 7:31])
    assert np.array_equal(out_label, label[5:21, 7:31])
    small_image, small_label = crop(image[:10, :12], label[:10, :12], ScriptedRng(0, 0))
    assert small_image.shape == (10, 12, 3) and small_label.shape == (10, 12)


def _striped_label() -> np.ndarray:
    """Columns 0-9 class 0; 10-11 class 1; 12-13 ignore; 14-19 class 2."""
    label = np.zeros((4, 20), dtype=np.uint8)
    label[:, 10:12] = 1
    label[:, 12:14] = 255
    label[:, 14:] = 2
    return label


def test_crop_redraws_windows_dominated_by_one_class() -> None:
    label = _striped_label()
    image = np.zeros((4, 20, 3), dtype=np.uint8)
    crop = RandomCrop((4, 4), cat_max_ratio=0.75)
    # window at column 0 is all class 0 (redraw); at 9: classes 0, 1, 1, ignore -> 1/3 : 2/3
    _, out = crop(image, label, ScriptedRng(0, 0, 0, 9))
    assert np.array_equal(out, label[:, 9:13])
    # at 12: ignore and class 2 only -> one class counted -> redraw; at 8: 0,0,1,1 -> 1/2, kept
    _, out = crop(image, label, ScriptedRng(0, 12, 0, 8))
    assert np.array_equal(out, label[:, 8:12])
    # at 7: 0,0,0,1 -> 3/4 is not below 0.75 -> redraw
    _, out = crop(image, label, ScriptedRng(0, 7, 0, 9))
    assert np.array_equal(out, label[:, 9:13])


def test_crop_gives_up_after_ten_redraws_and_keeps_the_last_window() -> None:
    label = _striped_label()
    image = np.zeros((4, 20, 3), dtype=np.uint8)
    crop = RandomCrop((4, 4), cat_max_ratio=0.75)
    rng = ScriptedRng(*([0, 0] * 10), 0, 16)  # eleven windows drawn, all single-class
    _, out = crop(image, label, rng)
    assert np.array_equal(out, label[:, 16:20]) and not rng.values


def test_crop_without_cat_ratio_draws_once() -> None:
    label = np.zeros((8, 8), dtype=np.uint8)
    rng = ScriptedRng(1, 2)
    RandomCrop((4, 4), cat_max_ratio=1.0)(np.zeros((8, 8, 3), np.uint8), label, rng)
    assert not rng.values


# --- flip and photometric distortion --------------------------------------------------------------


def test_flip_mirrors_image_and_label_together() -> None:
    image, label = _pair(5, 7)
    flipped_image, flipped_label = RandomHorizontalFlip(0.5)(image, label, ScriptedRng(0.2))
    assert np.array_equal(flipped_image, image[:, ::-1]) and np.array_equal(
        flipped_label, label[:, ::-1]
    )
    same_image, same_label = RandomHorizontalFlip(0.5)(image, label, ScriptedRng(0.7))
    assert same_image is image and same_label is label


def test_brightness_then_contrast_truncate_like_mmseg() -> None:
    image = np.array([[[100, 250, 3]]], dtype=np.uint8)
    label = np.zeros((1, 1), dtype=np.uint8)
    # brightness on (+10.7), contrast last (mode 0), saturation off, hue off, contrast on (x1.5)
    rng = ScriptedRng(1, 10.7, 0, 0, 0, 1, 1.5)
    out, out_label = PhotoMetricDistortion()(image, label, rng)
    assert out.tolist() == [[[165, 255, 19]]]  # int(110.7) * 1.5, clip(260.7), int(13.7) * 1.5
    assert out_label is label and not rng.values
    # contrast first (mode 1): same arithmetic order here, draws in a different order
    rng = ScriptedRng(1, 10.7, 1, 1, 1.5, 0, 0)
    assert PhotoMetricDistortion()(image, label, rng)[0].tolist() == [[[165, 255, 19]]]


def test_hue_shift_wraps_around_180() -> None:
    red = np.array([[[255, 0, 0]]], dtype=np.uint8)
    label = np.zeros((1, 1), dtype=np.uint8)
    # brightness off, mode 1, contrast off, saturation off, hue on with -60 -> hue 120 = blue
    out, _ = PhotoMetricDistortion(hue_delta=90)(red, label, ScriptedRng(0, 1, 0, 0, 1, -60))
    assert out.tolist() == [[[0, 0, 255]]]


def test_photometric_distortion_is_reproducible_and_keeps_dtype() -> None:
    image, label = _pair(16, 16)
    distort = PhotoMetricDistortion()
    first, _ = distort(image, label, np.random.default_rng(4))
    second, _ = distort(image, label, np.random.default_rng(4))
    assert first.dtype == np.uint8 and first.shape == image.shape
    assert np.array_equal(first, second)
    assert any(
        not np.array_equal(distort(image, label, np.random.default_rng(s))[0], image)
        for s in range(4)
    )


# --- tensors, normalisation and padding ----------------------------------------------------------


def test_normalize_gives_channel_first_tensors() -> None:
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[..., 0] = 255
    label = np.full((2, 3), 255, dtype=np.uint8)
    tensor, target = Normalize()(image, label, None)
    assert tensor.shape == (3, 2, 3) and tensor.dtype == torch.float32
    assert target.dtype == torch.int64 and target.shape == (2, 3)
    expected = [(255 - IMAGE_MEAN[0]) / IMAGE_STD[0], -IMAGE_MEAN[1] / IMAGE_STD[1]]
    assert tensor[0, 0, 0].item() == pytest.approx(expected[0], rel=1e-6)
    assert tensor[1, 1, 2].item() == pytest.approx(expected[1], rel=1e-6)


def test_pad_fills_image_with_zero_and_label_with_ignore() -> None:
    image = torch.ones(3, 5, 6)
    label = torch.zeros(5, 6, dtype=torch.long)
    padded_image, padded_label = Pad(size=(8, 10))(image, label, None)
    assert padded_image.shape == (3, 8, 10) and padded_label.shape == (8, 10)
    assert torch.equal(padded_image[:, :5, :6], image)  # content stays top-left
    assert padded_image[:, 5:].abs().sum() == 0 and padded_image[:, :, 6:].abs().sum() == 0
    assert (padded_label[5:] == 255).all() and (padded_label[:, 6:] == 255).all()
    assert (padded_label[:5, :6] == 0).all()
    divided, _ = Pad(size_divisor=4)(image, label, None)
    assert divided.shape == (3, 8, 8)
    same, _ = Pad(size=(4, 4))(image, label, None)
    assert same is image


# --- official pipelines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "resize_type", "crop"),
    [
        ("ade20k", RandomShortestEdgeResize, (512, 512)),
        ("cocostuff10k", RandomShortestEdgeResize, (512, 512)),
        ("cocostuff164k", RandomShortestEdgeResize, (512, 512)),
        ("cityscapes", RandomShortestEdgeResize, (512, 1024)),
        ("voc", RandomRatioResize, (512, 512)),
        ("shortest_edge_c", RandomShortestEdgeResize, (512, 512)),
        ("random_resize", RandomRatioResize, (512, 512)),
    ],
)
def test_official_pipelines(name: str, resize_type: type, crop: tuple[int, int]) -> None:
    pipeline = pipeline_for(name)
    kinds = [type(step) for step in pipeline.steps]
    assert kinds == [
        resize_type, RandomCrop, RandomHorizontalFlip, PhotoMetricDistortion, Normalize, Pad
    ]  # fmt: skip
    resize, cropper, *_, pad = pipeline.steps
    assert cropper.crop_size == crop and cropper.cat_max_ratio == 0.75 and pad.size == crop
    if name == "cityscapes":
        assert resize.scales == SHORTEST_EDGE_C_SCALES and resize.max_size == 4096
    if name == "ade20k":
        assert resize.scales == SHORTEST_EDGE_A_SCALES and resize.max_size == 2560
    assert "Compose" in repr(pipeline)


def test_a_training_pipeline_end_to_end_is_reproducible() -> None:
    image, label = _pair(48, 64, seed=2)
    pipeline = pipeline_for("ade20k", crop_size=(64, 96))
    first = pipeline(image, label, np.random.default_rng([0, 0, 5]))
    second = pipeline(image, label, np.random.default_rng([0, 0, 5]))
    assert first[0].shape == (3, 64, 96) and first[1].shape == (64, 96)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert set(first[1].unique().tolist()) <= {0, 1, 2, 3, 255}


def test_eval_pipelines_resize_images_only() -> None:
    image, label = _pair(375, 500)
    tensor, target = eval_pipeline_for("voc")(image, label, None)
    assert tensor.shape == (3, 512, 683) and target.shape == (375, 500)
    tensor, _ = eval_pipeline_for("cityscapes")(*_pair(1024, 2048), None)
    assert tensor.shape == (3, 1024, 2048)


def test_unknown_pipeline_names() -> None:
    with pytest.raises(ValueError, match="no training pipeline named 'kitti'"):
        pipeline_for("kitti")
    with pytest.raises(ValueError, match="no test pipeline named 'random_resize'"):
        eval_pipeline_for("random_resize")


def test_compose_runs_steps_in_order() -> None:
    calls: list[str] = []

    def step(name: str):
        def run(image, label, rng):
            calls.append(name)
            return image + 1, label

        return run

    image, _ = Compose([step("a"), step("b")])(0, None, None)
    assert image == 2 and calls == ["a", "b"]
