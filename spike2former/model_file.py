"""Model files: safetensors weights with the configuration (and class names) in the metadata.

``save_model(model, path)`` and ``load_model(path)`` need nothing else; the keys are the official
checkpoint keys (``backbone.*``, ``decode_head.*``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from .atomic import write_atomically
from .config import ModelConfig
from .errors import CheckpointError, OutputError
from .modeling.spike2former import Spike2Former
from .state_layout import Layout, check_fits_in_memory, check_layout, state_layout, tensor_layout

FORMAT_NAME = "s2f"
FORMAT_VERSION = "1"

# safetensors' dtype codes -> torch's names; other codes are shown as they are and refused.
_DTYPES = {
    "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "BOOL": "bool",
    "U8": "uint8", "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64",
}  # fmt: skip


def save_model(model: Spike2Former, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` atomically (a temporary file renamed into place)."""
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_json(),
    }
    return write_tensors(model.state_dict(), metadata, path)


def write_tensors(
    state: Mapping[str, Tensor], metadata: dict[str, str], path: str | os.PathLike[str]
) -> Path:
    """``state`` (copied to the CPU, contiguous) and ``metadata`` as a safetensors file at
    ``path``, atomically; a failure to write is a one-line ``CheckpointError``."""
    tensors = {key: value.detach().contiguous().cpu() for key, value in state.items()}

    def write(tmp: str) -> None:
        try:
            save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as exc:  # the writer's I/O errors (a full disk) arrive as these
            raise OSError(_one_line(exc)) from None

    try:
        return write_atomically(path, write)
    except OutputError as exc:
        raise CheckpointError(str(exc)) from None


def read_model_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The configuration stored in a model file, every field checked, without reading the
    weights."""
    path = Path(path)
    with _opened(path) as f:
        return _stored_config(path, f.metadata())


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Spike2Former:
    """Rebuild the network stored in ``path``, in evaluation mode, on ``device``.

    The metadata, the memory the network needs and the shapes and dtypes of the tensors in the
    file's header are all checked before anything is allocated.
    """
    path = Path(path)
    with _opened(path) as f:
        config = _stored_config(path, f.metadata())
        model = build_for_weights(config, _header_layout(f), str(path))
        try:
            state = {key: f.get_tensor(key) for key in f.keys()}
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: cannot read the weights ({_one_line(exc)})") from None
    load_weights(model, state, str(path))
    return model.to(device).eval()


def build_for_weights(config: ModelConfig, found: Layout, source: str) -> Spike2Former:
    """A new network of ``config``, built once it is known, with nothing allocated, that it fits
    in memory and that the tensors described by ``found`` fit it."""
    expected = state_layout(config)
    check_fits_in_memory(expected, source)
    check_layout(expected, found, source)
    return Spike2Former(config)


def is_model_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a safetensors file written by ``save_model`` (valid or not)."""
    if not Path(path).is_file():
        return False
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return (f.metadata() or {}).get("format") == FORMAT_NAME
    except (SafetensorError, OSError):
        return False


def load_weights(model: torch.nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Strictly load ``state`` into ``model``; list every missing, unexpected, misshaped or
    mistyped key."""
    expected = model.state_dict()
    check_layout(tensor_layout(expected), tensor_layout(state), source)
    with torch.no_grad():
        for key, value in expected.items():
            value.copy_(state[key])


@contextmanager
def _opened(path: Path) -> Iterator[Any]:
    """The safetensors file ``path`` opened (header parsed, no tensor read); every failure a
    one-line ``CheckpointError``."""
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a model file")
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors model file ({_one_line(exc)}); "
            "official .pth checkpoints must first be converted with `s2f convert`"
        ) from None
    with handle as f:
        yield f


def _stored_config(path: Path, metadata: dict[str, str] | None) -> ModelConfig:
    metadata = metadata or {}
    if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
        raise CheckpointError(
            f"{path}: safetensors file without an s2f configuration; "
            "if it holds official Spike2Former weights, convert it with `s2f convert`"
        )
    version = metadata.get("format_version")
    if version is None:
        raise CheckpointError(f"{path}: s2f model file without a format version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: model file format version {version!r:.40}; this s2f reads version "
            f"{FORMAT_VERSION!r} (a newer s2f may have written the file)"
        )
    try:
        return ModelConfig.from_json(metadata["config"])
    except (ValueError, TypeError, RecursionError) as exc:
        raise CheckpointError(
            f"{path}: invalid configuration in the metadata ({_one_line(exc)})"
        ) from None


def _header_layout(f: Any) -> Layout:
    """Names, shapes and dtypes of the tensors in an opened file, as its header declares them."""
    layout: Layout = {}
    for key in f.keys():
        piece = f.get_slice(key)
        code = piece.get_dtype()
        layout[key] = (tuple(piece.get_shape()), _DTYPES.get(code, code))
    return layout


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
