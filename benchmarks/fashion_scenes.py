"""Build a composited segmentation dataset: real product photographs on real background photos.

    python benchmarks/fashion_scenes.py OUT --train 2000 --val 200 --test 200 --size 256 --seed 0

Objects are Fashion-MNIST items (70,000 greyscale 28x28 product photographs of Zalando articles,
MIT licence, Debian package ``dataset-fashion-mnist``), read from the gzipped IDX files in
``/usr/share/datasets/fashion-mnist`` (``--fashion-mnist`` for another folder). Backgrounds are
colour photographs among the example images of Debian's ``opencv-doc`` package
(``/usr/share/doc/opencv-doc/examples``; ``--backgrounds`` for another copy or your own photos).

Each scene is a random square crop of a background (scaled, flipped, brightness jittered) with 1 to
6 objects pasted on it, later objects covering earlier ones. An object is upscaled bilinearly to
40-140 px (at ``--size 256``; proportionally otherwise), flipped at random, tinted by multiplying
its grey levels with a random colour (the texture survives), and alpha-composited with a mask
taken from its own intensity (Fashion-MNIST items lie on black: threshold, drop specks, fill
pinholes). The label map is the class of the topmost object wherever that object's mask covers
the pixel, ``background`` elsewhere: 0 = background, 1..10 = the ten Fashion-MNIST classes. There
is no ignore band: the labels are exactly the pixels the compositing gave to each object.

Unseen objects and unseen photos at evaluation: ``train`` scenes use only the official training
split (60,000 items) and the training backgrounds; ``val`` scenes use test-split items 0-4999 and
``test`` scenes test-split items 5000-9999, both on the held-out backgrounds.

Writes the ``folder`` layout (``images/{split}/NNNNN.jpg``, ``annotations/{split}/NNNNN.png``,
``classes.txt``, ``palette.txt``) plus ``objects.csv`` (every pasted object: source split and
index, class, box, visible pixels), ``meta.json`` and ``README.md``. Scene ``i`` of a split is
drawn from ``numpy.random.default_rng([seed, split_code, i])``, so the same arguments give the
same bytes.
A composited dataset, not hand-labelled ground truth.
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import gzip
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from spike2former.errors import DatasetError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
OPENCV_EXAMPLES_DIR = Path("/usr/share/doc/opencv-doc/examples")
CLASSES = (
    "background",
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Colours of the classes in label maps and overlays (palette.txt; the trained model keeps them):
# black background, then well-separated hues.
PALETTE = (
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)
SPLITS = ("train", "val", "test")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# Fashion-MNIST split and item range each scene split draws its objects from.
OBJECT_SOURCES = {
    "train": ("train", 0, 60000),
    "val": ("test", 0, 5000),
    "test": ("test", 5000, 10000),
}
BACKGROUND_GROUPS = {"train": "train", "val": "heldout", "test": "heldout"}

# Colour photographs of natural scenes and objects among opencv-doc's examples, chosen by eye:
# left out are drawings, paintings, renders, charts, maps, synthetic test patterns, photos that
# are mostly text, photos of people in clothes (they would be clothes labelled background), and
# the second image of stereo or homography pairs (near copies of the first).
OPENCV_TRAIN_PHOTOS = (
    "alphamat/input_images/plant.jpg",
    "data/aero1.jpg",
    "data/aloeL.jpg",
    "data/apple.jpg",
    "data/baboon.jpg",
    "data/board.jpg",
    "data/building.jpg",
    "data/chicky_512.png",
    "data/ela_original.jpg",
    "data/fruits.jpg",
    "data/home.jpg",
    "data/left.jpg",
    "data/licenseplate_motion.jpg",
    "data/smarties.png",
    "dnn_superres/butterfly.png",
    "hfs/data/000.jpg",
    "hfs/data/002.jpg",
)
OPENCV_HELDOUT_PHOTOS = (
    "data/butterfly.jpg",
    "data/leuvenA.jpg",
    "data/orange.jpg",
    "data/rubberwhale1.png",
    "data/squirrel_cls.jpg",
    "data/stuff.jpg",
    "hfs/data/001.jpg",
    "reg/home.png",
)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")

OBJECTS_PER_SCENE = (1, 6)
OBJECT_PIXELS_AT_256 = (40, 140)
MASK_THRESHOLD = 8  # grey level (0-255) above which a 28x28 pixel belongs to the item
MIN_SPECK_PIXELS = 3  # item components smaller than this (in 28x28 pixels) are dropped
MAX_PINHOLE_PIXELS = 4  # enclosed gaps up to this size are filled; larger ones (handles) stay
JPEG_QUALITY = 95

INSTALL_FASHION_MNIST = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass "
    "--fashion-mnist DIR holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
)
INSTALL_BACKGROUNDS = (
    "install them with `apt-get install --no-install-recommends opencv-doc` (read from "
    f"{OPENCV_EXAMPLES_DIR}); without root, or where dpkg skips /usr/share/doc (see "
    "/etc/dpkg/dpkg.cfg.d/), run `apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb X` "
    "and pass --backgrounds X/usr/share/doc/opencv-doc/examples; or pass --backgrounds with a "
    "folder of your own colour photographs"
)


@dataclass(frozen=True)
class FashionMnist:
    """The official split: ``images[split]`` uint8 ``[N, 28, 28]``, ``labels[split]`` ``[N]``
    with ids 0..9 (``CLASSES[id + 1]``)."""

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    files: dict[str, Path]


@dataclass(frozen=True)
class Photo:
    name: str
    pixels: np.ndarray  # BGR uint8 [H, W, 3]
    sha256: str


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (gzipped or not): magic ``0 0 type ndim``, ``ndim`` big-endian uint32 sizes,
    then the data; only unsigned bytes (type 0x08), which is what (Fashion-)MNIST uses."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", ndim, 4))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"{path} holds {body.size} bytes for an array of shape {shape}")
    return body.reshape(shape)


def load_fashion_mnist(folder: Path = FASHION_MNIST_DIR) -> FashionMnist:
    """Both official splits of Fashion-MNIST from ``folder``."""
    stems = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    files = {}
    for key, stem in stems.items():
        found = [folder / (stem + ext) for ext in (".gz", "") if (folder / (stem + ext)).is_file()]
        if not found:
            raise DatasetError(
                f"Fashion-MNIST file {folder / stem}.gz not found: " + INSTALL_FASHION_MNIST
            )
        files[key] = found[0]
    images = {split: read_idx(files[f"{split}_images"]) for split in ("train", "test")}
    labels = {split: read_idx(files[f"{split}_labels"]) for split in ("train", "test")}
    for split, count in (("train", 60000), ("test", 10000)):
        if images[split].shape != (count, 28, 28) or labels[split].shape != (count,):
            raise DatasetError(
                f"Fashion-MNIST {split} split in {folder} has shape {images[split].shape} / "
                f"{labels[split].shape}; expected ({count}, 28, 28) / ({count},)"
            )
    return FashionMnist(images, labels, files)


def _read_photo(path: Path, name: str) -> Photo:
    raw = path.read_bytes()
    pixels = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise DatasetError(f"cannot decode background photo {path}")
    return Photo(name, pixels, hashlib.sha256(raw).hexdigest())


def load_backgrounds(folder: Path | None = None) -> tuple[dict[str, list[Photo]], str]:
    """Background photos by group (``train``, ``heldout``) and a description of their source.

    ``folder`` defaults to opencv-doc's examples. A folder with opencv-doc's layout gives the
    curated photos above; any other folder gives all its photos (recursively, by sorted path),
    every third one held out.
    """
    folder = OPENCV_EXAMPLES_DIR if folder is None else Path(folder)
    if not folder.is_dir():
        raise DatasetError(
            f"no background photographs: {folder} does not exist; " + INSTALL_BACKGROUNDS
        )
    curated = {"train": OPENCV_TRAIN_PHOTOS, "heldout": OPENCV_HELDOUT_PHOTOS}
    if any((folder / name).is_file() for names in curated.values() for name in names):
        groups = {
            group: [_read_photo(folder / name, name) for name in names if (folder / name).is_file()]
            for group, names in curated.items()
        }
        source = f"opencv-doc example images in {folder} (curated list)"
    else:
        paths = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
        )
        photos = [_read_photo(p, p.relative_to(folder).as_posix()) for p in paths]
        groups = {
            "train": [p for i, p in enumerate(photos) if i % 3 != 2],
            "heldout": [p for i, p in enumerate(photos) if i % 3 == 2],
        }
        source = f"photographs in {folder} (every third by sorted path held out)"
    for group, photos in groups.items():
        if not photos:
            raise DatasetError(
                f"no {group} background photographs in {folder} (need at least 3 photos); "
                + INSTALL_BACKGROUNDS
            )
    return groups, source


def item_mask(item: np.ndarray) -> np.ndarray:
    """Where a 28x28 Fashion-MNIST item is (bool ``[28, 28]``): its pixels above the black
    backdrop, without specks, with pinholes filled."""
    mask = item > MASK_THRESHOLD
    parts, count = ndimage.label(mask, np.ones((3, 3)))
    if count > 1:
        sizes = np.bincount(parts.ravel())
        mask = (sizes >= MIN_SPECK_PIXELS)[parts] & mask
    gaps, count = ndimage.label(~mask)
    if count:
        sizes = np.bincount(gaps.ravel())
        border = np.unique(np.concatenate([gaps[0], gaps[-1], gaps[:, 0], gaps[:, -1]]))
        fill = sizes <= MAX_PINHOLE_PIXELS
        fill[0] = False
        fill[border] = False
        mask |= fill[gaps]
    return mask


def _upscale(item: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A 28x28 item at ``height x width``: grey levels (bilinear, the black backdrop replaced by
    the nearby item colour first, so edges get no dark fringe) and an alpha matte whose 0.5
    contour is the smoothed item mask, with a ramp about one pixel wide across it."""
    mask = item_mask(item)
    grown = cv2.dilate(item, np.ones((3, 3), np.uint8), iterations=2)
    grey = cv2.resize(np.where(mask, item, grown), (width, height), interpolation=cv2.INTER_LINEAR)
    scale = height / 28
    smooth = cv2.GaussianBlur(
        cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR),
        (0, 0),
        0.45 * scale,
    )
    alpha = np.clip((smooth - 0.5) * (0.8 * scale) + 0.5, 0, 1)
    return grey, alpha


def _background(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    """A random square crop (30-100% of the short side), maybe mirrored, brightness jittered,
    resized to ``size`` (float32 BGR)."""
    height, width = photo.shape[:2]
    side = max(8, int(round(min(height, width) * rng.uniform(0.3, 1.0))))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = photo[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interpolation)
    return crop.astype(np.float32) * np.float32(rng.uniform(0.8, 1.2))


def _tint(rng: np.random.Generator) -> np.ndarray:
    """A random colour (BGR, 0..1): any hue, saturation 0-0.85, value 0.55-1."""
    red, green, blue = colorsys.hsv_to_rgb(
        rng.random(), rng.uniform(0.0, 0.85), rng.uniform(0.55, 1)
    )
    return np.array([blue, green, red], np.float32)


def tinted_item(
    rng: np.random.Generator, item: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """A 28x28 item at ``height x width``, mirrored at random, its grey levels times a random
    colour and brightness: BGR float32 ``[height, width, 3]`` and its alpha matte."""
    grey, alpha = _upscale(item, width, height)
    if rng.random() < 0.5:
        grey, alpha = grey[:, ::-1], alpha[:, ::-1]
    colour = (grey.astype(np.float32)[..., None] / 255) * _tint(rng) * 255
    colour *= np.float32(rng.uniform(0.85, 1.25))
    return colour, alpha


def compose_scene(
    rng: np.random.Generator,
    photos: Sequence[Photo],
    items: np.ndarray,
    item_labels: np.ndarray,
    item_range: tuple[int, int],
    size: int,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, int]]]:
    """One scene: BGR uint8 ``[size, size, 3]``, class ids uint8 ``[size, size]`` and a record
    per pasted object (``source_index``, ``class_id``, box, ``visible_pixels``)."""
    canvas = _background(rng, photos[int(rng.integers(len(photos)))].pixels, size)
    instances = np.zeros((size, size), np.uint8)
    smallest, largest = (max(8, round(p * size / 256)) for p in OBJECT_PIXELS_AT_256)
    records = []
    for order in range(1, int(rng.integers(OBJECTS_PER_SCENE[0], OBJECTS_PER_SCENE[1] + 1)) + 1):
        index = int(rng.integers(*item_range))
        item = items[index]
        height = int(rng.integers(smallest, largest + 1))
        width = max(4, int(round(height * rng.uniform(0.85, 1.15))))
        colour, alpha = tinted_item(rng, item, width, height)
        top = int(rng.integers(-height // 4, size - 3 * height // 4 + 1))
        left = int(rng.integers(-width // 4, size - 3 * width // 4 + 1))
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + height, size), min(left + width, size)
        patch = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
        a = alpha[patch][..., None]
        region = canvas[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1] = region * (1 - a) + colour[patch] * a
        instances[y0:y1, x0:x1][alpha[patch] >= 0.5] = order
        records.append(
            {
                "order": order,
                "source_index": index,
                "class_id": int(item_labels[index]) + 1,
                "x": left,
                "y": top,
                "width": width,
                "height": height,
            }
        )
    visible = np.bincount(instances.ravel(), minlength=len(records) + 1)
    for record in records:
        record["visible_pixels"] = int(visible[record["order"]])
    classes = np.array([0] + [r["class_id"] for r in records], np.uint8)
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return image, classes[instances], records


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_version(package: str) -> str | None:
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
        )
    except OSError:
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _readme(meta: dict) -> str:
    counts = ", ".join(f"{meta['counts'][s]} {s}" for s in SPLITS)
    return f"""# Fashion scenes: a composited segmentation dataset

**A composited dataset, not hand-labelled ground truth.** Every scene was generated by
`benchmarks/fashion_scenes.py` of s2f (seed {meta["seed"]}, {meta["size"]}x{meta["size"]} px,
{counts} scenes): real product photographs (Fashion-MNIST) pasted on crops of real
photographs, with labels taken from the compositing itself.

Layout (`folder` format of s2f): `images/{{split}}/NNNNN.jpg`, `annotations/{{split}}/NNNNN.png`
(single-channel class ids: 0 = background, 1..10 = the classes of `classes.txt` in order, no ignore
value), `classes.txt`, `palette.txt` (their colours, R G B), `objects.csv` (one row per pasted
object: scene, paste order, source split and index in Fashion-MNIST, class, box, visible pixels),
`meta.json` (all generation details).

- Objects: Fashion-MNIST, Zalando SE 2017, MIT licence, Debian package `dataset-fashion-mnist`.
  `train` scenes use only items of the official training split; `val` scenes test-split items
  0-4999, `test` scenes test-split items 5000-9999, so val/test measure unseen objects.
- Backgrounds: {meta["backgrounds"]["source"]};
  licence: {meta["backgrounds"]["licence"]}. `train` scenes use
  {len(meta["backgrounds"]["train"])} photos, `val` and `test` scenes
  {len(meta["backgrounds"]["heldout"])} held-out ones (listed with hashes in `meta.json`).
- Each object is upscaled bilinearly from 28x28, mirrored at random, tinted (grey levels times a
  random colour), alpha-composited with a mask from its own intensity; later objects cover
  earlier ones and the label of a pixel is the topmost object whose mask covers it.
"""


def load_sources(
    out: Path, size: int, backgrounds: Path | None, fashion_mnist: Path
) -> tuple[FashionMnist, dict[str, list[Photo]], str]:
    """The objects and the background photos (and where these came from), once ``out`` is
    known to be a new folder and ``size`` a usable side."""
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty; choose a new output folder")
    if size < 32:
        raise DatasetError(f"--size {size} is too small; use 32 or more")
    photos, photo_source = load_backgrounds(backgrounds)
    return load_fashion_mnist(fashion_mnist), photos, photo_source


def add_source_arguments(parser: argparse.ArgumentParser, size: int) -> None:
    """The options both builders take: image side, seed and where the pixels come from."""
    parser.add_argument("--size", type=int, default=size, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backgrounds",
        type=Path,
        help=f"opencv-doc examples folder (default {OPENCV_EXAMPLES_DIR}) or a folder of photos",
    )
    parser.add_argument("--fashion-mnist", type=Path, default=FASHION_MNIST_DIR)


def timed_build(
    builder: Callable[..., object], args: argparse.Namespace, counts: dict[str, int]
) -> float | None:
    """The seconds ``builder`` took on the parsed ``args``, or None once its error is printed."""
    start = time.perf_counter()
    try:
        builder(args.out, counts, args.size, args.seed, args.backgrounds, args.fashion_mnist)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    return time.perf_counter() - start


def build(
    out: Path,
    counts: dict[str, int],
    size: int,
    seed: int,
    backgrounds: Path | None = None,
    fashion_mnist: Path = FASHION_MNIST_DIR,
) -> dict:
    """Write the dataset to ``out`` (which must not hold anything yet); returns ``meta.json``."""
    out = Path(out)
    data, photos, photo_source = load_sources(out, size, backgrounds, fashion_mnist)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (out / "palette.txt").write_text("".join(f"{r} {g} {b}\n" for r, g, b in PALETTE))
    rows = []
    for split in SPLITS:
        image_dir, label_dir = out / "images" / split, out / "annotations" / split
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        source, first, last = OBJECT_SOURCES[split]
        digits = max(5, len(str(counts[split] - 1)))
        for index in range(counts[split]):
            rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
            image, label, records = compose_scene(
                rng,
                photos[BACKGROUND_GROUPS[split]],
                data.images[source],
                data.labels[source],
                (first, last),
                size,
            )
            name = f"{index:0{digits}d}"
            jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
            (image_dir / f"{name}.jpg").write_bytes(jpeg.tobytes())
            (label_dir / f"{name}.png").write_bytes(cv2.imencode(".png", label)[1].tobytes())
            rows += [{"split": split, "scene": name, "source_split": source, **r} for r in records]
    with open(out / "objects.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]) if rows else ["split"])
        writer.writeheader()
        writer.writerows(rows)
    meta = {
        "description": "composited dataset, not hand-labelled: Fashion-MNIST products pasted on "
        "crops of real photographs, labels from the compositing",
        "generator": "benchmarks/fashion_scenes.py (s2f)",
        "seed": seed,
        "size": size,
        "counts": counts,
        "classes": list(CLASSES),
        "labels": "0 = background, 1..10 = classes[1..10]; no ignore (255) pixels",
        "scene_rng": "numpy.random.default_rng([seed, split_code, index]), split_code "
        + json.dumps(SPLIT_CODES),
        "objects": {
            "dataset": "Fashion-MNIST (Zalando SE, 2017)",
            "licence": "MIT (Expat)",
            "package": "dataset-fashion-mnist",
            "package_version": _package_version("dataset-fashion-mnist")
            if fashion_mnist == FASHION_MNIST_DIR
            else None,
            "files": {key: {"path": str(p), "sha256": _sha256(p)} for key, p in data.files.items()},
            "sources": {
                split: {"fashion_mnist_split": s, "indices": [a, b]}
                for split, (s, a, b) in OBJECT_SOURCES.items()
            },
            "per_scene": list(OBJECTS_PER_SCENE),
            "pixels_at_256": list(OBJECT_PIXELS_AT_256),
            "mask": f"grey > {MASK_THRESHOLD}, components < {MIN_SPECK_PIXELS} px dropped, "
            f"enclosed gaps <= {MAX_PINHOLE_PIXELS} px filled (at 28x28), bilinear upscaling, "
            "label where the upscaled mask >= 0.5",
            "records": "objects.csv",
        },
        "backgrounds": {
            "source": photo_source,
            "package": "opencv-doc" if backgrounds is None else None,
            "package_version": _package_version("opencv-doc") if backgrounds is None else None,
            "licence": "opencv-doc's Debian copyright (Files: *): Apache-2.0 AND BSD-3-Clause"
            if backgrounds is None
            else "that of the photographs given with --backgrounds",
            "splits": BACKGROUND_GROUPS,
            **{
                group: [{"name": p.name, "sha256": p.sha256} for p in group_photos]
                for group, group_photos in photos.items()
            },
        },
        "image_format": f"JPEG quality {JPEG_QUALITY} (OpenCV), annotations PNG",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "README.md").write_text(_readme(meta))
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="new folder for the dataset")
    parser.add_argument("--train", type=int, default=2000, help="training scenes")
    parser.add_argument("--val", type=int, default=200, help="validation scenes")
    parser.add_argument("--test", type=int, default=200, help="test scenes")
    add_source_arguments(parser, size=256)
    args = parser.parse_args(argv)
    counts = {"train": args.train, "val": args.val, "test": args.test}
    if min(counts.values()) < 0:
        parser.error("scene counts must be 0 or more")
    seconds = timed_build(build, args, counts)
    if seconds is None:
        return 1
    total = sum(counts.values())
    print(
        f"wrote {args.train}/{args.val}/{args.test} scenes of {args.size} px to {args.out} in "
        f"{seconds:.1f} s ({total / seconds:.0f} scenes/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
