"""A pretraining run's saved settings read back, and the settings given to a resume that
disagree with them, through the comparison segmentation runs use."""

from __future__ import annotations

from pathlib import Path

import pytest

from spike2former.errors import CheckpointError
from spike2former.pretrain import (
    PretrainJob,
    PretrainRecipe,
    pretrain_resume_conflicts,
    saved_pretrain_settings,
)
from spike2former.training import Conflict, RunFolder


@pytest.fixture
def run(tmp_path: Path) -> RunFolder:
    """A run folder holding only the ``config.json`` of a short pretraining run."""
    root = tmp_path / "run"
    root.mkdir()
    recipe = PretrainRecipe(iters=20, crop_size=32, warmup_iters=2)
    job = PretrainJob(recipe, str(tmp_path / "images"), val_split=None, seed=3, preset="tiny")
    run = RunFolder(root)
    run.write_config({"job": job.to_dict(), "processes": 1, "classes": ["a", "b"]})
    return run


def test_saved_settings_by_name(run: RunFolder, tmp_path: Path) -> None:
    saved = saved_pretrain_settings(run)
    assert (saved["iters"], saved["crop_size"], saved["warmup_iters"]) == (20, 32, 2)
    assert (saved["root"], saved["val_split"], saved["seed"]) == (str(tmp_path / "images"), None, 3)
    assert (saved["preset"], saved["conventional"], saved["lr"]) == ("tiny", False, None)
    assert "recipe" not in saved


def test_the_run_s_own_settings_do_not_conflict(
    run: RunFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pretrain_resume_conflicts(run, saved_pretrain_settings(run)) == []
    monkeypatch.chdir(tmp_path)
    assert pretrain_resume_conflicts(run, {"root": Path("images"), "val_split": None}) == []


def test_conflicts_name_both_values_in_the_order_given(run: RunFolder) -> None:
    given = {"crop_size": 48, "seed": 3, "conventional": True, "lr": 0.1}
    assert pretrain_resume_conflicts(run, given) == [
        Conflict("crop_size", 48, 32),
        Conflict("conventional", True, False),
        Conflict("lr", 0.1, None),
    ]


def test_unknown_names_and_other_runs(run: RunFolder) -> None:
    with pytest.raises(KeyError, match="no run settings named speed"):
        pretrain_resume_conflicts(run, {"speed": 1})
    run.write_config({"job": {"recipe": {}, "data": {}}})
    with pytest.raises(CheckpointError, match="no pretraining run configuration"):
        saved_pretrain_settings(run)
