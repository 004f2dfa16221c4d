"""``create_model(name)``: one entry point from a name to a network, as timm's ``create_model``.

A name is a preset (``presets.PRESETS``: a freshly initialised network), a model of the weights
registry (``weights/registry.json``: the network with its weights, shipped, cached or downloaded
on first use), a model cached under that name, or the path of an s2f model file.
``list_models()`` names the presets and the registered models.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Literal

import torch

from .build import build_model
from .errors import WeightsSpecError
from .model_file import load_model, read_model_config
from .modeling.spike2former import Spike2Former
from .presets import PRESETS
from .weights.cache import Cache, check_name
from .weights.download import as_path
from .weights.fetch import ProgressCallback
from .weights.install import fit_class_names
from .weights.registry import WeightsEntry, load_registry
from .weights.resolve import resolve_model

ModelKind = Literal["preset", "weights"]


def list_models() -> dict[str, ModelKind]:
    """Every name ``create_model`` knows, presets first: ``"preset"`` (built freshly
    initialised) or ``"weights"`` (a registered model, loaded with its weights). A registered
    model named like a preset is left out: the preset takes the name."""
    names: dict[str, ModelKind] = dict.fromkeys(PRESETS, "preset")
    for name, entry in load_registry().items():
        if entry.kind == "model":
            names.setdefault(name, "weights")
    return names


def create_model(
    name: str | os.PathLike[str],
    pretrained: bool | None = None,
    *,
    device: str | torch.device = "cpu",
    offline: bool | None = None,
    progress: ProgressCallback | None = None,
) -> Spike2Former:
    """The network called ``name``, on ``device``.

    - a preset (``"sdtv3b-ade20k"``): freshly initialised, in training mode (``build_model``);
      ``pretrained=True`` loads the one registered model trained from that preset instead;
    - a registered model (``"spike2former-sdtv2-ade20k"``, the bundled ``"s2f-tiny-fashion"``)
      or one cached under that name: loaded with its weights, in evaluation mode
      (``load_model``), downloaded and converted on first use unless ``offline`` (``None``:
      ``$S2F_OFFLINE``), with ``progress`` told how the download goes; ``pretrained=False``
      builds its network (its preset, overrides and class names) freshly initialised instead;
    - the path of an s2f model file: loaded; ``pretrained=False`` builds its configuration anew.

    ``pretrained=None`` takes what the name stands for: weights where it names weights. An
    unknown name raises ``WeightsSpecError`` with the closest known names.
    """
    spec = os.fspath(name)
    is_path = isinstance(name, os.PathLike)
    registry = load_registry()
    if not is_path and spec in PRESETS:
        if not pretrained:
            return build_model(spec).to(device)
        spec = _weights_of(spec, registry)
    entry = None if is_path else registry.get(spec)
    if entry is not None:
        if entry.kind != "model":
            raise WeightsSpecError(
                f"{spec!r} is an ImageNet backbone, not a segmentation model; "
                "training starts from it as init_backbone"
            )
        if pretrained is False:
            config = entry.network_config()
            names = fit_class_names(entry.class_names, config.head.num_classes)
            return build_model(config.replace(class_names=names)).to(device)
    elif not (is_path or as_path(spec) is not None or _is_cached(spec)):
        raise _unknown(spec, list_models())
    path = resolve_model(spec, offline, progress=progress)
    if pretrained is False:
        return build_model(read_model_config(path)).to(device)
    return load_model(path, device)


def _weights_of(preset: str, registry: Mapping[str, WeightsEntry]) -> str:
    """The registered model trained from ``preset``, when there is exactly one."""
    found = [n for n, e in registry.items() if e.kind == "model" and e.preset == preset]
    if len(found) == 1:
        return found[0]
    if found:
        raise WeightsSpecError(
            f"preset {preset!r} has several registered weights ({', '.join(found)}); "
            "create one of them by name"
        )
    trained = sorted({e.preset for e in registry.values() if e.preset is not None})
    raise WeightsSpecError(
        f"no registered weights for preset {preset!r} (there are for {', '.join(trained)}); "
        "pretrained=False builds it freshly initialised"
    )


def _is_cached(name: str) -> bool:
    try:
        return Cache().find(check_name(name)) is not None
    except WeightsSpecError:  # not a name a cached file can have
        return False


def _unknown(name: str, known: Mapping[str, ModelKind]) -> WeightsSpecError:
    by_lower = {k.lower(): k for k in known}
    close = [by_lower[k] for k in difflib.get_close_matches(name.lower(), by_lower, n=3)]
    guess = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return WeightsSpecError(
        f"unknown model {name!r}{guess} (spike2former.list_models() names the presets and "
        "registered models; a model file is given by its path)"
    )
