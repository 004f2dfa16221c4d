"""The model shipped inside the package: registry entry, file, offline resolution, the default of
every command, and what it predicts on the example scenes of ``examples/``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from spike2former import load_model
from spike2former.datasets.io import read_label
from spike2former.inference.predictor import Predictor
from spike2former.inference.sources import read_image
from spike2former.model_file import read_model_config
from spike2former.weights import DEFAULT_MODEL, Cache, download, get_entry, resolve_model
from spike2former.weights.download import sha256_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCENES = sorted(EXAMPLES.glob("scene_*.jpg"))
FASHION_CLASSES = (
    "background", "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
    "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, downloads off: the bundled model must need neither."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("S2F_HOME", str(cache))
    monkeypatch.setenv("S2F_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return cache


def examples_dataset(root: Path, scenes: list[Path], splits: tuple[str, ...]) -> Path:
    """A ``folder`` dataset at ``root`` whose splits each hold ``scenes`` and their labels."""
    for split in splits:
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for scene in scenes:
            (root / "images" / split / scene.name).write_bytes(scene.read_bytes())
            label = EXAMPLES / "labels" / f"{scene.stem}.png"
            (root / "annotations" / split / label.name).write_bytes(label.read_bytes())
    return root


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [*map(str, args)])


def test_the_bundled_file_matches_its_registry_entry() -> None:
    entry = get_entry(DEFAULT_MODEL)
    path = entry.bundled_path()
    assert entry.kind == "model" and entry.urls == ()
    assert path.stat().st_size <= 15_000_000
    assert entry.preset == "tiny"  # with its classes and test size as overrides
    expected = entry.network_config().replace(class_names=entry.class_names)
    assert read_model_config(path).replace(palette=None) == expected
    assert sha256_file(path) == entry.sha256
    model = load_model(path)
    assert model.config.class_names == FASHION_CLASSES
    assert model.config.palette is not None and len(model.config.palette) == len(FASHION_CLASSES)
    assert model.config.spiking and model.config.head.num_classes == entry.num_classes


def test_resolution_is_offline_and_writes_nothing(_isolated_cache: Path) -> None:
    bundled = get_entry(DEFAULT_MODEL).bundled_path()
    assert resolve_model(DEFAULT_MODEL) == bundled
    result = download(DEFAULT_MODEL)
    assert (result.path, result.checksum, result.cached) == (bundled, "bundled", True)
    assert not _isolated_cache.exists() or not any(_isolated_cache.rglob("*"))
    assert Cache().find(DEFAULT_MODEL) is None


def test_models_lists_it_as_bundled() -> None:
    result = run("models", "--json")
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.stdout)["weights"] if r["name"] == DEFAULT_MODEL]
    assert row["bundled"] and row["registered"]


def _pooled_example_pixels() -> tuple[int, int, int]:
    """Over the example scenes: product pixels found as some product, of those the ones given
    their right class, and the union of true and predicted product pixels."""
    predictor = Predictor(load_model(resolve_model(DEFAULT_MODEL)), device="cpu")
    found = named = union = 0
    for scene in SCENES:
        truth = read_label(EXAMPLES / "labels" / f"{scene.stem}.png")
        [prediction] = predictor.predict([read_image(scene)])
        both = (truth > 0) & (prediction.labels > 0)
        found += np.count_nonzero(both)
        named += np.count_nonzero(both & (truth == prediction.labels))
        union += np.count_nonzero((truth > 0) | (prediction.labels > 0))
    return found, named, union


def test_it_finds_and_names_the_objects_of_the_example_scenes() -> None:
    """Pooled over the example scenes: the outlines (class-agnostic IoU; an untrained network
    calls everything background, 0) and the names of what it found (ten product classes, so
    chance is about 0.1; the model trained without a pretrained backbone scored below 0.2)."""
    assert len(SCENES) >= 3
    found, named, union = _pooled_example_pixels()
    assert found / union > 0.8
    assert named / found > 0.5


def test_segment_uses_it_by_default(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("segment", SCENES[0], "-o", out, "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == DEFAULT_MODEL
    with Image.open(out / f"{SCENES[0].stem}.png") as labels:
        assert labels.mode == "P" and labels.size == (256, 256)
        palette = labels.getpalette()[: 3 * len(FASHION_CLASSES)]
    model = load_model(resolve_model(DEFAULT_MODEL))
    assert palette == [v for colour in model.config.palette for v in colour]


def test_segment_with_no_source_segments_the_bundled_scenes(tmp_path: Path) -> None:
    """From an empty folder, offline: ``s2f segment`` alone works out of the box."""
    result = run("segment", "-o", "out", "--save", "mask")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "no SOURCE given" in line]
    assert len(notes) == 1 and "example scenes shipped with s2f" in notes[0]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        s.stem + ".png" for s in SCENES
    ]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["model"] == DEFAULT_MODEL


def test_firing_rates_and_eval_use_it_by_default(tmp_path: Path) -> None:
    result = run("firing-rates", SCENES[0], "--json", "-o", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["model"] == DEFAULT_MODEL
    data = examples_dataset(tmp_path / "data", SCENES, ("test",))
    (data / "classes.txt").write_text("\n".join(FASHION_CLASSES) + "\n")
    result = run("eval", "--data", data, "--format", "folder", "--split", "test", "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["per_class"]["background"]["IoU"] > 50 and 0 < scores["mIoU"] < 100


def test_train_fine_tunes_it_by_default(tmp_path: Path) -> None:
    data = examples_dataset(tmp_path / "data", SCENES[:1], ("train", "val"))
    out = tmp_path / "run"
    result = run(
        "train", "--data", data, "--format", "folder", "--iters", "1", "--warmup-iters", "0",
        "--batch-size", "1", "--crop-size", "64", "--pipeline", "random_crop", "--workers", "0",
        "--output", out, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    init = json.loads((out / "config.json").read_text())["job"]["init"]
    assert (init["model"], init["preset"]) == (DEFAULT_MODEL, None)
    tuned = load_model(out / "weights" / "last.safetensors")
    assert tuned.config.class_names == FASHION_CLASSES  # the model's own names, kept


def test_example_labels_are_the_class_ids() -> None:
    for scene in SCENES:
        truth = read_label(EXAMPLES / "labels" / f"{scene.stem}.png")
        assert truth.shape == (256, 256) and truth.max() < len(FASHION_CLASSES)
        assert np.count_nonzero(truth) > 0
