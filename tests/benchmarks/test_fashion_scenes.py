"""``benchmarks/fashion_scenes.py``: the IDX reader and item masks on made-up data; on a machine
with ``dataset-fashion-mnist`` and ``opencv-doc`` installed, tiny datasets built twice (same
bytes), loaded as the ``folder`` layout, with labels that match the recorded objects and objects
drawn from the right Fashion-MNIST split."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from spike2former.datasets import DatasetError, build_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fashion_scenes.py"
_spec = importlib.util.spec_from_file_location("fashion_scenes", SCRIPT)
fashion_scenes = importlib.util.module_from_spec(_spec)
sys.modules["fashion_scenes"] = fashion_scenes
_spec.loader.exec_module(fashion_scenes)

COUNTS = {"train": 6, "val": 3, "test": 3}
SIZE = 64


def _sources_missing() -> str | None:
    if not (fashion_scenes.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        return (
            f"Fashion-MNIST not in {fashion_scenes.FASHION_MNIST_DIR}: "
            "apt-get install dataset-fashion-mnist"
        )
    if not (fashion_scenes.OPENCV_EXAMPLES_DIR / fashion_scenes.OPENCV_TRAIN_PHOTOS[0]).is_file():
        return (
            f"opencv-doc photos not in {fashion_scenes.OPENCV_EXAMPLES_DIR}: "
            "apt-get install --no-install-recommends opencv-doc"
        )
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same tiny dataset built twice."""
    reason = _sources_missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("fashion_scenes")
    for name in ("a", "b"):
        fashion_scenes.build(root / name, COUNTS, SIZE, seed=3)
    return root / "a", root / "b"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_arguments_give_the_same_bytes(built: tuple[Path, Path]) -> None:
    first, second = (_files(root) for root in built)
    # + classes.txt, palette.txt, objects.csv, meta.json, README.md
    assert len(first) == 2 * sum(COUNTS.values()) + 5
    assert first == second


def test_another_seed_gives_other_scenes(built: tuple[Path, Path], tmp_path: Path) -> None:
    fashion_scenes.build(tmp_path / "c", {"train": 1, "val": 0, "test": 0}, SIZE, seed=4)
    other = (tmp_path / "c" / "images" / "train" / "00000.jpg").read_bytes()
    assert other != (built[0] / "images" / "train" / "00000.jpg").read_bytes()


def test_loads_as_folder_layout_with_labels_of_the_visible_objects(
    built: tuple[Path, Path],
) -> None:
    root = built[0]
    rows = list(csv.DictReader((root / "objects.csv").open()))
    for split, count in COUNTS.items():
        dataset = build_dataset("folder", root, split)
        assert len(dataset) == count
        assert list(dataset.class_names) == list(fashion_scenes.CLASSES)
        for image, label, name in (dataset[i] for i in range(count)):
            assert image.shape == (SIZE, SIZE, 3) and label.shape == (SIZE, SIZE)
            assert label.max() <= 10
            expected = np.zeros(11, np.int64)
            for row in rows:
                if row["split"] == split and row["scene"] == name:
                    expected[int(row["class_id"])] += int(row["visible_pixels"])
            counted = np.bincount(label.ravel(), minlength=11)
            np.testing.assert_array_equal(counted[1:], expected[1:])


def test_evaluation_scenes_use_unseen_objects_and_photos(built: tuple[Path, Path]) -> None:
    root = built[0]
    rows = list(csv.DictReader((root / "objects.csv").open()))
    assert {row["split"] for row in rows} == set(COUNTS)
    for row in rows:
        index = int(row["source_index"])
        if row["split"] == "train":
            assert row["source_split"] == "train" and 0 <= index < 60000
        else:
            first = 0 if row["split"] == "val" else 5000
            assert row["source_split"] == "test" and first <= index < first + 5000
    meta = json.loads((root / "meta.json").read_text())
    assert "not hand-labelled" in meta["description"]
    train = {photo["sha256"] for photo in meta["backgrounds"]["train"]}
    heldout = {photo["sha256"] for photo in meta["backgrounds"]["heldout"]}
    assert train and heldout and not train & heldout
    assert (root / "classes.txt").read_text().splitlines()[0] == "background"


def test_the_palette_reaches_a_trained_model(built: tuple[Path, Path]) -> None:
    from spike2former import build_model
    from spike2former.training import DataSpec, fit_model_to_data

    model, _ = fit_model_to_data(build_model("tiny"), DataSpec.of("folder", built[0]), 11)
    assert model.config.palette == fashion_scenes.PALETTE
    assert model.config.class_names == fashion_scenes.CLASSES


def test_refuses_a_folder_that_is_not_empty(built: tuple[Path, Path]) -> None:
    with pytest.raises(DatasetError, match="not empty"):
        fashion_scenes.build(built[0], COUNTS, SIZE, seed=3)


def test_read_idx(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + np.array(array.shape, ">u4").tobytes()
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(header + array.tobytes()))
    (tmp_path / "x-idx3-ubyte").write_bytes(header + array.tobytes())
    for name in ("x-idx3-ubyte.gz", "x-idx3-ubyte"):
        np.testing.assert_array_equal(fashion_scenes.read_idx(tmp_path / name), array)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + bytes(8))
    with pytest.raises(DatasetError, match="not an unsigned-byte IDX"):
        fashion_scenes.read_idx(tmp_path / "bad")


def test_item_mask_drops_specks_and_fills_pinholes_only() -> None:
    item = np.zeros((28, 28), np.uint8)
    item[4:20, 4:20] = 200
    item[8, 8] = 0  # pinhole: filled
    item[12:18, 12:18] = 0  # a real gap (like a bag handle): kept
    item[25, 25] = 255  # speck: dropped
    mask = fashion_scenes.item_mask(item)
    assert mask[8, 8] and not mask[14, 14] and not mask[25, 25]
    assert mask.sum() == 16 * 16 - 36


def test_missing_sources_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        fashion_scenes.load_fashion_mnist(tmp_path)
    with pytest.raises(DatasetError, match="opencv-doc"):
        fashion_scenes.load_backgrounds(tmp_path / "missing")
