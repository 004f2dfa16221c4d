"""A small ImageFolder tree and the ``s2f pretrain`` command line that trains on it quickly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square", "stripes")


def class_image(kind: str, seed: int, size: int = 40) -> np.ndarray:
    """A BGR picture of ``kind`` on noise, placed and coloured at random."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    colour = tuple(int(c) for c in rng.integers(120, 256, 3))
    centre = tuple(int(c) for c in rng.integers(size // 3, 2 * size // 3, 2))
    if kind == "circle":
        cv2.circle(image, centre, size // 4, colour, -1)
    elif kind == "square":
        x, y, half = centre[0], centre[1], size // 4
        cv2.rectangle(image, (x - half, y - half), (x + half, y + half), colour, -1)
    else:
        image[::4] = colour
    return image


def write_image_folder(root: Path, train: int = 4, val: int = 2) -> Path:
    """``root/{train,val}/CLASS/NN.png`` with ``train`` and ``val`` images per class."""
    for split, count, offset in (("train", train, 0), ("val", val, 100)):
        for label, kind in enumerate(CLASSES):
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                image = class_image(kind, offset + 10 * label + index)
                assert cv2.imwrite(str(folder / f"{index:02d}.png"), image)
    return root


def pretrain_args(data: Path, out: Path, iters: int = 4, *extra: str) -> list[str]:
    """``s2f pretrain`` arguments for a few fast, deterministic iterations of ``tiny``."""
    return [
        "pretrain",
        "--preset", "tiny",
        "--data", str(data),
        "--iters", str(iters),
        "--batch-size", "3",
        "--crop-size", "32",
        "--eval-interval", "2",
        "--checkpoint-interval", "2",
        "--log-interval", "2",
        "--workers", "0",
        "--threads", "1",
        "--output", str(out),
        *extra,
    ]  # fmt: skip
