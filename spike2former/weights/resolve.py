"""``--model`` / ``--init-backbone`` values -> local files, downloading registered weights.

A value is a path when it names an existing file or looks like one (a path separator, a leading
``.`` or ``~``, a checkpoint suffix); anything else is a weights name: a model shipped inside the
package, a file cached under that name, else a registry entry, downloaded on first use unless
offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OfflineError, WeightsSpecError
from .cache import Cache, check_name
from .download import download
from .fetch import DEFAULT_TIMEOUT, ProgressCallback
from .install import check_model_file
from .offline import is_offline, offline_message
from .registry import load_registry

_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


def resolve_model(
    spec: str,
    offline: bool | None = None,
    *,
    progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    cache: Cache | None = None,
) -> Path:
    """A local s2f model file for a registry name or a path.

    Paths must be s2f model files: an official ``.pth`` / ``.safetensors`` checkpoint gets a
    ``CheckpointError`` that says to run ``s2f convert`` (registered official checkpoints are
    converted when downloaded). ``offline=None`` reads ``$S2F_OFFLINE``.
    """
    path = as_path(spec)
    if path is not None:
        if path.is_dir():
            raise WeightsSpecError(f"{path}: is a folder, not a model file")
        if not path.is_file():
            raise WeightsSpecError(f"{path}: no such model file")
        check_model_file(path)  # an official checkpoint: says to run `s2f convert`
        return path
    found = _resolve_name(spec, "model", offline, progress, timeout, cache)
    check_model_file(found)
    return found


def resolve_backbone(
    spec: str,
    offline: bool | None = None,
    *,
    progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    cache: Cache | None = None,
) -> Path:
    """A local backbone checkpoint (as published) for a registry name or a path."""
    path = as_path(spec)
    if path is not None:
        if path.is_dir():
            raise WeightsSpecError(f"{path}: is a folder, not a weights file")
        if not path.is_file():
            raise WeightsSpecError(f"{path}: no such file")
        return path
    return _resolve_name(spec, "backbone", offline, progress, timeout, cache)


def as_path(spec: str) -> Path | None:
    """``spec`` as a path when it names an existing file or looks like one, else ``None`` (a
    weights name)."""
    path = Path(spec).expanduser()
    if (
        path.is_file()
        or os.sep in spec
        or "/" in spec
        or spec.startswith((".", "~"))
        or path.suffix.lower() in _SUFFIXES
    ):
        return path
    return None


def _resolve_name(
    name: str,
    kind: str,
    offline: bool | None,
    progress: ProgressCallback | None,
    timeout: float,
    cache: Cache | None,
) -> Path:
    cache = cache or Cache()
    registry = load_registry()
    entry = registry.get(check_name(name))
    if entry is not None and entry.kind != kind:
        use = "--model" if entry.kind == "model" else "--init-backbone"
        raise WeightsSpecError(f"{name!r} is {_describe(entry.kind)}: use it with {use}")
    if entry is not None and entry.bundled is not None:
        return entry.bundled_path()
    found = cache.find(name)
    if found is not None and (found.parent.name == "models") == (kind == "model"):
        return found
    if entry is None:
        known = sorted(n for n, e in registry.items() if e.kind == kind)
        raise WeightsSpecError(
            f"{name!r} is neither a file nor a known {_describe(kind)}; "
            f"known names: {', '.join(known)} (see `s2f models`)"
        )
    if is_offline(offline):
        raise OfflineError(offline_message(entry, cache))
    return download(
        name, progress=progress, timeout=timeout, cache=cache, registry=registry, offline=False
    ).path


def _describe(kind: str) -> str:
    return "a segmentation model" if kind == "model" else "a backbone (ImageNet weights)"
