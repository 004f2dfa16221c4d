"""The settings a run was started with, and which of those given again to a resume disagree.

A resumed run continues with the settings its ``config.json`` records. Giving one of them again
is harmless when it says the same and a mistake when it does not (the run would go on as before,
not as asked), so ``resume_conflicts`` lists the disagreements for the caller to refuse.
``settings_conflicts`` is the comparison itself, over any run's saved settings: pretraining
runs (``pretrain.resume_settings``) go through it too.

Settings are named as the library names them: the ``TrainRecipe`` fields; ``seed``, ``amp`` and
``log_interval`` of ``TrainJob``; ``format``, ``root``, ``train_split`` and ``val_split`` of
``DataSpec``; the model's ``num_classes`` and ``test_size``; and what the run started from:
``preset``, ``model``, ``recipe``, ``init_backbone`` and ``conventional`` (``TrainJob.init``).
How a run is executed (processes' threads, device, data workers) is no setting: it may change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..datasets import DatasetError
from ..errors import CheckpointError
from .checkpoint import RunFolder
from .loop import TrainJob
from .setup import DataSpec

_INIT = ("preset", "model", "recipe", "init_backbone")


@dataclass(frozen=True)
class Conflict:
    """A setting given to a resume (``given``, as passed) that the run was not started with."""

    name: str
    given: Any
    saved: Any

    def __str__(self) -> str:
        return f"{self.name}={self.given!r} conflicts with the run's {self.saved!r}"


def saved_settings(run: RunFolder) -> dict[str, Any]:
    """Every setting of the run in ``run``, by name, as its ``config.json`` records it."""
    config = run.read_config()
    try:
        job = TrainJob.from_dict(config["job"])
        model = ModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{run.config}: unusable run configuration ({exc})") from None
    settings = job.recipe.to_dict()
    settings.update(seed=job.seed, amp=job.amp, log_interval=job.log_interval)
    data = job.data
    settings.update(
        format=data.format, root=data.root, train_split=data.train_split, val_split=data.val_split
    )
    settings.update(num_classes=model.head.num_classes, test_size=model.test_size)
    settings.update({name: job.init.get(name) for name in _INIT})
    settings["conventional"] = bool(job.init.get("conventional", False))
    return settings


def resume_conflicts(run: RunFolder, given: Mapping[str, Any]) -> list[Conflict]:
    """The ``given`` settings that differ from those of the run in ``run``, in the order given.

    Values are taken as a new run takes them: ``root`` as a path (relative ones from the current
    folder), ``format="cocostuff"`` as the layout found under the root, and the recipe fields as
    ``TrainRecipe.overridden`` applies them (``clip_grad=0``: no clipping). Raises ``KeyError``
    for a name that is no setting.
    """
    saved = saved_settings(run)
    return settings_conflicts(
        saved, given, lambda name, value: _as_saved(name, value, given, saved)
    )


def settings_conflicts(
    saved: Mapping[str, Any],
    given: Mapping[str, Any],
    as_saved: Callable[[str, Any], Any] | None = None,
) -> list[Conflict]:
    """The ``given`` settings that differ from ``saved`` (every setting of a run, by name), in
    the order given; any kind of run compares through it.

    ``as_saved(name, value)`` turns a given value into the form the run's configuration keeps;
    a ``root`` is always compared as the path it names. Raises ``KeyError`` for a name that is
    no setting.
    """
    unknown = sorted(set(given) - set(saved))
    if unknown:
        raise KeyError(f"no run settings named {', '.join(unknown)}; known: {', '.join(saved)}")
    conflicts = []
    for name, value in given.items():
        stored = _resolved(value) if name == "root" else value
        if as_saved is not None:
            stored = as_saved(name, stored)
        if stored != saved[name]:
            conflicts.append(Conflict(name, value, saved[name]))
    return conflicts


def _resolved(root: str | os.PathLike[str]) -> str:
    """A data root as a run's configuration keeps it: absolute, ``~`` expanded."""
    return str(Path(root).expanduser().resolve())


def _as_saved(name: str, value: Any, given: Mapping[str, Any], saved: dict[str, Any]) -> Any:
    """A training setting in the form ``config.json`` keeps it (``root`` resolved already)."""
    if name == "format" and value == "cocostuff":
        root = _resolved(given["root"]) if "root" in given else saved["root"]
        try:
            return DataSpec.of(value, root).format
        except DatasetError:  # neither layout there: it cannot equal the saved one
            return value
    if name == "clip_grad" and value == 0:
        return None
    if name == "crop_size":
        return tuple(value)
    return value
