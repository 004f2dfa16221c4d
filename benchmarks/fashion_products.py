"""Build an image-classification set from the fashion scenes' pixels, for backbone pretraining.

    python benchmarks/fashion_products.py OUT --train 60000 --val 2000 --size 64 --seed 0

Each image is one Fashion-MNIST product composited on a random crop of a background photograph
exactly as ``fashion_scenes.py`` pastes objects into scenes (bilinear upscaling, random mirror,
tint and brightness, alpha matte from the item's own intensity), filling 45-90 % of the image
side, off-centre. The layout is ImageFolder's (``OUT/{train,val}/CLASS/NNNNN.jpg``) with the ten
Fashion-MNIST class names as folders (``T-shirt-top`` for T-shirt/top), so
``s2f pretrain --data OUT`` reads it.

What the segmentation test scenes use stays unseen: ``train`` images take Fashion-MNIST's
training items (item ``i`` for image ``i``) on the scenes' training photographs; ``val`` images
take test-split items 0-4999 (those of the validation scenes) on the held-out photographs. The
test scenes' items (test split 5000-9999) are never used. Image ``i`` of a split is drawn from
``numpy.random.default_rng([seed, split_code, i])``: the same arguments give the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fashion_scenes import (  # noqa: E402 - the script beside this one
    BACKGROUND_GROUPS,
    CLASSES,
    FASHION_MNIST_DIR,
    JPEG_QUALITY,
    SPLIT_CODES,
    Photo,
    _background,
    add_source_arguments,
    load_sources,
    timed_build,
    tinted_item,
)

from spike2former.errors import DatasetError  # noqa: E402

# split -> (Fashion-MNIST split, first item, last item + 1)
ITEM_SOURCES = {"train": ("train", 0, 60000), "val": ("test", 0, 5000)}
OBJECT_SIDE = (0.45, 0.9)  # of the image side


def compose_product(
    rng: np.random.Generator, photos: Sequence[Photo], item: np.ndarray, size: int
) -> np.ndarray:
    """One product on a background: BGR uint8 ``[size, size, 3]``."""
    canvas = _background(rng, photos[int(rng.integers(len(photos)))].pixels, size)
    height = max(8, int(round(size * rng.uniform(*OBJECT_SIDE))))
    width = min(size, max(4, int(round(height * rng.uniform(0.85, 1.15)))))
    colour, alpha = tinted_item(rng, item, width, height)
    top = int(rng.integers(0, size - height + 1))
    left = int(rng.integers(0, size - width + 1))
    a = alpha[..., None]
    region = canvas[top : top + height, left : left + width]
    canvas[top : top + height, left : left + width] = region * (1 - a) + colour * a
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def build(
    out: Path,
    counts: dict[str, int],
    size: int,
    seed: int,
    backgrounds: Path | None = None,
    fashion_mnist: Path = FASHION_MNIST_DIR,
) -> None:
    """Write the set to ``out`` (which must not hold anything yet)."""
    data, photos, _ = load_sources(Path(out), size, backgrounds, fashion_mnist)
    names = [name.replace("/", "-") for name in CLASSES[1:]]  # folder names; no background
    for split, count in counts.items():
        source, first, last = ITEM_SOURCES[split]
        if count > last - first:
            raise DatasetError(f"--{split} {count}: the {split} split has {last - first} items")
        for index in range(count):
            rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
            item = first + index
            image = compose_product(
                rng, photos[BACKGROUND_GROUPS[split]], data.images[source][item], size
            )
            folder = out / split / names[int(data.labels[source][item])]
            folder.mkdir(parents=True, exist_ok=True)
            jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
            (folder / f"{index:05d}.jpg").write_bytes(jpeg.tobytes())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="new folder for the set")
    parser.add_argument("--train", type=int, default=60000, help="training images")
    parser.add_argument("--val", type=int, default=2000, help="validation images")
    add_source_arguments(parser, size=64)
    args = parser.parse_args(argv)
    counts = {"train": args.train, "val": args.val}
    if min(counts.values()) < 1:
        parser.error("image counts must be 1 or more")
    seconds = timed_build(build, args, counts)
    if seconds is None:
        return 1
    print(f"wrote {args.train}/{args.val} images of {args.size} px to {args.out} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
