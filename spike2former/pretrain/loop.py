"""Backbone pretraining, top to bottom.

``pretrain(model, job, run_dir)`` starts a run, ``resume_pretrain(run_dir)`` continues one from
its last checkpoint. The run folder, the crash-safe checkpoints, the resumable data order and
the data-parallel processes are those of ``s2f train`` (``training.checkpoint``,
``training.data``, ``training.distributed``); the weights files are backbone files
(``backbone_file``), so ``weights/best.safetensors`` goes straight to ``--init-backbone``.

Per iteration: a batch in the resumable order, logits, label-smoothed cross-entropy, backward
(DDP averages the gradients), AdamW step, schedule step. Every ``eval_interval`` iterations (and
at the end) top-1 and top-5 on the validation split, each process its share, counts summed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DatasetError
from ..training.checkpoint import RunFolder, TrainState
from ..training.distributed import (
    DistributedContext,
    all_reduce_sum_,
)
from ..training.iterations import Optimisation, StepOutcome, run_iterations
from ..training.run_lifecycle import (
    prepared_for_resume,
    resumable_config,
    started_run,
)
from .augment import EvalTransform, TrainTransform
from .backbone_file import load_classifier, save_classifier
from .classifier import BackboneClassifier, top_k_correct
from .folder import ClassificationSet, check_images, scan_split
from .memory import check_memory
from .recipe import PretrainRecipe, build_optimizer, build_scheduler


@dataclass(frozen=True)
class PretrainJob:
    """A resolved pretraining run (``config.json`` holds it)."""

    recipe: PretrainRecipe
    root: str
    train_split: str = "train"
    val_split: str | None = "val"
    seed: int = 0
    log_interval: int = 50
    preset: str | None = None
    conventional: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainJob:
        return cls(**{**data, "recipe": PretrainRecipe(**data["recipe"])})


class PretrainCallbacks(Protocol):
    """What a front end hears about (rank 0 only). Every method is optional."""

    def on_start(self, start: int, total: int, job: PretrainJob) -> None: ...
    def on_iteration(self, iteration: int, loss: float, lr: float) -> None: ...
    def on_eval(self, record: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class PretrainResult:
    run_dir: Path
    iteration: int
    best_top1: float | None
    best_iteration: int | None


class BackboneRunFolder(RunFolder):
    """A run folder whose weights files are backbone files."""

    def write_weights(self, model: Any, path: Path) -> None:
        save_classifier(model, path)

    def read_weights(self, path: Path, device: torch.device) -> Any:
        return load_classifier(path, device)


def class_names(job: PretrainJob) -> tuple[str, ...]:
    """The classes of the job's training split (its sorted class folders)."""
    return scan_split(job.root, job.train_split).classes


def pretrain(
    model: BackboneClassifier,
    job: PretrainJob,
    run_dir: str | os.PathLike[str] | Callable[[], Path],
    context: DistributedContext | None = None,
    *,
    workers: int = 0,
    callbacks: PretrainCallbacks | None = None,
) -> PretrainResult:
    """Train ``model`` (its head sized for the training split's classes) in a new run folder
    (a callable ``run_dir`` creates it once the data is checked). A run that fails before its
    first checkpoint past iteration 0 removes what it wrote."""
    context = context or DistributedContext()
    datasets = _datasets(job, model.class_names)
    _check_fits(model, job, context, workers, datasets)
    run = BackboneRunFolder(run_dir() if callable(run_dir) else run_dir)
    config = {"job": job.to_dict(), "processes": context.world_size, "classes": model.class_names}
    with started_run(run, context, callable(run_dir), config):
        return _run(model, job, run, context, datasets, None, workers, callbacks)


def resume_pretrain(
    run_dir: str | os.PathLike[str],
    context: DistributedContext | None = None,
    *,
    workers: int = 0,
    callbacks: PretrainCallbacks | None = None,
) -> PretrainResult:
    """Continue the run in ``run_dir`` from its last checkpoint, with its saved settings."""
    context = context or DistributedContext()
    run = BackboneRunFolder(run_dir)
    job = PretrainJob.from_dict(resumable_config(run, context)["job"])
    model, state = run.load_checkpoint(context.device)
    datasets = _datasets(job, model.class_names)
    _check_fits(model, job, context, workers, datasets)
    with prepared_for_resume(run, state.iteration, context):
        return _run(model, job, run, context, datasets, state, workers, callbacks)


def _datasets(
    job: PretrainJob, classes: tuple[str, ...]
) -> tuple[ClassificationSet, ClassificationSet | None]:
    """Both splits, scanned (layout errors raise here, before anything is written)."""
    train_split = scan_split(job.root, job.train_split)
    if train_split.classes != classes:
        raise DatasetError(
            f"{train_split.root} has {len(train_split.classes)} classes, the network's head "
            f"{len(classes)} ({', '.join(classes[:5])}...); the head is made for the data"
        )
    size = job.recipe.crop_size
    augment = TrainTransform(size, job.recipe.erase_prob)
    train_set = ClassificationSet(train_split, augment, job.seed)
    if job.val_split is None:
        return train_set, None
    val_split = scan_split(job.root, job.val_split, classes)
    return train_set, ClassificationSet(val_split, EvalTransform(size), job.seed)


def _check_fits(
    model: BackboneClassifier,
    job: PretrainJob,
    context: DistributedContext,
    workers: int,
    datasets: tuple[ClassificationSet, ClassificationSet | None],
) -> None:
    """Every image's header readable, and a step of the job's batch within this machine's
    memory (``memory.check_memory``; the network is left as it was)."""
    largest = max(check_images(d.split) for d in datasets if d is not None)
    check_memory(model, job.recipe, context, workers, largest)


def _run(
    model: BackboneClassifier,
    job: PretrainJob,
    run: BackboneRunFolder,
    context: DistributedContext,
    datasets: tuple[ClassificationSet, ClassificationSet | None],
    state: TrainState | None,
    workers: int,
    callbacks: PretrainCallbacks | None,
) -> PretrainResult:
    recipe = job.recipe
    torch.manual_seed(job.seed)
    train_set, val_set = datasets

    model = model.to(context.device).train()
    lr = recipe.peak_lr(recipe.batch_size * context.world_size)
    optimizer = build_optimizer(model, recipe, lr)
    scheduler = build_scheduler(optimizer, recipe, lr)

    def step(network: torch.nn.Module, images: Tensor, labels: Tensor) -> StepOutcome:
        loss = F.cross_entropy(network(images), labels, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr_now = float(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        return StepOutcome(loss, {}, lr_now)

    def validate() -> dict[str, float]:
        top1, top5 = evaluate_accuracy(model, val_set, recipe.batch_size, context)
        return {"top1": top1, "top5": top5}

    progress = run_iterations(
        run, model, context, state, Optimisation(optimizer, scheduler),
        job=job, train_set=train_set, workers=workers, step=step,
        validate=validate if val_set is not None else None, score="top1",
        callbacks=callbacks,
    )  # fmt: skip
    return PretrainResult(run.root, progress.iteration, progress.best, progress.best_iteration)


@torch.no_grad()
def evaluate_accuracy(
    model: BackboneClassifier,
    dataset: ClassificationSet,
    batch_size: int,
    context: DistributedContext | None = None,
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (percent) over ``dataset``; under several processes each takes
    every ``world_size``-th image and the counts are summed, so the result equals one process."""
    context = context or DistributedContext()
    was_training = model.training
    model.eval()
    indices = list(range(context.rank, len(dataset), context.world_size))
    counts = torch.zeros(3, dtype=torch.float64)
    for begin in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[begin : begin + batch_size]]
        images = torch.stack([item[0] for item in items]).to(context.device)
        labels = torch.stack([item[1] for item in items]).to(context.device)
        top1, top5 = top_k_correct(model(images), labels)
        counts += torch.tensor([top1, top5, len(items)], dtype=torch.float64)
    counts = all_reduce_sum_(counts.to(context.device), context).cpu()
    model.train(was_training)
    total = float(counts[2])
    return 100 * float(counts[0]) / total, 100 * float(counts[1]) / total
