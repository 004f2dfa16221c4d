"""The official test pipeline: keep-ratio resize, then per-channel normalisation.

mmseg's ``Resize(scale=(2048, S), keep_ratio=True)`` scales an image by
``min(2048 / long side, S / short side)`` (sides rounded half up) with OpenCV's bilinear filter;
the data pre-processor then normalises RGB with the ImageNet mean and std.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
LONG_SIDE_CAP = 2048


def network_input_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Network input size for an image: short side to ``short_side``, long side at most
    ``max(2048, short_side)``; ``short_side <= 0`` keeps the native size."""
    if short_side <= 0:
        return height, width
    long_cap = max(LONG_SIDE_CAP, short_side)
    scale = min(long_cap / max(height, width), short_side / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_image(image: np.ndarray, short_side: int) -> np.ndarray:
    """``HxWx3`` uint8 RGB -> resized per ``network_input_size`` (no copy when the size is kept)."""
    height, width = image.shape[:2]
    new_h, new_w = network_input_size(height, width, short_side)
    if (new_h, new_w) == (height, width):
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def normalize(image: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
    """``HxWx3`` uint8 RGB -> ``[3, H, W]`` normalised tensor (computed in float64 then cast)."""
    array = (image.astype(np.float64) - np.array(MEAN_RGB)) / np.array(STD_RGB)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).to(dtype)
