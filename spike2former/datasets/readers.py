"""Readers for the on-disk layouts of the supported datasets, and ``build_dataset``.

Layouts (``ROOT`` may also be the folder above the named dataset folder):

- ``ade20k``: ``ADEChallengeData2016/images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png``; ids 1..150 become 0..149, 0 is ignored
  (mmseg's ``reduce_zero_label``). Splits ``train``/``val``.
- ``cityscapes``: ``leftImg8bit/{split}/CITY/*_leftImg8bit.png`` and
  ``gtFine/{split}/CITY/*_gtFine_labelTrainIds.png``; where a train-id file is missing,
  ``*_gtFine_labelIds.png`` is converted with the official id -> train-id table.
- ``voc``: ``VOCdevkit/VOC2012/JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (palette PNGs,
  read as indices) and ``ImageSets/Segmentation/{split}.txt``. Split ``aug`` reads
  ``SegmentationClassAug`` with ``aug.txt`` (the SBD-augmented set mmseg's converter makes);
  ``augmented=True`` with split ``train`` gives mmseg's ``voc12_aug`` training set, ``train.txt``
  from ``SegmentationClass`` followed by ``aug.txt`` from ``SegmentationClassAug``.
- ``cocostuff10k``: ``coco_stuff10k/images/{train2014,test2014}/*.jpg`` and
  ``annotations/{train2014,test2014}/*_labelTrainIds.png`` (mmseg's converter output); ids
  1..171 become 0..170, 0 is ignored. Splits ``train``/``test`` (``val`` = ``test``).
- ``cocostuff164k``: ``coco_stuff164k/images/{train2017,val2017}/*.jpg`` and
  ``annotations/{train2017,val2017}/*_labelTrainIds.png`` with ids 0..170, 255 ignored.
- ``folder``: ``images/{split}/NAME.(jpg|jpeg|png)``, ``annotations/{split}/NAME.png`` and an
  optional ``classes.txt`` (one class name per line, in id order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from .base import LabelConversion, SampleFiles, SegmentationDataset, Transform
from .labels import cityscapes_train_ids, reduce_zero_label
from .metadata import DATASET_CLASSES

FORMATS = ("ade20k", "cityscapes", "voc", "cocostuff10k", "cocostuff164k", "folder")
FOLDER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _find_root(root: Path, subfolders: Iterable[str], marker: str, layout: str) -> Path:
    """``root`` or the first of ``root/<subfolder>`` that contains ``marker``."""
    root = Path(root)
    for candidate in [root, *(root / name for name in subfolders)]:
        if (candidate / marker).is_dir():
            return candidate
    if not root.exists():
        raise DatasetError(f"dataset root {root} does not exist; expected {layout}")
    raise DatasetError(
        f"{root} is not laid out as expected: no {marker}/ folder; expected {layout}"
    )


def _split_folder(split: str, folders: dict[str, str], dataset: str) -> str:
    if split not in folders:
        raise DatasetError(
            f"{dataset} has no split {split!r}; choose one of {', '.join(sorted(folders))}"
        )
    return folders[split]


def _images_in(folder: Path, suffixes: Sequence[str], layout: str) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist; expected {layout}")
    wanted = tuple(suffix.lower() for suffix in suffixes)
    images = sorted(
        path for path in folder.rglob("*") if path.is_file() and path.name.lower().endswith(wanted)
    )
    if not images:
        patterns = " or ".join(f"*{suffix}" for suffix in suffixes)
        raise DatasetError(f"no {patterns} images in {folder}; expected {layout}")
    return images


def _strip_suffix(name: str, suffixes: Sequence[str]) -> str:
    for suffix in suffixes:
        if name.lower().endswith(suffix.lower()):
            return name[: -len(suffix)]
    return name


def _paired(
    image_dir: Path,
    label_dir: Path,
    image_suffixes: Sequence[str],
    label_suffix: str,
    convert: LabelConversion | None,
    layout: str,
) -> list[SampleFiles]:
    """Every image under ``image_dir`` with the label at the same relative path in ``label_dir``."""
    files, missing = [], []
    for image in _images_in(image_dir, image_suffixes, layout):
        name = _strip_suffix(image.relative_to(image_dir).as_posix(), image_suffixes)
        label = label_dir / (name + label_suffix)
        (files if label.is_file() else missing).append(SampleFiles(name, image, label, convert))
    _raise_if_missing(missing, layout)
    return files


def _raise_if_missing(missing: Sequence[SampleFiles], layout: str) -> None:
    if missing:
        first = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(
            f"missing annotation {first.label} for image {first.image}{more}; expected {layout}"
        )


@dataclass(frozen=True)
class _PairedLayout:
    """A layout whose label maps mirror its images: ``{folder}/images/SPLIT/NAME.jpg`` with
    ``annotations/SPLIT/NAME{label_suffix}``, ``splits`` naming each split's folder."""

    title: str
    folder: str
    splits: dict[str, str]
    label_suffix: str
    convert: LabelConversion | None
    classes: str

    def layout(self) -> str:
        folders = ",".join(dict.fromkeys(self.splits.values()))
        return (
            f"{self.folder}/images/{{{folders}}}/*.jpg with "
            f"annotations/{{{folders}}}/*{self.label_suffix}"
        )

    def dataset(self, root: str | Path, split: str, **options: object) -> SegmentationDataset:
        layout = self.layout()
        folder = _split_folder(split, self.splits, self.title)
        root = _find_root(Path(root), [self.folder], "images", layout)
        files = _paired(
            root / "images" / folder,
            root / "annotations" / folder,
            [".jpg"],
            self.label_suffix,
            self.convert,
            layout,
        )
        return SegmentationDataset(
            files,
            DATASET_CLASSES[self.classes],
            description=f"{self.title} {split} at {root}",
            **options,
        )


_ADE20K = _PairedLayout(
    "ADE20K",
    "ADEChallengeData2016",
    {"train": "training", "training": "training", "val": "validation", "validation": "validation"},
    ".png",
    reduce_zero_label,
    "ade20k",
)
_COCOSTUFF10K = _PairedLayout(
    "COCO-Stuff 10k",
    "coco_stuff10k",
    {"train": "train2014", "test": "test2014", "val": "test2014"},
    "_labelTrainIds.png",
    reduce_zero_label,
    "cocostuff",
)
_COCOSTUFF164K = _PairedLayout(
    "COCO-Stuff 164k",
    "coco_stuff164k",
    {"train": "train2017", "val": "val2017"},
    "_labelTrainIds.png",
    None,
    "cocostuff",
)


def cityscapes_dataset(root: str | Path, split: str, **options: object) -> SegmentationDataset:
    layout = (
        "leftImg8bit/{split}/CITY/*_leftImg8bit.png with "
        "gtFine/{split}/CITY/*_gtFine_labelTrainIds.png (or *_gtFine_labelIds.png)"
    )
    _split_folder(split, {"train": "train", "val": "val", "test": "test"}, "Cityscapes")
    root = _find_root(Path(root), ["cityscapes"], "leftImg8bit", layout)
    image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    suffix = "_leftImg8bit.png"
    files, missing = [], []
    for image in _images_in(image_dir, [suffix], layout):
        name = image.relative_to(image_dir).as_posix()[: -len(suffix)]
        train_ids = label_dir / f"{name}_gtFine_labelTrainIds.png"
        label_ids = label_dir / f"{name}_gtFine_labelIds.png"
        if train_ids.is_file():
            files.append(SampleFiles(name, image, train_ids))
        elif label_ids.is_file():
            files.append(SampleFiles(name, image, label_ids, cityscapes_train_ids))
        else:
            missing.append(SampleFiles(name, image, train_ids))
    _raise_if_missing(missing, layout)
    return SegmentationDataset(
        files,
        DATASET_CLASSES["cityscapes"],
        description=f"Cityscapes {split} at {root}",
        **options,
    )


def _voc_files(root: Path, split: str, label_folder: str, layout: str) -> list[SampleFiles]:
    split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(f"split file {split_file} does not exist; expected {layout}")
    names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"split file {split_file} lists no images")
    files, missing = [], []
    for name in names:
        image = root / "JPEGImages" / f"{name}.jpg"
        if not image.is_file():
            raise DatasetError(f"image {image} listed in {split_file} does not exist")
        label = root / label_folder / f"{name}.png"
        (files if label.is_file() else missing).append(SampleFiles(name, image, label))
    _raise_if_missing(missing, layout)
    return files


def voc_dataset(
    root: str | Path, split: str, *, augmented: bool = False, **options: object
) -> SegmentationDataset:
    layout = (
        "VOCdevkit/VOC2012/JPEGImages/*.jpg, SegmentationClass/*.png (SegmentationClassAug for "
        "split aug) and ImageSets/Segmentation/{split}.txt"
    )
    root = _find_root(Path(root), ["VOC2012", "VOCdevkit/VOC2012"], "JPEGImages", layout)
    if split == "aug":
        files = _voc_files(root, "aug", "SegmentationClassAug", layout)
    else:
        files = _voc_files(root, split, "SegmentationClass", layout)
        if augmented:
            files += _voc_files(root, "aug", "SegmentationClassAug", layout)
    extra = " + aug" if augmented and split != "aug" else ""
    return SegmentationDataset(
        files, DATASET_CLASSES["voc"], description=f"VOC {split}{extra} at {root}", **options
    )


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file, one per line in id order (blank lines skipped)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(f"cannot read class list {path}: {error.strerror or error}") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise DatasetError(f"class list {path} is empty; write one class name per line")
    return names


def read_palette(path: str | Path) -> tuple[tuple[int, int, int], ...]:
    """Class colours from a text file: one ``R G B`` line (integers 0-255) per class, in id
    order (blank lines skipped)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(f"cannot read palette {path}: {error.strerror or error}") from None
    colours = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        values = line.replace(",", " ").split()
        if len(values) != 3 or not all(v.isdigit() and int(v) <= 255 for v in values):
            raise DatasetError(f"{path}, line {number}: expected 'R G B' (0-255), got {line!r}")
        colours.append((int(values[0]), int(values[1]), int(values[2])))
    if not colours:
        raise DatasetError(f"palette {path} is empty; write one 'R G B' line per class")
    return tuple(colours)


def folder_dataset(
    root: str | Path,
    split: str,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    reduce_zero_label_ids: bool = False,
    **options: object,
) -> SegmentationDataset:
    """The generic layout; class names come from ``class_names``, ``ROOT/classes.txt`` or, with
    only ``num_classes``, are the ids themselves."""
    layout = (
        "ROOT/images/{split}/NAME.(jpg|jpeg|png), ROOT/annotations/{split}/NAME.png and an "
        "optional ROOT/classes.txt"
    )
    root = _find_root(Path(root), [], "images", layout)
    if class_names is None and (root / "classes.txt").is_file():
        class_names = read_class_names(root / "classes.txt")
    if class_names is not None:
        if num_classes is not None and num_classes != len(class_names):
            raise DatasetError(
                f"{len(class_names)} class names (from {root / 'classes.txt'} or the caller) but "
                f"num_classes = {num_classes}; make them agree"
            )
    elif num_classes is not None:
        class_names = [str(index) for index in range(num_classes)]
    else:
        raise DatasetError(
            f"the number of classes of {root} is unknown: write {root / 'classes.txt'} "
            "(one class name per line) or give num_classes"
        )
    split_dir = root / "images" / split
    if not split_dir.is_dir():
        available = sorted(p.name for p in (root / "images").iterdir() if p.is_dir())
        raise DatasetError(
            f"image folder {split_dir} does not exist (splits found: "
            f"{', '.join(available) or 'none'}); expected {layout}"
        )
    files = _paired(
        split_dir,
        root / "annotations" / split,
        FOLDER_IMAGE_SUFFIXES,
        ".png",
        reduce_zero_label if reduce_zero_label_ids else None,
        layout,
    )
    return SegmentationDataset(files, class_names, description=f"{split} of {root}", **options)


_READERS = {
    "ade20k": _ADE20K.dataset,
    "cityscapes": cityscapes_dataset,
    "voc": voc_dataset,
    "cocostuff10k": _COCOSTUFF10K.dataset,
    "cocostuff164k": _COCOSTUFF164K.dataset,
    "folder": folder_dataset,
}


def build_dataset(
    format: str,
    root: str | Path,
    split: str,
    *,
    transform: Transform | None = None,
    seed: int = 0,
    **options: object,
) -> SegmentationDataset:
    """A dataset of one of ``FORMATS`` at ``root``.

    ``options`` are the layout's own: ``augmented`` for ``voc``; ``num_classes``,
    ``class_names`` and ``reduce_zero_label_ids`` for ``folder``.
    """
    if format not in _READERS:
        raise DatasetError(f"unknown dataset format {format!r}; choose one of {', '.join(FORMATS)}")
    return _READERS[format](root, split, transform=transform, seed=seed, **options)
