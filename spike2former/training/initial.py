"""Starting weights: ImageNet backbones, and fine-tuning a model for another set of classes.

``load_backbone`` does what the official backbone ``init_weights`` does (architecture.md §3.4):
the checkpoint's weights (under ``model`` or ``state_dict``, or the bare dict) with ``module.``
and ``backbone.`` prefixes removed and the classification head (``head.*``, ``head_kd.*``)
dropped, loaded into ``model.backbone``; missing and unexpected keys are reported instead of
printed. ``.pth`` files are read without running code (``convert.read_state_dict``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from torch import Tensor

from ..config import ModelConfig
from ..convert import read_state_dict
from ..errors import CheckpointError
from ..modeling.spike2former import Spike2Former

_HEAD_PREFIXES = ("head.", "head_kd.")
# Weights whose shape depends on the number of classes (K + 1 class logits).
CLASS_KEYS = ("decode_head.cls_embed.weight", "decode_head.cls_embed.bias")


@dataclass(frozen=True)
class BackboneLoad:
    """What ``load_backbone`` did: keys loaded, backbone keys the file lacked (left at their
    initial values), file keys the backbone does not have (ignored), head keys dropped."""

    loaded: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    head_keys: int

    def summary(self) -> str:
        parts = [f"{self.loaded} backbone tensors loaded"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
                parts.append(f"{len(keys)} {label} ({shown})")
        if self.head_keys:
            parts.append(f"{self.head_keys} classification-head tensors ignored")
        return "; ".join(parts)


def backbone_state(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], int]:
    """Backbone weights of a checkpoint with prefixes stripped, and how many head keys it had."""
    state = read_state_dict(path, containers=("model", "state_dict"))
    cleaned: dict[str, Tensor] = {}
    heads = 0
    for key, value in state.items():
        key = key.removeprefix("module.").removeprefix("backbone.")
        if key.startswith(_HEAD_PREFIXES):
            heads += 1
            continue
        cleaned[key] = value
    return cleaned, heads


def load_backbone(model: Spike2Former, path: str | os.PathLike[str]) -> BackboneLoad:
    """Load an ImageNet checkpoint into ``model.backbone`` (non-strictly, like the official code).

    Raises ``CheckpointError`` when no key fits the backbone (a different network, or a whole
    segmentation model) or a shared key has another shape (another backbone size).
    """
    state, heads = backbone_state(path)
    expected = model.backbone.state_dict()
    misshaped = [
        f"{key}: file {list(value.shape)} vs backbone {list(expected[key].shape)}"
        for key, value in state.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if misshaped:
        shown = "; ".join(misshaped[:3])
        raise CheckpointError(
            f"{path}: backbone weights of another size ({len(misshaped)} shape mismatches: "
            f"{shown}); check the preset's backbone"
        )
    matched = [key for key in state if key in expected]
    if not matched:
        example = ", ".join(sorted(state)[:3])
        raise CheckpointError(
            f"{path}: no key fits the {model.config.backbone.version} backbone (the file has "
            f"{len(state)} keys, e.g. {example}); expected an ImageNet SDT-V2/V3 checkpoint"
        )
    result = model.backbone.load_state_dict(state, strict=False)
    return BackboneLoad(
        loaded=len(matched),
        missing=tuple(result.missing_keys),
        unexpected=tuple(result.unexpected_keys),
        head_keys=heads,
    )


def with_classes(
    model: Spike2Former,
    num_classes: int,
    class_names: tuple[str, ...] | None = None,
    palette: tuple[tuple[int, int, int], ...] | None = None,
) -> Spike2Former:
    """``model`` for ``num_classes`` classes: the same weights with a new class layer
    (``cls_embed``, initialised as the official head does) when the count changes. New class
    names drop the old palette (its colours belonged to the old classes) unless ``palette``
    gives new ones."""
    config: ModelConfig = model.config
    if num_classes == config.head.num_classes:
        if class_names is not None and class_names != config.class_names:
            model.config = config.replace(class_names=class_names, palette=palette)
        elif palette is not None:
            model.config = config.replace(palette=palette)
        return model
    new_config = config.replace(
        head=dataclasses.replace(config.head, num_classes=num_classes),
        class_names=class_names,
        palette=palette,
    )
    rebuilt = Spike2Former(new_config)
    state = {k: v for k, v in model.state_dict().items() if k not in CLASS_KEYS}
    result = rebuilt.load_state_dict(state, strict=False)
    if set(result.missing_keys) != set(CLASS_KEYS) or result.unexpected_keys:
        raise CheckpointError(
            "cannot move the weights to a head with another number of classes "
            f"(missing {result.missing_keys}, unexpected {result.unexpected_keys})"
        )
    return rebuilt.to(next(model.parameters()).device)
