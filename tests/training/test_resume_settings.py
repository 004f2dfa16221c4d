"""A run's saved settings read back, and the settings given to a resume that disagree with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from spike2former.errors import CheckpointError
from spike2former.training import (
    Conflict,
    DataSpec,
    RunFolder,
    TrainJob,
    recipe_for,
    resume_conflicts,
    saved_settings,
    settings_conflicts,
)
from tests.helpers import small_config


def write_run(root: Path, data: DataSpec, seed: int = 0) -> RunFolder:
    """A run folder holding only the ``config.json`` of a tiny-recipe run of 20 iterations."""
    run = RunFolder(root)
    root.mkdir(parents=True)
    recipe = recipe_for("tiny").overridden(iters=20, crop_size=(32, 32), clip_grad=0)
    init = {"preset": None, "model": "start.safetensors", "recipe": "tiny", "conventional": False}
    train_job = TrainJob(recipe, data, seed=seed, init=init)
    config = {"model": small_config(test_size=0).to_dict(), "job": train_job.to_dict()}
    run.write_config({**config, "processes": 1})
    return run


@pytest.fixture
def run(tmp_path: Path) -> RunFolder:
    return write_run(tmp_path / "run", DataSpec.of("folder", tmp_path / "data"), seed=3)


def test_saved_settings_by_name(run: RunFolder, tmp_path: Path) -> None:
    saved = saved_settings(run)
    assert (saved["iters"], saved["warmup_iters"], saved["crop_size"]) == (20, 0, (32, 32))
    assert (saved["clip_grad"], saved["seed"], saved["amp"]) == (None, 3, False)
    assert (saved["format"], saved["root"]) == ("folder", str(tmp_path / "data"))
    assert (saved["train_split"], saved["val_split"]) == ("train", "val")
    assert (saved["num_classes"], saved["test_size"]) == (small_config().head.num_classes, 0)
    assert (saved["model"], saved["preset"], saved["init_backbone"]) == (
        "start.safetensors",
        None,
        None,
    )
    assert saved["conventional"] is False


def test_the_run_s_own_settings_do_not_conflict(run: RunFolder) -> None:
    assert resume_conflicts(run, saved_settings(run)) == []
    assert resume_conflicts(run, {}) == []


def test_values_are_taken_as_a_new_run_takes_them(
    run: RunFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    given = {"root": Path("data"), "crop_size": [32, 32], "clip_grad": 0, "seed": 3}
    assert resume_conflicts(run, given) == []


def test_conflicts_name_both_values_in_the_order_given(run: RunFolder) -> None:
    assert resume_conflicts(run, {"seed": 1}) == [Conflict("seed", 1, 3)]
    conflicts = resume_conflicts(run, {"lr": 0.5, "seed": 3, "crop_size": (64, 64)})
    assert conflicts == [Conflict("lr", 0.5, 0.001), Conflict("crop_size", (64, 64), (32, 32))]
    assert str(conflicts[0]) == "lr=0.5 conflicts with the run's 0.001"


def test_cocostuff_is_the_layout_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    (root / "coco_stuff164k" / "images" / "train2017").mkdir(parents=True)
    run = write_run(tmp_path / "run", DataSpec.of("cocostuff", root))
    assert saved_settings(run)["format"] == "cocostuff164k"
    assert resume_conflicts(run, {"format": "cocostuff"}) == []
    assert resume_conflicts(run, {"format": "cocostuff10k"}) == [
        Conflict("format", "cocostuff10k", "cocostuff164k")
    ]


def test_unknown_names_and_broken_configurations(run: RunFolder) -> None:
    with pytest.raises(KeyError, match="no run settings named speed"):
        resume_conflicts(run, {"speed": 1})
    run.write_config({"job": {}})
    with pytest.raises(CheckpointError, match="unusable run configuration"):
        saved_settings(run)


def test_one_comparison_for_any_saved_settings(tmp_path: Path) -> None:
    saved = {"root": str(tmp_path / "data"), "size": 32, "name": "a"}
    assert settings_conflicts(saved, {"root": tmp_path / "x" / ".." / "data", "size": 32}) == []
    assert settings_conflicts(saved, {"size": [32], "name": "b"}) == [
        Conflict("size", [32], 32),
        Conflict("name", "b", "a"),
    ]
    # ``as_saved`` takes a given value to the form the run keeps
    assert settings_conflicts(saved, {"size": [32]}, lambda name, value: value[0]) == []
    with pytest.raises(KeyError, match="no run settings named other"):
        settings_conflicts(saved, {"other": 1})
