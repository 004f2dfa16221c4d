"""Dataset readers on small fake trees of real image files, one per supported layout, plus every
error a user can run into and the reproducibility of transformed samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spike2former.datasets import (
    DATASET_CLASSES,
    DatasetError,
    SegmentationDataset,
    build_dataset,
    pipeline_for,
)
from spike2former.datasets.io import read_image, read_label
from spike2former.datasets.labels import cityscapes_train_ids, reduce_zero_label
from tests.datasets.fake_files import (
    random_image,
    write_image,
    write_label,
    write_palette_png,
)

H, W = 12, 16


def _label(values: list[int], seed: int = 0, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """A ``size`` uint8 map using exactly ``values`` (each at least once)."""
    rng = np.random.default_rng(seed)
    label = rng.choice(values, size=size).astype(np.uint8)
    label.flat[: len(values)] = values
    return label


# --- reading files -----------------------------------------------------------------------------


def test_images_are_rgb(tmp_path: Path) -> None:
    rgb = random_image(H, W)
    assert np.array_equal(read_image(write_image(tmp_path / "a.png", rgb)), rgb)
    grey = rgb[..., 0]
    write_label(tmp_path / "grey.png", grey)
    assert read_image(tmp_path / "grey.png").shape == (H, W, 3)


def test_palette_pngs_give_their_indices_not_colours(tmp_path: Path) -> None:
    indices = _label([0, 1, 5, 20, 255])
    path = write_palette_png(tmp_path / "voc.png", indices)
    label = read_label(path)
    assert label.dtype == np.uint8 and label.shape == (H, W)
    assert np.array_equal(label, indices)


def test_grey_label_pngs_are_read_unchanged(tmp_path: Path) -> None:
    values = _label([0, 3, 149, 255])
    assert np.array_equal(read_label(write_label(tmp_path / "l.png", values)), values)
    wide = values.astype(np.uint16) * 200
    assert np.array_equal(read_label(write_label(tmp_path / "w.png", wide)), wide)


def test_palette_indices_are_read_even_when_colours_repeat(tmp_path: Path) -> None:
    palette = [(0, 0, 0), (9, 9, 9), (9, 9, 9)]
    label = _label([0, 2])
    path = write_palette_png(tmp_path / "dup.png", label, palette)
    assert np.array_equal(read_label(path), label)


def test_colour_label_maps_are_refused(tmp_path: Path) -> None:
    path = write_image(tmp_path / "colour.png", random_image(H, W))
    with pytest.raises(DatasetError, match=r"colour\.png is a RGB colour image"):
        read_label(path)


def test_unreadable_and_missing_files_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.jpg"):
        read_image(broken)
    with pytest.raises(DatasetError, match=r"label map not found: .*nothing\.png"):
        read_label(tmp_path / "nothing.png")
    text = tmp_path / "notes.png"
    text.write_text("a text file under a label map's name\n")
    with pytest.raises(DatasetError, match=r"label map .*notes\.png: not an image") as e:
        read_label(text)
    assert "BytesIO" not in str(e.value)


def test_label_conversions() -> None:
    ids = np.array([[0, 1, 2, 150, 254, 255]], dtype=np.uint8)
    assert reduce_zero_label(ids).tolist() == [[255, 0, 1, 149, 253, 255]]
    cityscapes = np.array([[0, 7, 8, 26, 33, 34, 255, 6]], dtype=np.uint8)
    assert cityscapes_train_ids(cityscapes).tolist() == [[255, 0, 1, 13, 18, 255, 255, 255]]


# --- one fake tree per layout ------------------------------------------------------------------


def test_ade20k(tmp_path: Path) -> None:
    base = tmp_path / "ADEChallengeData2016"
    for i, values in enumerate([[0, 1, 150], [5, 6]]):
        write_image(base / "images" / "training" / f"ADE_train_{i:08d}.jpg", random_image(H, W))
        write_label(base / "annotations" / "training" / f"ADE_train_{i:08d}.png", _label(values))
    write_image(base / "images" / "validation" / "ADE_val_00000001.jpg", random_image(H, W))
    write_label(base / "annotations" / "validation" / "ADE_val_00000001.png", _label([1]))

    dataset = build_dataset("ade20k", tmp_path, "train")  # the parent folder is fine too
    assert len(dataset) == 2 and dataset.num_classes == 150
    assert dataset.class_names == DATASET_CLASSES["ade20k"]
    assert dataset.names == ["ADE_train_00000000", "ADE_train_00000001"]
    image, label, name = dataset[0]
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert label.shape == (H, W) and label.dtype == np.uint8
    assert sorted(np.unique(label).tolist()) == [0, 149, 255]  # reduce_zero_label
    assert name == "ADE_train_00000000"
    assert len(build_dataset("ade20k", base, "val")) == 1


def test_cityscapes_with_train_ids_or_label_ids(tmp_path: Path) -> None:
    for city, frame, kind, values in [
        ("aachen", "aachen_000000_000019", "labelTrainIds", [0, 18, 255]),
        ("bochum", "bochum_000000_000313", "labelIds", [7, 26, 4]),
    ]:
        write_image(
            tmp_path / "leftImg8bit/train" / city / f"{frame}_leftImg8bit.png", random_image(H, W)
        )
        write_label(tmp_path / "gtFine/train" / city / f"{frame}_gtFine_{kind}.png", _label(values))
    dataset = build_dataset("cityscapes", tmp_path, "train")
    assert dataset.names == ["aachen/aachen_000000_000019", "bochum/bochum_000000_000313"]
    assert dataset.num_classes == 19
    assert sorted(np.unique(dataset[0].label).tolist()) == [0, 18, 255]
    assert sorted(np.unique(dataset[1].label).tolist()) == [0, 13, 255]  # converted label ids


def _voc_tree(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for name, values in [("2007_000032", [0, 1, 255]), ("2007_000033", [0, 20])]:
        write_image(voc / "JPEGImages" / f"{name}.jpg", random_image(H, W))
        write_palette_png(voc / "SegmentationClass" / f"{name}.png", _label(values))
    write_image(voc / "JPEGImages" / "2008_000001.jpg", random_image(H, W))
    write_label(voc / "SegmentationClassAug" / "2008_000001.png", _label([0, 7]))
    write_label(voc / "SegmentationClassAug" / "2007_000033.png", _label([0, 20]))
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000032\n2007_000033\n")
    (sets / "val.txt").write_text("2007_000033\n")
    (sets / "aug.txt").write_text("2008_000001\n\n")
    return voc


def test_voc_plain_and_augmented(tmp_path: Path) -> None:
    _voc_tree(tmp_path)
    train = build_dataset("voc", tmp_path, "train")
    assert train.names == ["2007_000032", "2007_000033"] and train.num_classes == 21
    assert sorted(np.unique(train[0].label).tolist()) == [0, 1, 255]  # indices, not colours
    assert len(build_dataset("voc", tmp_path / "VOCdevkit", "val")) == 1
    augmented = build_dataset("voc", tmp_path, "train", augmented=True)
    assert augmented.names == ["2007_000032", "2007_000033", "2008_000001"]
    assert augmented.files[-1].label.parent.name == "SegmentationClassAug"
    assert build_dataset("voc", tmp_path, "aug").names == ["2008_000001"]


def test_cocostuff_10k_and_164k(tmp_path: Path) -> None:
    ten = tmp_path / "coco_stuff10k"
    name = "COCO_train2014_000000000077"
    write_image(ten / "images/train2014" / f"{name}.jpg", random_image(H, W))
    write_label(ten / "annotations/train2014" / f"{name}_labelTrainIds.png", _label([0, 1, 171]))
    dataset = build_dataset("cocostuff10k", tmp_path, "train")
    assert dataset.names == [name] and dataset.num_classes == 171
    assert sorted(np.unique(dataset[0].label).tolist()) == [0, 170, 255]

    big = tmp_path / "coco_stuff164k"
    write_image(big / "images/val2017/000000000139.jpg", random_image(H, W))
    write_label(big / "annotations/val2017/000000000139_labelTrainIds.png", _label([0, 170, 255]))
    dataset = build_dataset("cocostuff164k", big, "val")
    assert sorted(np.unique(dataset[0].label).tolist()) == [0, 170, 255]  # no reduction


def test_folder_layout_with_class_list(tmp_path: Path) -> None:
    write_image(tmp_path / "images/train/a.jpg", random_image(H, W))
    write_image(tmp_path / "images/train/sub/b.png", random_image(H, W, seed=1))
    write_label(tmp_path / "annotations/train/a.png", _label([0, 2]))
    write_label(tmp_path / "annotations/train/sub/b.png", _label([1, 255]))
    (tmp_path / "classes.txt").write_text("sky\nroad\n\ncar\n")
    dataset = build_dataset("folder", tmp_path, "train")
    assert dataset.class_names == ("sky", "road", "car")
    assert dataset.names == ["a", "sub/b"]
    assert np.array_equal(dataset[1].image, random_image(H, W, seed=1))  # PNG is lossless
    by_count = build_dataset("folder", tmp_path, "train", class_names=None, num_classes=3)
    assert by_count.num_classes == 3


def test_folder_without_class_list_needs_a_count(tmp_path: Path) -> None:
    write_image(tmp_path / "images/val/a.png", random_image(H, W))
    write_label(tmp_path / "annotations/val/a.png", _label([0, 3]))
    with pytest.raises(DatasetError, match=r"classes\.txt.*or give num_classes"):
        build_dataset("folder", tmp_path, "val")
    dataset = build_dataset("folder", tmp_path, "val", num_classes=4)
    assert dataset.class_names == ("0", "1", "2", "3")
    reduced = build_dataset("folder", tmp_path, "val", num_classes=3, reduce_zero_label_ids=True)
    assert sorted(np.unique(reduced[0].label).tolist()) == [2, 255]


# --- errors --------------------------------------------------------------------------------------


def test_missing_annotation_names_the_file(tmp_path: Path) -> None:
    base = tmp_path / "ADEChallengeData2016"
    for i in range(3):
        write_image(base / "images/training" / f"x{i}.jpg", random_image(H, W))
    write_label(base / "annotations/training/x0.png", _label([1]))
    with pytest.raises(
        DatasetError, match=r"missing annotation .*x1\.png .*x1\.jpg \(and 1 more\)"
    ):
        build_dataset("ade20k", tmp_path, "train")


def test_cityscapes_missing_annotation_names_the_train_id_file(tmp_path: Path) -> None:
    write_image(tmp_path / "leftImg8bit/val/ulm/ulm_1_leftImg8bit.png", random_image(H, W))
    (tmp_path / "gtFine").mkdir()
    with pytest.raises(DatasetError, match=r"ulm_1_gtFine_labelTrainIds\.png"):
        build_dataset("cityscapes", tmp_path, "val")


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    write_image(tmp_path / "images/train/a.png", random_image(H, W))
    write_label(tmp_path / "annotations/train/a.png", np.zeros((H, W + 1), np.uint8))
    dataset = build_dataset("folder", tmp_path, "train", num_classes=2)
    with pytest.raises(DatasetError, match=r"images/train/a\.png is 16x12 .*annotations/train/a"):
        dataset[0]


def test_unreadable_image_in_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "images/train/a.jpg").write_bytes(b"\xff\xd8 truncated")
    write_label(tmp_path / "annotations/train/a.png", _label([0]))
    dataset = build_dataset("folder", tmp_path, "train", num_classes=2)
    with pytest.raises(DatasetError, match=r"cannot read image .*a\.jpg"):
        dataset[0]


def test_label_values_beyond_the_classes(tmp_path: Path) -> None:
    write_image(tmp_path / "images/train/a.png", random_image(H, W))
    write_label(tmp_path / "annotations/train/a.png", _label([0, 4, 9, 255]))
    dataset = build_dataset("folder", tmp_path, "train", num_classes=4)
    with pytest.raises(DatasetError, match=r"a\.png has values \[4, 9\] .*4 classes \(0\.\.3\)"):
        dataset[0]


@pytest.mark.parametrize(
    ("format", "message"),
    [
        ("ade20k", r"does not exist; expected ADEChallengeData2016/images"),
        ("cityscapes", r"does not exist; expected leftImg8bit"),
        ("voc", r"does not exist; expected VOCdevkit/VOC2012"),
        ("cocostuff10k", r"does not exist; expected coco_stuff10k"),
        ("cocostuff164k", r"does not exist; expected coco_stuff164k"),
        ("folder", r"does not exist; expected ROOT/images"),
    ],
)
def test_a_wrong_root_says_what_was_expected(tmp_path: Path, format: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        build_dataset(format, tmp_path / "nowhere", "train", num_classes=2)[0]
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DatasetError, match="is not laid out as expected"):
        build_dataset(format, tmp_path / "elsewhere", "train")


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "ADEChallengeData2016/images/training").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no \*\.jpg images in .*training"):
        build_dataset("ade20k", tmp_path, "train")


def test_unknown_split_and_format(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="ADE20K has no split 'test'; choose one of"):
        build_dataset("ade20k", tmp_path, "test")
    with pytest.raises(DatasetError, match="unknown dataset format 'kitti'"):
        build_dataset("kitti", tmp_path, "train")
    write_image(tmp_path / "images/train/a.png", random_image(H, W))
    with pytest.raises(DatasetError, match=r"images/val does not exist \(splits found: train\)"):
        build_dataset("folder", tmp_path, "val", num_classes=2)


def test_voc_split_file_problems(tmp_path: Path) -> None:
    voc = _voc_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"split file .*trainval\.txt does not exist"):
        build_dataset("voc", tmp_path, "trainval")
    (voc / "ImageSets/Segmentation/val.txt").write_text("2099_000001\n")
    with pytest.raises(DatasetError, match=r"2099_000001\.jpg listed in .*val\.txt does not exist"):
        build_dataset("voc", tmp_path, "val")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(DatasetError, match="lists no images"):
        build_dataset("voc", tmp_path, "val")


def test_a_dataset_needs_samples() -> None:
    with pytest.raises(DatasetError, match="my set is empty"):
        SegmentationDataset([], ["a"], description="my set")


# --- reproducible transformed samples ------------------------------------------------------------


@pytest.fixture
def augmented_folder(tmp_path: Path) -> Path:
    for i in range(3):
        write_image(tmp_path / f"images/train/{i}.png", random_image(40, 60, seed=i))
        write_label(
            tmp_path / f"annotations/train/{i}.png", _label([0, 1, 2, 255], seed=i, size=(40, 60))
        )
    return tmp_path


def _sample(root: Path, seed: int, key: int | tuple[int, int]) -> tuple[torch.Tensor, ...]:
    dataset = build_dataset(
        "folder",
        root,
        "train",
        num_classes=3,
        seed=seed,
        transform=pipeline_for("random_resize", crop_size=(32, 32)),
    )
    image, label, _ = dataset[key]
    return image, label


def test_transformed_samples_depend_only_on_seed_epoch_and_index(augmented_folder: Path) -> None:
    image, label = _sample(augmented_folder, 7, 1)
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.shape == (32, 32) and label.dtype == torch.int64
    again = _sample(augmented_folder, 7, (1, 0))
    assert torch.equal(image, again[0]) and torch.equal(label, again[1])
    assert not torch.equal(image, _sample(augmented_folder, 8, 1)[0])
    assert not torch.equal(image, _sample(augmented_folder, 7, (1, 1))[0])


def test_set_epoch_and_worker_processes_give_the_same_samples(augmented_folder: Path) -> None:
    dataset = build_dataset(
        "folder",
        augmented_folder,
        "train",
        num_classes=3,
        transform=pipeline_for("random_resize", crop_size=(32, 32)),
    )
    dataset.set_epoch(3)
    in_process = [dataset[i][0] for i in range(len(dataset))]
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    in_workers = [image for image, _, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(in_process, in_workers, strict=True))
    assert torch.equal(in_process[2], dataset[(2, 3)][0])
