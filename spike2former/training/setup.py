"""What a run trains on and what it starts from: the data description and the initial network.

``DataSpec`` names a dataset (format, root, splits) and builds its train and validation sets.
``fit_model_to_data`` fits a network to the dataset's classes: ``num_classes`` rebuilds the class
layer, and the dataset's class names (ADE20K, Cityscapes, VOC, COCO-Stuff, or a folder's
``classes.txt``) are stored in the model so that every saved model file carries them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets import FORMATS, DatasetError, SegmentationDataset, Transform, build_dataset
from ..datasets.metadata import DATASET_CLASSES, generated_palette
from ..datasets.readers import read_class_names, read_palette
from ..errors import Note
from ..modeling.spike2former import Spike2Former
from .initial import with_classes

# Class lists of the fixed-layout formats.
_FORMAT_CLASSES = {
    "ade20k": "ade20k",
    "cityscapes": "cityscapes",
    "voc": "voc",
    "cocostuff10k": "cocostuff",
    "cocostuff164k": "cocostuff",
}


class ClassCountError(DatasetError):
    """The dataset has more classes than the network would: a usage error, which a larger
    ``num_classes`` fixes (the message names it)."""


@dataclass(frozen=True)
class DataSpec:
    """A dataset on disk. ``val_split=None``: no validation (and no best model).
    ``num_classes`` is what a ``folder`` dataset without ``classes.txt`` is checked against."""

    format: str
    root: str
    train_split: str = "train"
    val_split: str | None = "val"
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise DatasetError(
                f"unknown dataset format {self.format!r}; choose one of {', '.join(FORMATS)}"
            )

    @classmethod
    def of(cls, format: str, root: str | Path, **fields: Any) -> DataSpec:
        """A spec with an absolute root; ``format="cocostuff"`` picks ``cocostuff10k`` or
        ``cocostuff164k`` by the folders under ``root``."""
        root = Path(root).expanduser().resolve()
        if format == "cocostuff":
            format = _cocostuff_layout(root)
        return cls(format, str(root), **fields)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        return cls(**data)

    def class_names(self) -> tuple[str, ...] | None:
        """The dataset's class names, where the format or a ``classes.txt`` defines them."""
        if self.format in _FORMAT_CLASSES:
            return tuple(DATASET_CLASSES[_FORMAT_CLASSES[self.format]])
        classes = Path(self.root) / "classes.txt"
        return tuple(read_class_names(classes)) if classes.is_file() else None

    def palette(self) -> tuple[tuple[int, int, int], ...] | None:
        """A ``folder`` dataset's class colours (``palette.txt``: one ``R G B`` line per class);
        None elsewhere (known datasets' names select their official palette)."""
        path = Path(self.root) / "palette.txt"
        if self.format != "folder" or not path.is_file():
            return None
        return read_palette(path)

    def build(
        self, split: str, transform: Transform | None = None, seed: int = 0
    ) -> SegmentationDataset:
        options: dict[str, Any] = {}
        if self.format == "folder" and self.class_names() is None:
            options["num_classes"] = self.num_classes
        return build_dataset(
            self.format, self.root, split, transform=transform, seed=seed, **options
        )


def fit_model_to_data(
    model: Spike2Former,
    data: DataSpec,
    num_classes: int | None = None,
    test_size: int | None = None,
) -> tuple[Spike2Former, Note | None]:
    """``model`` with ``num_classes`` classes (default: as it is) and the dataset's class names,
    and a note for the user when the model has more class slots than the dataset uses.
    ``test_size`` (the short side evaluation and inference resize to; 0 = native size) replaces
    the model's when given.

    Raises ``ClassCountError`` when the dataset has more classes than the model would.
    """
    if test_size is not None:
        model.config = model.config.replace(test_size=test_size)
    classes = num_classes or model.config.head.num_classes
    names = data.class_names()
    palette = data.palette()
    if palette is not None and names is not None and len(palette) != len(names):
        raise DatasetError(
            f"{Path(data.root) / 'palette.txt'} has {len(palette)} colours for {len(names)} classes"
        )
    note = None
    if names is not None:
        if len(names) > classes:
            raise ClassCountError(
                f"the dataset has {len(names)} classes but the model {classes}; pass "
                f"{{num_classes}} to train a {len(names)}-class head",
                num_classes=len(names),
            )
        if len(names) < classes:
            note = Note(
                f"the model has {classes} class slots and the dataset uses {len(names)}; "
                f"{{num_classes}} would train a {len(names)}-class head",
                num_classes=len(names),
            )
            names = (*names, *(f"unused_{i}" for i in range(len(names), classes)))
            if palette is not None:
                palette = (*palette, *map(tuple, generated_palette(classes)[len(palette) :]))
    elif classes == model.config.head.num_classes:
        names = model.config.class_names
    return with_classes(model, classes, names, palette), note


def _cocostuff_layout(root: Path) -> str:
    for name, markers in (
        ("cocostuff164k", ("coco_stuff164k", "images/train2017", "images/val2017")),
        ("cocostuff10k", ("coco_stuff10k", "images/train2014", "images/test2014")),
    ):
        if any((root / marker).is_dir() for marker in markers):
            return name
    raise DatasetError(
        f"{root} holds neither COCO-Stuff 164k (coco_stuff164k/images/train2017) nor COCO-Stuff "
        "10k (coco_stuff10k/images/train2014); use {format} or cocostuff10k",
        format="cocostuff164k",
    )
