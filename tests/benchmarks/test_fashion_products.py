"""``benchmarks/fashion_products.py`` on a machine with ``dataset-fashion-mnist`` and
``opencv-doc``: a tiny classification set built twice (same bytes), in the ImageFolder layout
``s2f pretrain`` reads, each image filed under its item's Fashion-MNIST class."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import cv2
import pytest

from spike2former.pretrain import scan_split

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the script imports the scene builder beside it
fashion_products = importlib.import_module("fashion_products")
fashion_scenes = sys.modules["fashion_scenes"]

COUNTS = {"train": 40, "val": 4}  # the first 40 training items hold every class


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not (fashion_scenes.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    if not (fashion_scenes.OPENCV_EXAMPLES_DIR / fashion_scenes.OPENCV_TRAIN_PHOTOS[0]).is_file():
        pytest.skip("opencv-doc photos not installed: apt-get install opencv-doc")
    root = tmp_path_factory.mktemp("products")
    for name in ("a", "b"):
        fashion_products.build(root / name, COUNTS, 48, seed=5)
    return root / "a", root / "b"


def test_same_arguments_give_the_same_bytes(built: tuple[Path, Path]) -> None:
    first, second = built
    files = sorted(p.relative_to(first) for p in first.rglob("*.jpg"))
    assert len(files) == sum(COUNTS.values())
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes()


def test_images_are_filed_under_their_items_class(built: tuple[Path, Path]) -> None:
    root = built[0]
    data = fashion_scenes.load_fashion_mnist()
    split = scan_split(root, "train")
    assert split.classes == tuple(sorted(n.replace("/", "-") for n in fashion_scenes.CLASSES[1:]))
    for path, label in split.samples:
        item = int(path.stem)  # image i shows training item i
        name = fashion_scenes.CLASSES[1 + int(data.labels["train"][item])].replace("/", "-")
        assert split.classes[label] == name
        assert cv2.imread(str(path)).shape == (48, 48, 3)
    val = scan_split(root, "val", split.classes)
    assert len(val.samples) == COUNTS["val"]


def test_an_existing_folder_is_refused(built: tuple[Path, Path]) -> None:
    with pytest.raises(fashion_scenes.DatasetError, match="not empty"):
        fashion_products.build(built[0], COUNTS, 48, seed=5)
