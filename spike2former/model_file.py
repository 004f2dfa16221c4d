"""Model files: safetensors weights with the configuration (and class names) in the metadata.

``save_model(model, path)`` and ``load_model(path)`` need nothing else; the keys are the official
checkpoint keys (``backbone.*``, ``decode_head.*``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from .config import ModelConfig
from .errors import CheckpointError
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
    return write_atomically(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def write_atomically(path: str | os.PathLike[str], write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path``; no partial file on failure."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise CheckpointError(f"{target}: cannot write the file ({exc})") from None
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise CheckpointError(f"{target}: cannot write the file ({exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def read_model_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The configuration stored in a model file, without reading the weights."""
    return ModelConfig.from_json(_read_metadata(Path(path))["config"])


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Spike2Former:
    """Rebuild the network stored in ``path``, in evaluation mode, on ``device``."""
    path = Path(path)
    config = ModelConfig.from_json(_read_metadata(path)["config"])
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot read the weights ({exc})") from None
    model = Spike2Former(config)
    load_weights(model, state, str(path))
    return model.to(device).eval()


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
    try:
        json.loads(metadata["config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt configuration in the metadata ({exc})") from None
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
