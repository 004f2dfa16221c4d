"""Known weights, kept as data in ``registry.json`` next to this module.

Each entry says where a file is published (``urls``, ``source``), how to check it (``sha256``,
``size``: null where nothing is published) and what it is: a segmentation ``model``
(``resolve_model``) or an ImageNet ``backbone`` (``resolve_backbone``, a run's ``init_backbone``),
with what the checkpoint cannot tell the converter (time steps, class names). A model names the
``preset`` it was trained from and, in ``overrides``, every way its network differs from that
preset (as part of a ``ModelConfig.to_dict()``); its ``num_classes``, ``time_steps`` and
``test_size`` must agree with the result, so a difference is never left unstated. A ``bundled``
entry names a model file shipped inside the package (``weights/bundled/``): it needs no download
and works offline.
``$S2F_REGISTRY`` may name a JSON file in the same format whose entries are added to (or replace)
the shipped ones, for mirrors and private weights.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from ..config import ModelConfig
from ..config_checks import LIMITS, MAX_CLASS_NAME, MAX_CLASSES, MAX_TEST_SIZE
from ..errors import ConfigError, WeightsSpecError
from ..presets import PRESETS, preset_with
from .cache import check_name

Kind = Literal["model", "backbone"]
# The model every command uses when no --model is given (shipped inside the package).
DEFAULT_MODEL = "s2f-tiny-fashion"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REQUIRED = ("name", "kind", "urls", "source")
_KNOWN = {
    "name", "kind", "urls", "direct", "sha256", "size", "backbone", "architecture",
    "time_steps", "num_classes", "test_size", "dataset", "class_names", "licence", "source",
    "config", "checksum_source", "notes", "bundled", "preset", "overrides",
}  # fmt: skip
# What ``overrides`` may change: the network and its test size (class names have their field).
_OVERRIDABLE = {"backbone", "head", "test_size"}
# What a model file may hold (``config_checks``), so that a registry entry cannot ask for more.
_MOST = {
    "num_classes": MAX_CLASSES,
    "test_size": MAX_TEST_SIZE,
    "time_steps": LIMITS["backbone.time_steps"][1],
}


@dataclass(frozen=True)
class WeightsEntry:
    """One known weights file. ``class_names`` is resolved from a class-list reference."""

    name: str
    kind: Kind
    urls: tuple[str, ...]
    source: str
    direct: bool = True
    sha256: str | None = None
    size: int | None = None
    backbone: str | None = None
    architecture: str | None = None
    time_steps: int = 1
    num_classes: int | None = None
    test_size: int | None = None
    dataset: str | None = None
    class_list: str | None = None
    class_names: tuple[str, ...] | None = None
    licence: str | None = None
    config: str | None = None
    checksum_source: str | None = None
    notes: str = ""
    bundled: str | None = None  # a file shipped inside the package (``weights/bundled/``)
    preset: str | None = None  # the preset a model was trained from (``presets.PRESETS``)
    overrides: dict[str, Any] | None = dataclasses.field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """The entry as in the JSON file (class names resolved), for ``s2f models --json``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "urls": list(self.urls),
            "direct": self.direct,
            "sha256": self.sha256,
            "size": self.size,
            "backbone": self.backbone,
            "architecture": self.architecture,
            "time_steps": self.time_steps,
            "num_classes": self.num_classes,
            "test_size": self.test_size,
            "dataset": self.dataset,
            "class_list": self.class_list,
            "class_names": list(self.class_names) if self.class_names else None,
            "licence": self.licence,
            "source": self.source,
            "config": self.config,
            "checksum_source": self.checksum_source,
            "notes": self.notes,
            "bundled": self.bundled,
            "preset": self.preset,
            "overrides": copy.deepcopy(self.overrides),
        }

    def network_config(self) -> ModelConfig:
        """The network of a model entry as its preset and overrides describe it (class names
        not included); an error if the entry names no preset."""
        if self.preset is None:
            raise WeightsSpecError(f"{self.name!r} names no preset to build its network from")
        return preset_with(self.preset, self.overrides)

    def bundled_path(self) -> Path:
        """The packaged file of a bundled entry; an error if the installation lacks it."""
        if self.bundled is None:
            raise WeightsSpecError(f"{self.name!r} is not shipped with s2f")
        path = Path(str(files(__package__).joinpath("bundled", self.bundled)))
        if not path.is_file():
            raise WeightsSpecError(
                f"{self.name!r} should be shipped with s2f at {path} but is missing; reinstall s2f"
            )
        return path


def load_registry(extra: str | os.PathLike[str] | None = None) -> dict[str, WeightsEntry]:
    """The shipped registry, plus the entries of ``extra`` (default: ``$S2F_REGISTRY``)."""
    shipped = files(__package__).joinpath("registry.json").read_text(encoding="utf-8")
    entries = parse_registry(json.loads(shipped), "the shipped registry")
    extra = extra if extra is not None else os.environ.get("S2F_REGISTRY") or None
    if extra is not None:
        path = Path(extra)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WeightsSpecError(f"{path}: unreadable registry file ({exc})") from None
        entries.update(parse_registry(data, str(path)))
    return entries


def get_entry(name: str, registry: Mapping[str, WeightsEntry] | None = None) -> WeightsEntry:
    """The entry called ``name``; the error lists the known names."""
    registry = load_registry() if registry is None else registry
    if name not in registry:
        known = ", ".join(sorted(registry))
        raise WeightsSpecError(
            f"unknown weights name {name!r}; known names: {known} (or give a path or a URL)"
        )
    return registry[name]


def parse_registry(data: Any, origin: str) -> dict[str, WeightsEntry]:
    """Validate a registry document; every mistake names the entry and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("weights"), list):
        raise WeightsSpecError(f"{origin}: a registry is an object with a 'weights' list")
    lists = data.get("class_lists", {})
    if not isinstance(lists, dict) or not all(
        isinstance(v, list) and all(isinstance(n, str) and len(n) <= MAX_CLASS_NAME for n in v)
        for v in lists.values()
    ):
        raise WeightsSpecError(
            f"{origin}: 'class_lists' maps names to lists of names of at most "
            f"{MAX_CLASS_NAME} characters"
        )
    entries: dict[str, WeightsEntry] = {}
    for raw in data["weights"]:
        entry = _entry(raw, lists, origin)
        if entry.name in entries:
            raise WeightsSpecError(f"{origin}: {entry.name!r} appears twice")
        entries[entry.name] = entry
    return entries


def _entry(raw: Any, lists: dict[str, list[str]], origin: str) -> WeightsEntry:
    if not isinstance(raw, dict) or any(key not in raw for key in _REQUIRED):
        raise WeightsSpecError(f"{origin}: every entry needs {', '.join(_REQUIRED)}: {raw!r:.80}")
    name = raw["name"]
    where = f"{origin}: entry {name!r}"
    check_name(str(name))
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise WeightsSpecError(f"{where}: unknown fields {', '.join(unknown)}")
    if raw["kind"] not in ("model", "backbone"):
        raise WeightsSpecError(f"{where}: kind must be 'model' or 'backbone'")
    urls = raw["urls"]
    bundled = raw.get("bundled")
    if bundled is not None and (not isinstance(bundled, str) or not _FILE_NAME.fullmatch(bundled)):
        raise WeightsSpecError(f"{where}: 'bundled' must be a plain file name")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise WeightsSpecError(f"{where}: 'urls' must be a list of strings")
    if not urls and bundled is None:
        raise WeightsSpecError(f"{where}: 'urls' may be empty only for a bundled file")
    if any(not u.lower().startswith(("https://", "http://", "file:")) for u in urls):
        raise WeightsSpecError(f"{where}: 'urls' must be http(s):// or file: URLs")
    sha256 = raw.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise WeightsSpecError(f"{where}: 'sha256' must be 64 lowercase hex digits or null")
    for field in ("size", "num_classes", "test_size", "time_steps"):
        value = raw.get(field)
        most = _MOST.get(field)
        if value is not None and (
            not isinstance(value, int) or value < 1 or (most is not None and value > most)
        ):
            bound = f" of at most {most}" if most is not None else ""
            raise WeightsSpecError(f"{where}: {field!r} must be a positive integer{bound} or null")
    class_list, names = _class_names(raw.get("class_names"), lists, where)
    num_classes = raw.get("num_classes")
    if names and num_classes and len(names) > num_classes:
        raise WeightsSpecError(f"{where}: {len(names)} class names for {num_classes} classes")
    _check_preset(raw, where)
    return WeightsEntry(
        name=name,
        kind=raw["kind"],
        urls=tuple(urls),
        source=raw["source"],
        direct=bool(raw.get("direct", True)),
        sha256=sha256,
        size=raw.get("size"),
        backbone=raw.get("backbone"),
        architecture=raw.get("architecture"),
        time_steps=raw.get("time_steps") or 1,
        num_classes=num_classes,
        test_size=raw.get("test_size"),
        dataset=raw.get("dataset"),
        class_list=class_list,
        class_names=names,
        licence=raw.get("licence"),
        config=raw.get("config"),
        checksum_source=raw.get("checksum_source"),
        notes=raw.get("notes") or "",
        bundled=bundled,
        preset=raw.get("preset"),
        overrides=raw.get("overrides"),
    )


def _check_preset(raw: dict[str, Any], where: str) -> None:
    """``preset`` names a preset, ``overrides`` fits it, and the entry's classes, time steps and
    test size agree with the network the two describe."""
    preset, overrides = raw.get("preset"), raw.get("overrides")
    if preset is None:
        if overrides is not None:
            raise WeightsSpecError(f"{where}: 'overrides' needs a 'preset' to apply to")
        return
    if raw["kind"] != "model":
        raise WeightsSpecError(f"{where}: only a model names a 'preset'")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise WeightsSpecError(
            f"{where}: 'preset' must name one of the presets: {', '.join(PRESETS)}"
        )
    if overrides is not None and (not isinstance(overrides, dict) or set(overrides) - _OVERRIDABLE):
        raise WeightsSpecError(
            f"{where}: 'overrides' is an object of {', '.join(sorted(_OVERRIDABLE))}"
        )
    try:
        config = preset_with(preset, overrides)
    except ConfigError as exc:
        raise WeightsSpecError(f"{where}: 'overrides': {exc}") from None
    stated = {
        "num_classes": (raw.get("num_classes"), config.head.num_classes),
        "time_steps": (raw.get("time_steps") or 1, config.backbone.time_steps),
        "test_size": (raw.get("test_size"), config.test_size),
    }
    for name, (value, built) in stated.items():
        if value is not None and value != built:
            raise WeightsSpecError(
                f"{where}: {name!r} is {value} but preset {preset!r} with the overrides gives "
                f"{built}; state the difference in 'overrides'"
            )


def _class_names(
    value: Any, lists: dict[str, list[str]], where: str
) -> tuple[str | None, tuple[str, ...] | None]:
    """``"ade20k"`` (a class list of the registry), a list of names, or null."""
    if value is None:
        return None, None
    if isinstance(value, str):
        if value not in lists:
            raise WeightsSpecError(f"{where}: no class list {value!r} in the registry")
        return value, tuple(lists[value])
    if isinstance(value, list) and all(
        isinstance(n, str) and len(n) <= MAX_CLASS_NAME for n in value
    ):
        return None, tuple(value)
    raise WeightsSpecError(
        f"{where}: 'class_names' is a class-list name, a list of names of at most "
        f"{MAX_CLASS_NAME} characters, or null"
    )
