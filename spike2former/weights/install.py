"""A downloaded, checked file -> its place in the cache.

Backbones are kept as published; s2f model files are loaded in full, then renamed into place;
official checkpoints (``.pth`` or official-key safetensors, told apart by their first bytes, not
their names) are converted with what the registry knows (time steps, class names, test size).
Nothing reaches ``models/`` or ``backbones/`` unless all of that worked.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..convert import infer_config, read_state_dict
from ..errors import CheckpointError, DownloadError, OutputError
from ..model_file import (
    build_for_weights,
    is_model_file,
    load_model,
    load_weights,
    read_model_config,
    save_model,
)
from ..modeling.spike2former import Spike2Former
from ..state_layout import tensor_layout
from .cache import Cache
from .fetch import html_message, looks_like_html
from .registry import WeightsEntry


def install(
    partial: Path, cache: Cache, name: str, entry: WeightsEntry | None, label: str
) -> tuple[Path, bool]:
    """Move or convert the checked file ``partial`` into its place; (path, converted).

    ``entry`` (the registry entry of ``name``, if any) decides the kind and what the converter
    is told; ``label`` (the URL or path it came from) names the file in errors.
    """
    with open(partial, "rb") as f:
        head = f.read(512)
    kind = sniff(head)
    if kind is None and looks_like_html(head):
        raise DownloadError(html_message(label))
    if kind is None:
        raise DownloadError(f"{label}: not a checkpoint (neither a PyTorch file nor safetensors)")
    if entry is not None and entry.kind == "backbone":
        suffix = ".safetensors" if kind == "safetensors" else ".pth"
        destination = _move(partial, cache.backbone_path(name, suffix))
        for other in (".pth", ".safetensors"):
            if other != suffix:
                cache.backbone_path(name, other).unlink(missing_ok=True)
        return destination, False
    destination = cache.model_path(name)
    if kind == "safetensors" and _is_model_file(partial, label):
        return _move(partial, destination), False
    source = _move(
        partial, partial.with_suffix(".safetensors" if kind == "safetensors" else ".pth")
    )
    try:
        model = _converted(source, entry, label)
    except CheckpointError as exc:
        reason = str(exc).removeprefix(f"{label}: ").removeprefix(f"{source}: ")
        reason = reason.replace(str(source), "the file")
        raise CheckpointError(
            f"{label}: not a usable Spike2Former checkpoint ({reason}); not cached"
        ) from None
    finally:
        source.unlink(missing_ok=True)
    save_model(model, destination)
    return destination, True


def sniff(head: bytes) -> str | None:
    """``"torch"``, ``"safetensors"`` or None, from the first bytes of a file."""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip, or a pickle
        return "torch"
    if len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 28:
        return "safetensors"
    return None


def _is_model_file(path: Path, source: str) -> bool:
    """True for a loadable s2f model file, False for safetensors without s2f metadata."""
    if not is_model_file(path):
        return False
    try:
        load_model(path)  # a valid configuration, every tensor present and of the right shape
    except CheckpointError as exc:
        reason = str(exc).removeprefix(f"{path}: ")  # name the download, not the partial file
        raise CheckpointError(
            f"{source}: a damaged s2f model file ({reason}); not cached"
        ) from None
    return True


def check_model_file(path: Path) -> None:
    """Raise ``CheckpointError`` unless ``path`` is an s2f model file with a valid configuration
    (the error of an official checkpoint says to run ``s2f convert``)."""
    read_model_config(path)


def _move(source: Path, destination: Path) -> Path:
    """Rename ``source`` to ``destination`` (creating its folder); a one-line error if the place
    is taken by a folder or cannot be written."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, destination)
    except OSError as exc:
        raise OutputError(f"{destination}: cannot write the file ({exc.strerror or exc})") from None
    return destination


def _converted(source: Path, entry: WeightsEntry | None, label: str) -> Spike2Former:
    """An official checkpoint -> the network of an s2f model file, with what the registry
    knows about it."""
    state = read_state_dict(source)
    config = infer_config(state, entry.time_steps if entry else 1, None, source=label)
    classes = config.head.num_classes
    if entry is not None and entry.num_classes and entry.num_classes != classes:
        raise CheckpointError(
            f"{label}: the checkpoint has {classes} classes, the registry says {entry.num_classes}"
        )
    names = fit_class_names(entry.class_names if entry else None, classes)
    config = config.replace(class_names=names)
    if entry is not None and entry.test_size:
        config = config.replace(test_size=entry.test_size)
    model = build_for_weights(config, tensor_layout(state), label)
    load_weights(model, state, label)
    return model


def fit_class_names(names: tuple[str, ...] | None, classes: int) -> tuple[str, ...] | None:
    """``names`` for ``classes`` class slots; slots beyond the list are ``unused_<index>``
    (the official VOC checkpoints keep 150 slots of which 21 are used)."""
    if names is None:
        return None
    if len(names) > classes:
        raise CheckpointError(f"{len(names)} class names for {classes} classes")
    return (*names, *(f"unused_{i}" for i in range(len(names), classes)))
