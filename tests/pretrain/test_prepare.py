"""A new pretraining run prepared from the choices: the recipe, the job, the seeded classifier
for the training split's classes, and errors that name the arguments at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spike2former.errors import ConfigError, DatasetError
from spike2former.pretrain import (
    PretrainRecipe,
    PretrainRequest,
    PretrainRequestError,
    prepare_pretraining,
)
from tests.pretrain.helpers import CLASSES, write_image_folder


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("prepare"), train=1, val=1)


def test_a_preset_s_backbone_for_the_training_classes(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root.parent)
    request = PretrainRequest(
        "tiny", Path(root.name), val_split=None, overrides={"iters": 10, "crop_size": 48}, seed=4
    )
    prepared = prepare_pretraining(request)
    model, job = prepared.model, prepared.job
    assert model.class_names == CLASSES and model.config.spiking
    assert job.recipe == PretrainRecipe(iters=10, crop_size=48)
    assert (job.root, job.val_split, job.seed, job.preset) == (str(root), None, 4, "tiny")
    again = prepare_pretraining(request).model.state_dict()
    weights = model.state_dict()
    assert all(torch.equal(weights[key], again[key]) for key in weights)  # seeded


def test_conventional_neurons(root: Path) -> None:
    prepared = prepare_pretraining(PretrainRequest("tiny", root, conventional=True))
    assert not prepared.model.config.spiking and prepared.job.conventional


def test_an_unknown_preset_or_recipe_field_is_refused(root: Path) -> None:
    with pytest.raises(PretrainRequestError, match="unknown preset") as caught:
        PretrainRequest("nope", root)
    assert str(caught.value).startswith("preset='nope': unknown preset; choose one of ")
    assert caught.value.fields == {"preset": "nope"}
    with pytest.raises(PretrainRequestError, match="no pretraining recipe field named speed"):
        PretrainRequest("tiny", root, overrides={"speed": 1})


@pytest.mark.parametrize("crop_size", [8, 4096])
def test_a_crop_size_out_of_bounds_names_the_argument(root: Path, crop_size: int) -> None:
    with pytest.raises(ConfigError) as caught:
        prepare_pretraining(PretrainRequest("tiny", root, overrides={"crop_size": crop_size}))
    error = caught.value
    assert error.fields == {"crop_size": crop_size}
    assert str(error) == f"crop_size={crop_size}: pretraining crops are 32 to 1024 pixels square"
    assert error.describe(lambda name, value: f"--{name} {value}").startswith(
        f"--crop_size {crop_size}:"
    )


def test_recipe_errors_name_every_argument_at_fault(root: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        prepare_pretraining(
            PretrainRequest("tiny", root, overrides={"iters": 5, "warmup_iters": 5})
        )
    assert caught.value.fields == {"warmup_iters": 5, "iters": 5}
    assert str(caught.value) == "warmup_iters=5 must be at least 0 and below iters=5"
    with pytest.raises(ConfigError, match=r"^batch_size=0 must be at least 1$"):
        prepare_pretraining(PretrainRequest("tiny", root, overrides={"batch_size": 0}))


def test_a_root_without_a_training_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="train: no such folder"):
        prepare_pretraining(PretrainRequest("tiny", tmp_path))
