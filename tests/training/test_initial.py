"""Starting weights: ImageNet backbone checkpoints, class-layer changes, the dataset's classes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from spike2former import build_model
from spike2former.errors import CheckpointError, DatasetError
from spike2former.training import (
    ClassCountError,
    DataSpec,
    fit_model_to_data,
    load_backbone,
    with_classes,
)
from spike2former.training.initial import CLASS_KEYS
from tests.helpers import small_config
from tests.training.helpers import CLASSES, write_shapes_dataset


def imagenet_checkpoint(path: Path, prefix: str = "", drop: int = 0, seed: int = 1) -> dict:
    """A classification checkpoint as the SDT repositories save it: the weights under ``model``
    with a ``head`` layer, next to the optimizer state and the argparse training arguments."""
    torch.manual_seed(seed)
    backbone = build_model(small_config()).backbone.state_dict()
    weights = {prefix + k: v.clone() for k, v in list(backbone.items())[drop:]}
    weights[prefix + "head.weight"] = torch.randn(1000, 40)
    weights[prefix + "head_kd.bias"] = torch.randn(1000)
    torch.save(
        {
            "model": weights,
            "optimizer": {"state": {}, "param_groups": []},
            "epoch": 199,
            "args": argparse.Namespace(lr=6e-4, model="E_19M"),
        },
        path,
    )
    return backbone


@pytest.mark.parametrize("prefix", ["", "module.", "backbone.", "module.backbone."])
def test_imagenet_backbone_loads_with_any_prefix(tmp_path: Path, prefix: str) -> None:
    expected = imagenet_checkpoint(tmp_path / "in1k.pth", prefix)
    model = build_model(small_config())
    head_before = {k: v.clone() for k, v in model.decode_head.state_dict().items()}
    report = load_backbone(model, tmp_path / "in1k.pth")
    assert (report.loaded, report.missing, report.unexpected) == (len(expected), (), ())
    assert report.head_keys == 2
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert all(torch.equal(model.decode_head.state_dict()[k], v) for k, v in head_before.items())


def test_missing_backbone_keys_are_reported(tmp_path: Path) -> None:
    everything = imagenet_checkpoint(tmp_path / "partial.pth", drop=3)
    report = load_backbone(build_model(small_config()), tmp_path / "partial.pth")
    assert report.missing == tuple(list(everything)[:3])
    assert report.summary().startswith(f"{report.loaded} backbone tensors loaded; 3 missing (")


def test_other_networks_are_refused(tmp_path: Path) -> None:
    torch.save({"model": {"conv1.weight": torch.zeros(3)}}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="no key fits the sdtv3 backbone"):
        load_backbone(build_model(small_config()), tmp_path / "resnet.pth")
    imagenet_checkpoint(tmp_path / "wide.pth")
    wider = build_model(small_config(backbone={"embed_dims": (8, 16, 32, 48)}))
    with pytest.raises(CheckpointError, match="backbone weights of another size"):
        load_backbone(wider, tmp_path / "wide.pth")


def test_new_class_count_keeps_everything_but_the_class_layer() -> None:
    model = build_model(small_config())
    tuned = with_classes(model, 3, ("a", "b", "c"))
    assert tuned.config.head.num_classes == 3 and tuned.config.class_names == ("a", "b", "c")
    assert tuned.decode_head.cls_embed.weight.shape[0] == 4
    before, after = model.state_dict(), tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k not in CLASS_KEYS)


def test_dataset_classes_reach_the_model(tmp_path: Path) -> None:
    data = DataSpec.of("folder", write_shapes_dataset(tmp_path / "d", train=1, val=0))
    model, note = fit_model_to_data(build_model(small_config()), data)  # 5 slots, 3 classes
    assert model.config.class_names == (*CLASSES, "unused_3", "unused_4")
    assert note is not None and "num_classes=3 would train" in str(note)
    model, note = fit_model_to_data(build_model(small_config()), data, 3, test_size=0)
    assert (model.config.class_names, note, model.config.test_size) == (CLASSES, None, 0)
    with pytest.raises(ClassCountError, match="pass num_classes=3 to train a 3-class head"):
        fit_model_to_data(build_model(small_config()), data, 2)


def test_a_folder_palette_reaches_the_model(tmp_path: Path) -> None:
    root = write_shapes_dataset(tmp_path / "d", train=1, val=0)
    (root / "palette.txt").write_text("0 0 0\n255, 0, 0\n\n0 0 255\n")
    data = DataSpec.of("folder", root)
    model, _ = fit_model_to_data(build_model(small_config()), data, 3)
    assert model.config.palette == ((0, 0, 0), (255, 0, 0), (0, 0, 255))
    padded, _ = fit_model_to_data(build_model(small_config()), data)  # 5 slots: generated rest
    assert padded.config.palette[:3] == model.config.palette and len(padded.config.palette) == 5
    # new class names drop colours that belonged to the old ones
    renamed = with_classes(model, 3, ("x", "y", "z"))
    assert renamed.config.palette is None
    (root / "palette.txt").write_text("0 0 0\n1 2 3\n")
    with pytest.raises(DatasetError, match="2 colours for 3 classes"):
        fit_model_to_data(build_model(small_config()), DataSpec.of("folder", root), 3)
    (root / "palette.txt").write_text("0 0 0\nred\n4 5 6\n")
    with pytest.raises(DatasetError, match="line 2: expected 'R G B'"):
        fit_model_to_data(build_model(small_config()), DataSpec.of("folder", root), 3)
