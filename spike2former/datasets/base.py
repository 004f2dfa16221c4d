"""The dataset class every layout reader returns: a list of (image, label) files plus class names.

Items are ``SegmentationSample(image, label, name)``. Without a transform, ``image`` is RGB
``uint8 [H, W, 3]`` and ``label`` the training ids ``[H, W]`` (``uint8``, 255 = ignore), both
numpy arrays; with one, whatever the transform returns (the official pipelines end in tensors).

Randomness is reproducible and independent of worker processes: the transform of item ``i``
draws from ``numpy.random.default_rng([seed, epoch, i])``. Index the dataset with ``i`` (using
the epoch of ``set_epoch``) or with ``(i, epoch)``; the second form suits samplers that run
in persistent workers, which never see a later ``set_epoch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from torch.utils.data import Dataset

from ..errors import DatasetError
from .io import image_size, read_image, read_label
from .labels import IGNORE_INDEX

LabelConversion = Callable[[np.ndarray], np.ndarray]


class Transform(Protocol):
    """A (possibly random) step of a data pipeline; it draws only from ``rng``."""

    def __call__(self, image: Any, label: Any, rng: np.random.Generator) -> tuple[Any, Any]: ...


@dataclass(frozen=True)
class SampleFiles:
    """Where one sample lives; ``convert`` maps the stored label ids to training ids."""

    name: str
    image: Path
    label: Path
    convert: LabelConversion | None = None


class SegmentationSample(NamedTuple):
    image: Any
    label: Any
    name: str


class SegmentationDataset(Dataset):
    """Image/label pairs of one split, read on access and checked on the way."""

    def __init__(
        self,
        files: Sequence[SampleFiles],
        class_names: Sequence[str],
        *,
        transform: Transform | None = None,
        seed: int = 0,
        ignore_index: int = IGNORE_INDEX,
        description: str = "dataset",
    ) -> None:
        if not files:
            raise DatasetError(f"{description} is empty: no image/label pairs were found")
        self.files = list(files)
        self.class_names = tuple(class_names)
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.ignore_index = ignore_index
        self.description = description

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def names(self) -> list[str]:
        """Sample names (image paths relative to the image folder, without suffix)."""
        return [sample.name for sample in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The random generator the transform of item ``index`` uses in ``epoch``."""
        return np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Untransformed, checked ``image [H, W, 3]`` (RGB uint8) and ``label [H, W]``."""
        sample = self.files[index]
        image = read_image(sample.image)
        label = read_label(sample.label)
        if image.shape[:2] != label.shape:
            raise DatasetError(_size_mismatch(sample, image.shape[:2], label.shape))
        if sample.convert is not None:
            label = sample.convert(label)
        self._check_label_values(label, sample.label)
        return image, label

    def check_sizes(self, index: int) -> tuple[int, int]:
        """(height, width) of item ``index``, read from the headers of its image and label map
        (which must agree), nothing decoded."""
        sample = self.files[index]
        height, width = image_size(sample.image)
        label = image_size(sample.label, "label map")
        if label != (height, width):
            raise DatasetError(_size_mismatch(sample, (height, width), label))
        return height, width

    def __getitem__(self, key: int | tuple[int, int]) -> SegmentationSample:
        index, epoch = key if isinstance(key, tuple) else (key, None)
        image, label = self.load(index)
        if self.transform is not None:
            image, label = self.transform(image, label, self.generator(index, epoch))
        return SegmentationSample(image, label, self.files[index].name)

    def _check_label_values(self, label: np.ndarray, path: Path) -> None:
        invalid = (label >= self.num_classes) & (label != self.ignore_index)
        if invalid.any():
            values = np.unique(label[invalid])[:10].tolist()
            raise DatasetError(
                f"label map {path} has values {values} that are not class ids: this dataset has "
                f"{self.num_classes} classes (0..{self.num_classes - 1}) and ignores "
                f"{self.ignore_index}; check the dataset format, class list and reduce_zero_label"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description}, {len(self)} samples)"


def _size_mismatch(sample: SampleFiles, image: tuple[int, ...], label: tuple[int, ...]) -> str:
    return (
        f"image {sample.image} is {image[1]}x{image[0]} but its label map {sample.label} is "
        f"{label[1]}x{label[0]} (width x height); they must be the same size"
    )
