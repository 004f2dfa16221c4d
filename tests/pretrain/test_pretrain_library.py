"""The pretraining pieces: the classifier and its official key layout, the ImageFolder scan,
the pipelines, the schedule, top-k counting."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spike2former.errors import DatasetError
from spike2former.inference.memory import MemoryLimitError
from spike2former.presets import get_preset
from spike2former.pretrain import (
    BackboneClassifier,
    PretrainRecipe,
    PretrainRequest,
    load_classifier,
    prepare_pretraining,
    pretrain,
    resume_pretrain,
    save_classifier,
    scan_split,
)
from spike2former.pretrain import loop as pretrain_loop
from spike2former.pretrain.augment import EvalTransform, TrainTransform, random_resized_crop
from spike2former.pretrain.classifier import top_k_correct
from spike2former.pretrain.recipe import build_optimizer, build_scheduler
from tests.pretrain.helpers import CLASSES, write_image_folder

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
KEYS = SHARED / "docs" / "official_state_dict_keys.txt"


def _official_backbone_keys(section: str) -> set[str]:
    """Backbone keys of the official listing's ``section`` (its ``## backbone`` heading)."""
    keys: set[str] = set()
    current = None
    for line in KEYS.read_text().splitlines():
        if line.startswith("## "):
            current = line
        elif current is not None and section in current and line.startswith("backbone."):
            keys.add(line.split()[0].removeprefix("backbone."))
    return keys


@pytest.mark.parametrize(
    ("preset", "section"), [("sdtv3b-ade20k", "sdtv3.py"), ("sdtv2-ade20k", "sdtv2.py")]
)
def test_backbone_state_has_the_official_imagenet_layout(preset: str, section: str) -> None:
    official = _official_backbone_keys(section)
    assert official, f"no {section} backbone keys in {KEYS}"
    state = BackboneClassifier(get_preset(preset), ("a", "b")).backbone_state()
    assert set(state) - {"head.weight", "head.bias"} == official
    assert state["head.weight"].shape == (2, get_preset(preset).backbone.out_channels[-1])


def test_classifier_logits_and_time_steps() -> None:
    torch.manual_seed(0)
    config = get_preset("tiny")
    model = BackboneClassifier(config, CLASSES).eval()
    images = torch.randn(2, 3, 64, 64)
    logits = model(images)
    assert logits.shape == (2, 3)
    # T identical copies of the input: the mean over time steps equals one step
    two_steps = dataclasses.replace(config.backbone, time_steps=2)
    repeated = BackboneClassifier(config.replace(backbone=two_steps), CLASSES).eval()
    repeated.load_state_dict(model.state_dict())
    torch.testing.assert_close(repeated(images), logits)
    # a conventional network differs from the spiking one with the same weights
    model.set_spiking(False)
    assert not torch.allclose(model(images), logits)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        model(torch.zeros(3, 64, 64))


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = BackboneClassifier(get_preset("tiny"), CLASSES).train()
    logits = model(torch.randn(4, 3, 32, 32))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    # every parameter is in the graph (some attention weights may see no spikes at init)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    assert model.head.weight.grad.any()
    assert model.backbone.downsample1_1.encode_conv.weight.grad.any()


def test_a_saved_classifier_loads_back_equal(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = BackboneClassifier(get_preset("tiny").replace(spiking=False), CLASSES)
    loaded = load_classifier(save_classifier(model, tmp_path / "b.safetensors"))
    assert loaded.class_names == CLASSES and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert value.equal(loaded.state_dict()[key]), key


def test_scan_reads_classes_in_sorted_order_and_any_suffix_case(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, train=2, val=1)
    (root / "train" / "circle" / "00.png").rename(root / "train" / "circle" / "00.PNG")
    (root / "train" / "circle" / "notes.txt").write_text("not an image")
    split = scan_split(root, "train")
    assert split.classes == CLASSES
    assert len(split.samples) == 6
    assert [label for _, label in split.samples] == [0, 0, 1, 1, 2, 2]
    # validation labels refer to the training classes, even with a subset of them
    for path in (root / "val" / "circle").iterdir():
        path.unlink()
    (root / "val" / "circle").rmdir()
    val = scan_split(root, "val", split.classes)
    assert {label for _, label in val.samples} == {1, 2}
    with pytest.raises(DatasetError, match="not in the training split"):
        scan_split(root, "val", ("circle",))


def test_pipelines_are_deterministic_and_sized() -> None:
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    train = TrainTransform(32, erase_prob=1.0)
    first = train(image, np.random.default_rng([1, 2, 3]))
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32
    assert first.equal(train(image, np.random.default_rng([1, 2, 3])))
    assert not first.equal(train(image, np.random.default_rng([1, 2, 4])))
    evaluated = EvalTransform(32)(image, np.random.default_rng(0))
    assert evaluated.shape == (3, 32, 32)
    assert evaluated.equal(EvalTransform(32)(image, np.random.default_rng(5)))
    # an extreme aspect ratio falls back to the central crop
    strip = np.zeros((4, 400, 3), np.uint8)
    assert random_resized_crop(strip, 16, np.random.default_rng(0)).shape == (16, 16, 3)


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    recipe = PretrainRecipe(iters=100, warmup_iters=10, base_lr=0.256, min_lr=1e-4)
    model = torch.nn.Linear(2, 2)
    lr = recipe.peak_lr(256)
    assert lr == pytest.approx(0.256)
    optimizer = build_optimizer(model, recipe, lr)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    assert [len(g["params"]) for g in optimizer.param_groups] == [1, 1]
    scheduler = build_scheduler(optimizer, recipe, lr)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0 and rates[5] == pytest.approx(lr / 2) and rates[10] == pytest.approx(lr)
    assert rates[55] == pytest.approx(1e-4 + (lr - 1e-4) * 0.5 * (1 + math.cos(math.pi / 2)))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert PretrainRecipe(iters=200).warmup == 10
    assert PretrainRecipe(lr=0.5).peak_lr(1024) == 0.5


def test_top_k_counts() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    assert top_k_correct(logits, torch.tensor([1, 2, 0]), (1, 2, 5)) == [1, 1, 3]


def test_a_resume_that_no_longer_fits_is_refused_before_touching_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_image_folder(tmp_path / "data", train=2, val=1)
    overrides = {"iters": 2, "batch_size": 2, "crop_size": 32, "checkpoint_interval": 1}
    prepared = prepare_pretraining(PretrainRequest("tiny", root, overrides=overrides))
    run = tmp_path / "run"
    pretrain(prepared.model, prepared.job, run)
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}

    def no_room(*_: object) -> None:
        raise MemoryLimitError("a batch of 2 needs about 9 GB, 1 GB free")

    monkeypatch.setattr(pretrain_loop, "check_memory", no_room)
    with pytest.raises(MemoryLimitError, match="9 GB"):
        resume_pretrain(run)
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before
