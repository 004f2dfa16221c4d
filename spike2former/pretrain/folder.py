"""Image-classification folders in the ImageNet / torchvision ``ImageFolder`` layout::

    ROOT/train/CLASS/*.jpg     one folder per class; the sorted folder names are the classes
    ROOT/val/CLASS/*.jpg       the same class names (a subset is allowed)

Layout errors (no split folder, no class folders, a class without images, validation classes
the training split lacks) are found when the folder is scanned, and unreadable images by
``check_images`` (file headers, a few milliseconds per thousand images), before anything is
trained; an image whose body turns out damaged later is named when it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..datasets.io import image_size, read_image
from ..errors import DatasetError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

# image uint8 [H, W, 3], generator -> normalised float32 [3, h, w]
ImageTransform = Callable[[np.ndarray, np.random.Generator], torch.Tensor]


@dataclass(frozen=True)
class ImageFolderSplit:
    """One split: the class names (index = label) and every image with its label."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]


def scan_split(
    root: str | Path, split: str, classes: Sequence[str] | None = None
) -> ImageFolderSplit:
    """The images of ``ROOT/split``. ``classes``: the training split's classes, which the labels
    of this split then refer to (its class folders must be among them)."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder; expected ROOT/{split}/CLASS/*.jpg")
    found = sorted(path.name for path in folder.iterdir() if path.is_dir())
    if not found:
        raise DatasetError(f"{folder}: no class folders; expected {folder}/CLASS/*.jpg")
    names = tuple(classes) if classes is not None else tuple(found)
    unknown = [name for name in found if name not in names]
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise DatasetError(
            f"{folder}: class folders not in the training split: {shown} (the training split "
            "defines the classes)"
        )
    label_of = {name: label for label, name in enumerate(names)}
    samples: list[tuple[Path, int]] = []
    for name in found:
        images = sorted(
            path
            for path in (folder / name).iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise DatasetError(
                f"{folder / name}: a class folder without images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        samples.extend((path, label_of[name]) for path in images)
    return ImageFolderSplit(folder, names, tuple(samples))


def check_images(split: ImageFolderSplit) -> int:
    """The pixels of the split's largest image; raises ``DatasetError`` naming the first image
    whose header cannot be read (a file of a format Pillow does not know is decoded whole)."""
    largest = 0
    for path, _ in split.samples:
        height, width = image_size(path)
        largest = max(largest, height * width)
    return largest


class ClassificationSet(Dataset):
    """Items ``(image [3, h, w], label, name)`` of a split through ``transform``. An item may
    be fetched as ``(index, epoch)``: its augmentation draws from a generator seeded by
    (seed, epoch, index), so it does not depend on which process loads it."""

    def __init__(self, split: ImageFolderSplit, transform: ImageTransform, seed: int = 0) -> None:
        self.split = split
        self.transform = transform
        self.seed = seed

    @property
    def classes(self) -> tuple[str, ...]:
        return self.split.classes

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, str]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        path, label = self.split.samples[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        try:
            image = self.transform(read_image(path), rng)
        except DatasetError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the file, in any process
            raise DatasetError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
        name = str(path.relative_to(self.split.root).with_suffix(""))
        return image, torch.tensor(label), name
