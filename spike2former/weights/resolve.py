"""Model and backbone names or paths -> local files, downloading registered weights.

A name is a path when it names an existing file or looks like one (``download.as_path``);
anything else is a weights name: a model shipped inside the package, a file cached under that
name, else a registry entry, downloaded on first use unless offline.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import WeightsSpecError
from .cache import Cache, check_name
from .download import as_path, download, local_file
from .fetch import ProgressCallback
from .install import check_model_file
from .offline import is_offline, offline_error
from .registry import load_registry

# The argument that takes each kind of weights (``RunRequest.model`` / ``.init_backbone``).
_ARGUMENT = {"model": "model", "backbone": "init_backbone"}


def resolve_model(
    spec: str, offline: bool | None = None, *, progress: ProgressCallback | None = None
) -> Path:
    """A local s2f model file for a registry name or a path.

    Paths must be s2f model files: an official ``.pth`` / ``.safetensors`` checkpoint gets a
    ``CheckpointError`` that says to run ``s2f convert`` (registered official checkpoints are
    converted when downloaded). ``offline=None`` reads ``$S2F_OFFLINE``; ``progress`` is told
    how a download goes.
    """
    path = _resolve(spec, "model", offline, progress)
    check_model_file(path)  # an official checkpoint: says to run `s2f convert`
    return path


def resolve_backbone(
    spec: str, offline: bool | None = None, *, progress: ProgressCallback | None = None
) -> Path:
    """A local backbone checkpoint (as published) for a registry name or a path."""
    return _resolve(spec, "backbone", offline, progress)


def _resolve(spec: str, kind: str, offline: bool | None, progress: ProgressCallback | None) -> Path:
    """A local file of ``kind`` ("model" or "backbone") for a path or a weights name."""
    path = as_path(spec)
    if path is not None:
        return local_file(path, "model file" if kind == "model" else "file")
    cache = Cache()
    registry = load_registry()
    entry = registry.get(check_name(spec))
    if entry is not None and entry.kind != kind:
        argument = _ARGUMENT[entry.kind]
        raise WeightsSpecError(
            f"{spec!r} is {_describe(entry.kind)}: give it as {{{argument}}}", **{argument: spec}
        )
    if entry is not None and entry.bundled is not None:
        return entry.bundled_path()
    found = cache.find(spec)
    if found is not None and (found.parent.name == "models") == (kind == "model"):
        return found
    if entry is None:
        known = sorted(n for n, e in registry.items() if e.kind == kind)
        raise WeightsSpecError(
            f"{spec!r} is neither a file nor the name of {_describe(kind)}; "
            f"known names: {', '.join(known)} (see `s2f models`)"
        )
    if is_offline(offline):
        raise offline_error(entry, cache)
    return download(spec, progress=progress, cache=cache, registry=registry, offline=False).path


def _describe(kind: str) -> str:
    return "a segmentation model" if kind == "model" else "a backbone (ImageNet weights)"
