"""The classification pipelines of the SDT repositories, on numpy images with a given generator.

Training: a random resized crop (area 8-100 % of the image, aspect ratio 3/4-4/3, bicubic), a
horizontal flip with probability 1/2, photometric distortion (in place of RandAugment, which
needs PIL operations this project does not carry), normalisation with the ImageNet mean and
standard deviation, and random erasing (probability ``erase_prob``, 2-33 % of the area filled
with normal noise). Evaluation: the short side resized to ``size / 0.875``, the centre crop.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from ..datasets.transforms import Normalize, PhotoMetricDistortion

EVAL_CROP_FRACTION = 0.875
_NORMALIZE = Normalize()
_NO_LABEL = np.zeros((1, 1), dtype=np.uint8)


def _normalized(image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    pixels, _ = _NORMALIZE(image, _NO_LABEL, rng)
    return pixels


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


def random_resized_crop(
    image: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """A random region of ``scale`` of the area and ``ratio`` aspect resized to ``size``
    squared; after ten misses, the largest centred region of an aspect within ``ratio``."""
    height, width = image.shape[:2]
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return _resized(image[top : top + h, left : left + w], size, size)
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return _resized(image[top : top + h, left : left + w], size, size)


def random_erase(pixels: torch.Tensor, rng: np.random.Generator, prob: float) -> torch.Tensor:
    """With probability ``prob``, one rectangle of 2-33 % of the area (aspect 0.3-3.3) replaced
    by standard normal noise (the normalised images' scale)."""
    if prob <= 0 or rng.uniform() >= prob:
        return pixels
    _, height, width = pixels.shape
    for _ in range(10):
        target = height * width * rng.uniform(0.02, 1 / 3)
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
        h = round(math.sqrt(target * aspect))
        w = round(math.sqrt(target / aspect))
        if 0 < h < height and 0 < w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            noise = rng.standard_normal((pixels.shape[0], h, w), dtype=np.float32)
            pixels[:, top : top + h, left : left + w] = torch.from_numpy(noise)
            return pixels
    return pixels


class TrainTransform:
    """The training pipeline above, producing ``size`` x ``size`` images."""

    def __init__(self, size: int, erase_prob: float = 0.25) -> None:
        self.size = size
        self.erase_prob = erase_prob
        self.distort = PhotoMetricDistortion()

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        image = random_resized_crop(image, self.size, rng)
        if rng.integers(2):
            image = image[:, ::-1]
        image, _ = self.distort(image, _NO_LABEL, rng)
        return random_erase(_normalized(image, rng), rng, self.erase_prob)


class EvalTransform:
    """Short side to ``size / 0.875``, then the centre ``size`` x ``size`` crop."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        height, width = image.shape[:2]
        short = int(self.size / EVAL_CROP_FRACTION)
        scale = short / min(height, width)
        h, w = max(self.size, round(height * scale)), max(self.size, round(width * scale))
        image = _resized(image, h, w)
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return _normalized(image[top : top + self.size, left : left + self.size], rng)
