"""Real image and label files for fake dataset trees: JPEG/PNG images written with OpenCV,
single-channel label PNGs, and indexed-colour (palette) PNGs written by hand, which OpenCV
cannot write."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

VOC_COLOURMAP = [
    (
        sum(((i >> (3 * k)) & 1) << (7 - k) for k in range(8)),
        sum(((i >> (3 * k + 1)) & 1) << (7 - k) for k in range(8)),
        sum(((i >> (3 * k + 2)) & 1) << (7 - k) for k in range(8)),
    )
    for i in range(256)
]  # the standard Pascal VOC colour map: entry 1 is (128, 0, 0), entry 255 (224, 224, 192)


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]``."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_image(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_label(path: Path, label: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), label)
    return path


def write_palette_png(
    path: Path, indices: np.ndarray, palette: list[tuple[int, int, int]] = VOC_COLOURMAP
) -> Path:
    """An 8-bit indexed-colour PNG whose pixels are ``indices`` (what VOC's labels are)."""
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette([channel for colour in palette for channel in colour])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
