"""Pretrained backbone files: safetensors with the official ImageNet key layout.

The tensors are the backbone's weights without a prefix plus ``head.weight`` / ``head.bias``,
as in the SDT repositories' checkpoints, so ``s2f train --init-backbone FILE`` takes a file of
``s2f pretrain`` and an official one alike. The metadata adds what a resumed run needs: the model
configuration the backbone belongs to and the class names of the head.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..config import ModelConfig
from ..errors import CheckpointError
from ..model_file import write_tensors
from .classifier import BackboneClassifier

FORMAT_NAME = "s2f-backbone"
FORMAT_VERSION = "1"


def save_classifier(model: BackboneClassifier, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s backbone and head to ``path`` atomically."""
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_json(),
        "class_names": json.dumps(list(model.class_names)),
    }
    return write_tensors(model.backbone_state(), metadata, path)


def load_classifier(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> BackboneClassifier:
    """The classifier stored by ``save_classifier``."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT_NAME:
                raise CheckpointError(f"{path}: not a backbone file written by s2f pretrain")
            if metadata.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(
                    f"{path}: backbone file version {metadata.get('format_version')!r}; this "
                    f"s2f reads version {FORMAT_VERSION}"
                )
            config = ModelConfig.from_json(metadata["config"])
            names = tuple(str(name) for name in json.loads(metadata["class_names"]))
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, KeyError, ValueError) as exc:  # ConfigError included
        raise CheckpointError(f"{path}: unreadable backbone file ({exc})") from None
    model = BackboneClassifier(config, names)
    try:
        model.load_backbone_state(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored configuration") from exc
    return model.to(device)
