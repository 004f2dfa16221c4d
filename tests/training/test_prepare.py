"""A new run prepared from the choices: the starting network, its classes and backbone, the
recipe, the job, and errors that name the arguments at fault."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from spike2former import load_model
from spike2former.errors import OfflineError, WeightsSpecError
from spike2former.training import (
    ClassCountError,
    DataSpec,
    RecipeError,
    RunRequest,
    RunRequestError,
    prepare_run,
    recipe_for,
)
from spike2former.weights import DEFAULT_MODEL
from tests.training.helpers import CLASSES, write_shapes_dataset, write_small_model
from tests.training.test_initial import imagenet_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataSpec:
    root = write_shapes_dataset(tmp_path_factory.mktemp("prepare") / "data", train=1, val=1)
    return DataSpec.of("folder", root)


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty weights cache, and no downloads."""
    monkeypatch.setenv("S2F_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("S2F_OFFLINE", "1")


def test_a_preset_starts_fresh_with_its_own_recipe(data: DataSpec) -> None:
    prepared = prepare_run(RunRequest(data, preset="tiny", seed=5))
    again = prepare_run(RunRequest(data, preset="tiny", seed=5))
    network, job = prepared.network, prepared.job
    assert network.training and network.config.class_names[:3] == CLASSES
    assert job.recipe == recipe_for("tiny") and (job.seed, job.data) == (5, data)
    assert job.init == {
        "preset": "tiny",
        "model": None,
        "recipe": "tiny",
        "init_backbone": None,
        "conventional": False,
    }
    weights, same = network.state_dict(), again.network.state_dict()
    assert all(torch.equal(weights[key], same[key]) for key in weights)  # seeded


def test_a_model_file_is_fine_tuned_with_the_official_recipe(
    data: DataSpec, tmp_path: Path
) -> None:
    start = write_small_model(tmp_path / "start.safetensors")
    seen: list[str] = []

    @contextmanager
    def downloads(name: str) -> Iterator[None]:
        seen.append(name)
        yield None

    prepared = prepare_run(RunRequest(data, model=str(start), conventional=True), downloads)
    network, job = prepared.network, prepared.job
    assert seen == [str(start)] and network.training
    assert not network.config.spiking
    assert job.init["model"] == str(start) and job.init["conventional"] is True
    assert job.init["recipe"] == "sdtv3b-ade20k"  # the small network's backbone is SDT-V3
    original = load_model(start).state_dict()
    tuned = network.state_dict()
    assert all(torch.equal(original[key], tuned[key]) for key in original)
    assert prepared.notes == ()


def test_neither_preset_nor_model_means_the_shipped_model(data: DataSpec) -> None:
    assert RunRequest(data).model == DEFAULT_MODEL
    assert RunRequest(data, preset="tiny").model is None


def test_the_head_is_fitted_to_the_dataset_s_classes(data: DataSpec, tmp_path: Path) -> None:
    start = str(write_small_model(tmp_path / "five.safetensors", num_classes=5))
    padded = prepare_run(RunRequest(data, model=start))
    assert padded.network.config.class_names == (*CLASSES, "unused_3", "unused_4")
    (note,) = padded.notes
    assert note.fields == {"num_classes": 3}
    assert str(note) == (
        "the model has 5 class slots and the dataset uses 3; num_classes=3 would train a "
        "3-class head"
    )
    refitted = prepare_run(RunRequest(data, model=start, num_classes=3))
    assert refitted.network.config.head.num_classes == 3 and refitted.notes == ()
    with pytest.raises(ClassCountError) as caught:
        prepare_run(RunRequest(data, model=start, num_classes=2))
    assert caught.value.fields == {"num_classes": 3}
    assert "pass num_classes=3 to train a 3-class head" in str(caught.value)


def test_an_imagenet_backbone_is_loaded_and_reported(data: DataSpec, tmp_path: Path) -> None:
    backbone = imagenet_checkpoint(tmp_path / "in1k.pth")
    start = str(write_small_model(tmp_path / "start.safetensors"))
    request = RunRequest(data, model=start, init_backbone=str(tmp_path / "in1k.pth"))
    prepared = prepare_run(request)
    loaded = prepared.network.backbone.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in backbone.items())
    (note,) = prepared.notes
    assert str(note) == (
        f"init_backbone={str(tmp_path / 'in1k.pth')!r}: {len(backbone)} backbone tensors "
        "loaded; 2 classification-head tensors ignored"
    )
    assert prepared.job.init["init_backbone"] == str(tmp_path / "in1k.pth")


def test_recipe_overrides_and_the_test_size(data: DataSpec) -> None:
    overrides = {"iters": 20, "crop_size": (32, 32), "pipeline": "random_crop", "clip_grad": 0}
    prepared = prepare_run(RunRequest(data, preset="tiny", overrides=overrides))
    recipe = prepared.job.recipe
    assert recipe == recipe_for("tiny").overridden(**overrides)
    assert (recipe.iters, recipe.crop_size, recipe.clip_grad) == (20, (32, 32), None)
    assert prepared.network.config.test_size == 0  # trained at the images' own scale
    chosen = prepare_run(RunRequest(data, preset="tiny", overrides=overrides, test_size=48))
    assert chosen.network.config.test_size == 48
    with pytest.raises(RecipeError) as caught:
        prepare_run(RunRequest(data, preset="tiny", overrides={"iters": 5, "warmup_iters": 5}))
    assert caught.value.fields == {"warmup_iters": 5, "iters": 5}


def test_choices_that_make_no_run(data: DataSpec) -> None:
    with pytest.raises(RunRequestError) as caught:
        RunRequest(data, preset="tiny", model="start.safetensors")
    assert caught.value.fields == {"preset": "tiny", "model": "start.safetensors"}
    assert str(caught.value) == (
        "give either preset='tiny' (a fresh network) or model='start.safetensors' "
        "(fine-tuning), not both"
    )
    assert caught.value.describe(lambda name, value: f"<{name}>") == (
        "give either <preset> (a fresh network) or <model> (fine-tuning), not both"
    )
    with pytest.raises(RunRequestError, match="unknown preset 'sdtv9'"):
        RunRequest(data, preset="sdtv9")
    with pytest.raises(RunRequestError, match="unknown recipe 'fast'"):
        RunRequest(data, preset="tiny", recipe="fast")


def test_weights_errors_name_the_arguments(
    data: DataSpec, tmp_path: Path, offline_cache: None
) -> None:
    with pytest.raises(WeightsSpecError, match="no such model file"):
        prepare_run(RunRequest(data, model=str(tmp_path / "absent.safetensors")))
    with pytest.raises(WeightsSpecError) as caught:
        prepare_run(RunRequest(data, model="sdtv3-19m-imagenet"))
    assert caught.value.fields == {"init_backbone": "sdtv3-19m-imagenet"}
    assert str(caught.value).endswith("give it as init_backbone='sdtv3-19m-imagenet'")
    with pytest.raises(OfflineError) as offline:
        prepare_run(RunRequest(data, model="spike2former-sdtv2-ade20k"))
    assert offline.value.fields == {"offline": True}
    assert "downloads are off (offline=True or S2F_OFFLINE=1)" in str(offline.value)
