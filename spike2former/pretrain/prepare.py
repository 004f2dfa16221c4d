"""A new pretraining run, prepared from what the person starting it chose:
``prepare_pretraining(PretrainRequest(...))``.

In order: the recipe (the published one with its fields overridden), the ``PretrainJob`` that
``pretrain`` runs and a resume reads back, and the preset's backbone with a head for the classes
of the training split, seeded. Nothing is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import S2FError
from ..presets import PRESETS, get_preset
from .classifier import BackboneClassifier
from .loop import PretrainJob, class_names
from .recipe import PretrainRecipe

_RECIPE_FIELDS = frozenset(f.name for f in dataclasses.fields(PretrainRecipe))


class PretrainRequestError(S2FError):
    """Choices that make no pretraining run: an unknown preset, or overrides of no recipe field.
    A usage error; the message names the arguments at fault (``NamesArguments``)."""


@dataclass(frozen=True)
class PretrainRequest:
    """What a new pretraining run trains, as chosen.

    The backbone of ``preset`` with ``conventional`` neurons (real-valued instead of spikes) if
    asked; the images under ``root`` (``ROOT/SPLIT/CLASS/*.jpg``), ``val_split`` None for no
    validation; ``PretrainRecipe`` with ``overrides`` of its fields (``ConfigError``, naming
    them, for values it cannot run with); ``seed`` for the initialisation and the data order.
    """

    preset: str
    root: str | os.PathLike[str]
    train_split: str = "train"
    val_split: str | None = "val"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    conventional: bool = False
    seed: int = 0
    log_interval: int = 50

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise PretrainRequestError(
                f"{{preset}}: unknown preset; choose one of {', '.join(PRESETS)}",
                preset=self.preset,
            )
        unknown = sorted(set(self.overrides) - _RECIPE_FIELDS)
        if unknown:
            raise PretrainRequestError(
                f"overrides: no pretraining recipe field named {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_RECIPE_FIELDS))}"
            )


@dataclass(frozen=True)
class PreparedPretraining:
    """A new run, ready for ``pretrain(model, job, ...)``."""

    model: BackboneClassifier
    job: PretrainJob


def prepare_pretraining(request: PretrainRequest) -> PreparedPretraining:
    """The classifier and job of the run ``request`` asks for.

    Raises ``ConfigError`` for overrides the recipe cannot run with, naming them, and
    ``DatasetError`` for a training split without class folders.
    """
    job = PretrainJob(
        recipe=dataclasses.replace(PretrainRecipe(), **request.overrides),
        root=str(Path(request.root).expanduser().resolve()),
        train_split=request.train_split,
        val_split=request.val_split,
        seed=request.seed,
        log_interval=request.log_interval,
        preset=request.preset,
        conventional=request.conventional,
    )
    classes = class_names(job)
    config = get_preset(request.preset).replace(spiking=not request.conventional)
    torch.manual_seed(request.seed)
    return PreparedPretraining(BackboneClassifier(config, classes), job)
