"""A new run, prepared from what the person starting it chose: ``prepare_run(RunRequest(...))``.

In order: the starting network (a preset built fresh, or a registered model or model file loaded
for fine-tuning, downloaded on first use), with conventional neurons if asked; the recipe (named,
the preset's, or the official one for the network and dataset) with its fields overridden; the
network fitted to the dataset's classes; an ImageNet backbone loaded into it; and the
``TrainJob`` that ``train`` runs and a resume reads back. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from ..build import build_model
from ..errors import Note, S2FError
from ..model_file import load_model
from ..modeling.spike2former import Spike2Former
from ..presets import get_preset
from ..weights import DEFAULT_MODEL, ProgressCallback, resolve_backbone, resolve_model
from .initial import load_backbone
from .loop import TrainJob
from .recipe import recipe_for, recipe_name_for
from .setup import DataSpec, fit_model_to_data

T = TypeVar("T")
# ``downloads(name)``: the progress callback of fetching the weights ``name``, while it lasts.
Downloads = Callable[[str], AbstractContextManager[ProgressCallback | None]]


class RunRequestError(S2FError):
    """Choices that make no run: a preset and a model at once, an unknown preset or recipe.
    A usage error; the message names the arguments at fault (``NamesArguments``)."""


@dataclass(frozen=True)
class RunRequest:
    """What a new run trains, as chosen.

    The network: a ``preset`` (built fresh) or a ``model`` to fine-tune (a registered name or an
    s2f model file; ``DEFAULT_MODEL`` when neither is given), with ``num_classes`` classes
    (default: the network's), ``conventional`` neurons (real-valued instead of spikes) if asked,
    its backbone loaded from ``init_backbone`` (an ImageNet checkpoint's path or registered name)
    if given, and evaluated at ``test_size`` (default: the network's; 0, the images' own size,
    with the ``random_crop`` pipeline). The recipe: ``recipe`` (default: the preset's, or the
    official one for the network and dataset) with ``overrides`` of its fields, applied as
    ``TrainRecipe.overridden`` applies them. The job: ``data``, ``seed``, ``amp`` and
    ``log_interval``. ``offline`` (None: ``$S2F_OFFLINE``) forbids downloads.
    """

    data: DataSpec
    preset: str | None = None
    model: str | None = None
    num_classes: int | None = None
    init_backbone: str | None = None
    conventional: bool = False
    test_size: int | None = None
    recipe: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    amp: bool = False
    log_interval: int = 50
    offline: bool | None = None

    def __post_init__(self) -> None:
        if self.preset is not None and self.model is not None:
            raise RunRequestError(
                "give either {preset} (a fresh network) or {model} (fine-tuning), not both",
                preset=self.preset,
                model=self.model,
            )
        if self.preset is not None:
            _known(get_preset, self.preset)
        if self.recipe is not None:
            _known(recipe_for, self.recipe)
        if self.preset is None and self.model is None:
            object.__setattr__(self, "model", DEFAULT_MODEL)


@dataclass(frozen=True)
class PreparedRun:
    """A new run, ready for ``train(network, job, ...)``, and ``notes`` for the person starting
    it (class slots the dataset leaves unused, what the backbone checkpoint filled in)."""

    network: Spike2Former
    job: TrainJob
    notes: tuple[Note, ...] = ()


def prepare_run(request: RunRequest, downloads: Downloads | None = None) -> PreparedRun:
    """The starting network and job of the run ``request`` asks for (``downloads``: progress of
    fetching weights, by name).

    Raises ``RecipeError`` for overrides the recipe cannot run with, ``ClassCountError`` for a
    dataset with more classes than the network would have, ``WeightsSpecError`` for an unusable
    weights name or path, and what fetching weights (``OfflineError``, ``DownloadError``),
    reading them (``CheckpointError``) or the dataset (``DatasetError``) raises.
    """
    downloads = downloads or _no_progress
    torch.manual_seed(request.seed)
    network = _starting_network(request, downloads)
    recipe_name = (
        request.recipe or request.preset or recipe_name_for(network.config, request.data.format)
    )
    recipe = _known(recipe_for, recipe_name).overridden(**request.overrides)
    test_size = request.test_size
    if test_size is None and recipe.pipeline == "random_crop":
        test_size = 0  # trained at the images' own scale: evaluated at it too
    network, note = fit_model_to_data(network, request.data, request.num_classes, test_size)
    notes = [note] if note is not None else []
    if request.init_backbone is not None:
        with downloads(request.init_backbone) as progress:
            path = resolve_backbone(request.init_backbone, request.offline, progress=progress)
        report = load_backbone(network, path)
        notes.append(
            Note(f"{{init_backbone}}: {report.summary()}", init_backbone=request.init_backbone)
        )
    job = TrainJob(
        recipe=recipe,
        data=request.data,
        seed=request.seed,
        amp=request.amp,
        log_interval=request.log_interval,
        init={
            "preset": request.preset,
            "model": request.model,
            "recipe": recipe_name,
            "init_backbone": request.init_backbone,
            "conventional": request.conventional,
        },
    )
    return PreparedRun(network, job, tuple(notes))


def _starting_network(request: RunRequest, downloads: Downloads) -> Spike2Former:
    """The preset built fresh, or the model loaded in training mode; conventional if asked."""
    if request.preset is not None:
        network = build_model(request.preset)
    else:
        assert request.model is not None  # RunRequest gives one or the other
        with downloads(request.model) as progress:
            path = resolve_model(request.model, request.offline, progress=progress)
        network = load_model(path).train()
    if request.conventional:
        network.config = network.config.replace(spiking=False)
        network.set_spiking(False)
    return network


def _known(find: Callable[[str], T], name: str) -> T:
    """``find(name)``, its ``KeyError`` for an unknown name raised as a ``RunRequestError``."""
    try:
        return find(name)
    except KeyError as exc:
        raise RunRequestError(str(exc.args[0])) from None


def _no_progress(name: str) -> AbstractContextManager[None]:
    return nullcontext()
