"""Model files: safetensors weights with the configuration (and class names) in the metadata.

``save_model(model, path)`` and ``load_model(path)`` need nothing else; the keys are the official
checkpoint keys (``backbone.*``, ``decode_head.*``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from .atomic import write_atomically
from .config import ModelConfig
from .errors import CheckpointError, OutputError
from .modeling.spike2former import Spike2Former

FORMAT_NAME = "s2f"
FORMAT_VERSION = "1"


def save_model(model: Spike2Former, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` atomically (a temporary file renamed into place)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_json(),
    }
    try:
        return write_atomically(path, lambda tmp: save_file(state, tmp, metadata=metadata))
    except OutputError as exc:
        raise CheckpointError(str(exc)) from None


def read_model_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The configuration stored in a model file, without reading the weights."""
    return _stored_config(Path(path))


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Spike2Former:
    """Rebuild the network stored in ``path``, in evaluation mode, on ``device``."""
    path = Path(path)
    config = _stored_config(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot read the weights ({exc})") from None
    model = Spike2Former(config)
    load_weights(model, state, str(path))
    return model.to(device).eval()


def is_model_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a safetensors file written by ``save_model`` (valid or not)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return (f.metadata() or {}).get("format") == FORMAT_NAME
    except (SafetensorError, OSError):
        return False


def _stored_config(path: Path) -> ModelConfig:
    try:
        return ModelConfig.from_json(_read_metadata(path)["config"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{path}: invalid configuration in the metadata ({exc})") from None


def _read_metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors model file ({exc}); "
            "official .pth checkpoints must first be converted with `s2f convert`"
        ) from None
    if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
        raise CheckpointError(
            f"{path}: safetensors file without an s2f configuration; "
            "if it holds official Spike2Former weights, convert it with `s2f convert`"
        )
    return metadata


def load_weights(model: torch.nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Strictly load ``state`` into ``model``; list every missing, unexpected or misshaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", misshaped),
    ):
        if items:
            shown = ", ".join(items[:5]) + (
                f", ... ({len(items)} in all)" if len(items) > 5 else ""
            )
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the model; " + "; ".join(problems))
    with torch.no_grad():
        for key, value in expected.items():
            value.copy_(state[key])
