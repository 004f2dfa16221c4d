"""The official augmentation pipelines as small callables, mmseg 1.x semantics.

Every step is called as ``step(image, label, rng) -> (image, label)``: ``image`` RGB ``uint8
[H, W, 3]`` and ``label [H, W]`` integers (255 = ignore) as numpy arrays until ``Normalize``, which
turns them into tensors ``float32 [3, H, W]`` and ``int64 [H, W]``. Random steps draw only from the
``numpy.random.Generator`` they are given, so a generator derived from (seed, epoch, index) gives
the same sample in any worker. Images are resized with OpenCV bilinear, labels nearest, with
mmcv's size rounding.

The steps are dataclasses: their fields are their settings, and their ``repr`` shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .base import Transform
from .labels import IGNORE_INDEX

IMAGE_MEAN = (123.675, 116.28, 103.53)
IMAGE_STD = (58.395, 57.12, 57.375)

# "ShortestEdge A" (ADE20K, COCO-Stuff): short side int(640 * x * 0.1), x = 5..20.
SHORTEST_EDGE_A_SCALES = tuple(int(640 * x * 0.1) for x in range(5, 21))
# "ShortestEdge C" (Cityscapes): short side int(1024 * x * 0.1), x = 5..20.
SHORTEST_EDGE_C_SCALES = tuple(int(1024 * x * 0.1) for x in range(5, 21))


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale_size`` for a keep-ratio resize into ``scale`` (long edge, short edge):
    the largest size whose long side fits max(scale) and short side fits min(scale).
    Returns (height, width)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def resize_pair(
    image: np.ndarray, label: np.ndarray | None, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize to ``size = (height, width)``: image bilinear, label nearest."""
    height, width = size
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if label is not None and label.shape[:2] != (height, width):
        label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, label


class Compose:
    """Run steps in order, all drawing from the same generator."""

    def __init__(self, steps: Sequence[Transform]) -> None:
        self.steps = list(steps)

    def __call__(self, image: Any, label: Any, rng: np.random.Generator) -> tuple[Any, Any]:
        for step in self.steps:
            image, label = step(image, label, rng)
        return image, label

    def largest_size(self, height: int, width: int) -> tuple[int, int]:
        """The largest (height, width) the resizing steps can give an image of this size (the
        size the crop is taken from; steps without ``largest_size`` leave it as it is)."""
        for step in self.steps:
            largest = getattr(step, "largest_size", None)
            if largest is not None:
                height, width = largest(height, width)
        return height, width

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(step) for step in self.steps)
        return f"Compose([\n    {inner}\n])"


@dataclass
class KeepRatioResize:
    """Resize keeping the aspect ratio so the image fits ``scale`` = (long edge, short edge).

    mmseg ``Resize(scale, keep_ratio=True)``, the test-time resize. ``resize_label=False`` keeps
    the label at its original size, as the official evaluation does (predictions are resized
    back instead).
    """

    scale: tuple[int, int]
    resize_label: bool = True

    def largest_size(self, height: int, width: int) -> tuple[int, int]:
        return rescale_size(height, width, self.scale)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        size = rescale_size(*image.shape[:2], self.scale)
        image, resized = resize_pair(image, label if self.resize_label else None, size)
        return image, resized if self.resize_label else label


@dataclass
class RandomShortestEdgeResize:
    """Short side set to a size drawn uniformly from ``scales``, long side capped at ``max_size``.

    mmseg ``RandomChoiceResize(scales, resize_type='ResizeShortestEdge', max_size)``; the
    computed size then goes through mmcv's keep-ratio rounding, as in mmseg.
    """

    scales: Sequence[int]
    max_size: int

    def __post_init__(self) -> None:
        self.scales = tuple(self.scales)

    def output_size(self, height: int, width: int, short_edge: int) -> tuple[int, int]:
        """(height, width) after resizing to ``short_edge``."""
        size = float(short_edge)
        factor = size / min(height, width)
        new_h, new_w = (size, factor * width) if height < width else (factor * height, size)
        if self.max_size and max(new_h, new_w) > self.max_size:
            factor = self.max_size / max(new_h, new_w)
            new_h, new_w = new_h * factor, new_w * factor
        target = (int(new_w + 0.5), int(new_h + 0.5))  # mmseg passes (w, h) as Resize scale
        return rescale_size(height, width, target)

    def largest_size(self, height: int, width: int) -> tuple[int, int]:
        """The size at the largest short edge (sizes grow with it, up to ``max_size``)."""
        return self.output_size(height, width, max(self.scales))

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        short_edge = self.scales[int(rng.integers(len(self.scales)))]
        return resize_pair(image, label, self.output_size(*image.shape[:2], short_edge))


@dataclass
class RandomRatioResize:
    """Keep-ratio resize into ``scale`` × r, r uniform in ``ratio_range``.

    mmcv ``RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True)``.
    """

    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)

    def _scale(self, ratio: float) -> tuple[int, int]:
        return int(self.scale[0] * ratio), int(self.scale[1] * ratio)

    def largest_size(self, height: int, width: int) -> tuple[int, int]:
        """The size at the largest ratio (sizes grow with it)."""
        return rescale_size(height, width, self._scale(self.ratio_range[1]))

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.ratio_range
        ratio = rng.random() * (high - low) + low
        return resize_pair(image, label, rescale_size(*image.shape[:2], self._scale(ratio)))


@dataclass
class RandomCrop:
    """A random ``crop_size`` = (height, width) window (smaller images stay whole).

    mmseg ``RandomCrop(crop_size, cat_max_ratio)``: up to 10 times, a window whose most common
    class (ignored pixels not counted) covers ``cat_max_ratio`` or more of it, or that holds a
    single class, is redrawn; after 10 redraws the last window is kept.
    """

    crop_size: tuple[int, int]
    cat_max_ratio: float = 0.75
    ignore_index: int = field(default=IGNORE_INDEX, repr=False)
    max_redraws: int = field(default=10, repr=False)

    def _window(self, height: int, width: int, rng: np.random.Generator) -> tuple[slice, slice]:
        margin_h = max(height - self.crop_size[0], 0)
        margin_w = max(width - self.crop_size[1], 0)
        top = int(rng.integers(margin_h + 1))
        left = int(rng.integers(margin_w + 1))
        return slice(top, top + self.crop_size[0]), slice(left, left + self.crop_size[1])

    def _balanced(self, label: np.ndarray) -> bool:
        classes, counts = np.unique(label, return_counts=True)
        counts = counts[classes != self.ignore_index]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self._window(*image.shape[:2], rng)
        if self.cat_max_ratio < 1.0:
            for _ in range(self.max_redraws):
                if self._balanced(label[rows, cols]):
                    break
                rows, cols = self._window(*image.shape[:2], rng)
        return image[rows, cols], label[rows, cols]


@dataclass
class RandomHorizontalFlip:
    """Mirror left-right with probability ``prob`` (mmcv ``RandomFlip(prob=0.5)``)."""

    prob: float = 0.5

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.prob:
            return image[:, ::-1], label[:, ::-1]
        return image, label


@dataclass
class PhotoMetricDistortion:
    """mmseg ``PhotoMetricDistortion`` with its defaults; each part applies with probability 1/2.

    Order: brightness (+δ, δ uniform in ±``brightness_delta``); contrast (×α) either here or
    last, chosen at random; saturation (×α on the HSV S channel); hue (+δ, δ an integer in
    [−``hue_delta``, ``hue_delta``), wrapped at 180). Every step truncates to uint8 like mmseg.
    The label is untouched.
    """

    brightness_delta: int = 32
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: int = 18

    @staticmethod
    def _convert(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def _brightness(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            delta = rng.uniform(-self.brightness_delta, self.brightness_delta)
            return self._convert(image, beta=delta)
        return image

    def _contrast(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            return self._convert(image, alpha=rng.uniform(*self.contrast_range))
        return image

    def _saturation(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
            hsv[..., 1] = self._convert(hsv[..., 1], alpha=rng.uniform(*self.saturation_range))
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return image

    def _hue(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
            shift = int(rng.integers(-self.hue_delta, self.hue_delta))
            hsv[..., 0] = (hsv[..., 0].astype(np.int64) + shift) % 180
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return image

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        image = np.ascontiguousarray(image)
        image = self._brightness(image, rng)
        contrast_first = rng.integers(2) == 1
        if contrast_first:
            image = self._contrast(image, rng)
        image = self._saturation(image, rng)
        image = self._hue(image, rng)
        if not contrast_first:
            image = self._contrast(image, rng)
        return image, label


@dataclass
class Normalize:
    """numpy ``uint8 [H, W, 3]`` RGB, ``[H, W]`` -> ``float32 [3, H, W]`` normalised per channel
    ((x − mean) / std, RGB order) and ``int64 [H, W]`` tensors."""

    mean: Sequence[float] = IMAGE_MEAN
    std: Sequence[float] = IMAGE_STD

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(self.mean), tuple(self.std)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        labels = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        return (pixels - mean) / std, labels


@dataclass
class Pad:
    """Pad tensors at the bottom and right to ``size`` = (height, width) and/or up to a multiple
    of ``size_divisor``: image with ``image_value`` (0, after normalisation, as mmseg's data
    preprocessor), label with ``label_value`` (255, ignored)."""

    size: tuple[int, int] | None = None
    size_divisor: int | None = None
    image_value: float = field(default=0.0, repr=False)
    label_value: int = field(default=IGNORE_INDEX, repr=False)

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        if self.size is not None:
            height, width = max(height, self.size[0]), max(width, self.size[1])
        if self.size_divisor:
            divisor = self.size_divisor
            height, width = -(-height // divisor) * divisor, -(-width // divisor) * divisor
        return height, width

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        target_h, target_w = self.padded_size(height, width)
        padding = (0, target_w - width, 0, target_h - height)
        if padding == (0, 0, 0, 0):
            return image, label
        image = F.pad(image, padding, value=self.image_value)
        label = F.pad(label, padding, value=self.label_value)
        return image, label


# Dataset name -> training preset, default crop (height, width), test scale (long, short edge).
_DATASET_RECIPES: dict[str, tuple[str, tuple[int, int], tuple[int, int]]] = {
    "ade20k": ("shortest_edge_a", (512, 512), (2048, 512)),
    "cocostuff": ("shortest_edge_a", (512, 512), (2048, 512)),
    "cocostuff10k": ("shortest_edge_a", (512, 512), (2048, 512)),
    "cocostuff164k": ("shortest_edge_a", (512, 512), (2048, 512)),
    "cityscapes": ("shortest_edge_c", (512, 1024), (2048, 1024)),
    "voc": ("random_resize", (512, 512), (2048, 512)),
}
PRESETS = ("shortest_edge_a", "shortest_edge_c", "random_resize")


def _resize_step(preset: str) -> Transform:
    if preset == "shortest_edge_a":
        return RandomShortestEdgeResize(SHORTEST_EDGE_A_SCALES, max_size=2560)
    if preset == "shortest_edge_c":
        return RandomShortestEdgeResize(SHORTEST_EDGE_C_SCALES, max_size=4096)
    return RandomRatioResize((2048, 512), (0.5, 2.0))


def pipeline_for(name: str, crop_size: tuple[int, int] | None = None) -> Compose:
    """The official training pipeline for a dataset or preset name.

    Datasets: ``ade20k``, ``cocostuff``/``cocostuff10k``/``cocostuff164k`` ("ShortestEdge A",
    crop 512×512), ``cityscapes`` ("ShortestEdge C", crop 512×1024), ``voc`` (``RandomResize``,
    crop 512×512). Presets ``shortest_edge_a``, ``shortest_edge_c``, ``random_resize`` use a
    512×512 crop unless ``crop_size`` = (height, width) is given. Steps: resize, crop
    (cat_max_ratio 0.75), flip, photometric distortion, normalise, pad to the crop size.
    """
    if name in _DATASET_RECIPES:
        preset, default_crop, _ = _DATASET_RECIPES[name]
    elif name in PRESETS:
        preset, default_crop = name, (512, 512)
    else:
        known = ", ".join([*_DATASET_RECIPES, *PRESETS])
        raise ValueError(f"no training pipeline named {name!r}; choose one of {known}")
    crop = crop_size or default_crop
    return Compose(
        [
            _resize_step(preset),
            RandomCrop(crop, cat_max_ratio=0.75),
            RandomHorizontalFlip(0.5),
            PhotoMetricDistortion(),
            Normalize(),
            Pad(size=crop),
        ]
    )


def eval_pipeline_for(name: str) -> Compose:
    """The official test pipeline: keep-ratio resize of the image only (labels stay at their
    original size; predictions are resized back to it), then normalise.

    Cityscapes' official test configuration also pads inputs to a multiple of 32 (a no-op for its
    1024×2048 images); an evaluation loop that needs it pads the batch and crops the prediction
    back before resizing it to the label.
    """
    if name not in _DATASET_RECIPES:
        known = ", ".join(_DATASET_RECIPES)
        raise ValueError(f"no test pipeline named {name!r}; choose one of {known}")
    _, _, scale = _DATASET_RECIPES[name]
    return Compose([KeepRatioResize(scale, resize_label=False), Normalize()])
