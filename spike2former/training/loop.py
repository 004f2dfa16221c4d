"""The training loop, top to bottom.

``train(model, job, run_dir)`` starts a run, ``resume(run_dir)`` continues one from its last
checkpoint; both check the data, the crop and the memory first (``preflight``), before anything
is written, and end in ``_run``, which holds the algorithm (the iterations around its step and
validation are ``iterations.run_iterations``, shared with backbone pretraining):

1. data: the training set with the recipe's augmentation, in the resumable order of
   ``data.IterationSampler`` (each process its own share under ``torchrun``); the validation set
   as stored (``evaluate`` resizes it like the official test pipeline);
2. the official loss (``MaskFormerLoss`` on all stages, with the recipe's class cost), AdamW over
   the official parameter groups, the warm-up + poly schedule;
3. per iteration: forward in training mode (all decoder stages), the loss with ``num_masks``
   averaged over processes (mmdet's ``reduce_mean``), both as ``lean.step_losses`` computes
   them (the official values at a fraction of the memory), backward (DDP averages the gradients),
   gradient clipping at the recipe's global norm, optimiser step, schedule step;
4. every ``log_interval`` iterations a ``metrics.jsonl`` line (each loss term averaged over the
   interval and over processes, lr, gradient norm, throughput); every ``eval_interval`` a
   validation (mIoU, mAcc, aAcc; a better mIoU rewrites ``weights/best.safetensors``); every
   ``checkpoint_interval`` (and at the end) a checkpoint. Rank 0 writes, every rank computes.

``amp``: autocast to bfloat16 on CPUs and on GPUs that support it, else float16 with a
``GradScaler``; the loss is computed in float32. The official recipe trains in float32.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ..datasets import DatasetError, SegmentationDataset
from ..errors import Note
from ..modeling.spike2former import Spike2Former
from .checkpoint import RunFolder, TrainState
from .data import train_pipeline
from .distributed import (
    DistributedContext,
    all_reduce_mean,
)
from .evaluate import evaluate
from .iterations import Optimisation, StepOutcome, run_iterations
from .lean import LeanTraining, build_criterion, prepare_model, step_losses
from .optim import build_optimizer, build_scheduler
from .preflight import check_run
from .recipe import TrainRecipe
from .run_lifecycle import (
    notify,
    prepared_for_resume,
    resumable_config,
    started_run,
)
from .setup import DataSpec

# How every training step is computed (``lean``: the official losses and gradients, cheaper);
# ``train``/``resume`` may add the backbone's recomputation.
LEAN = LeanTraining()


@dataclass(frozen=True)
class TrainJob:
    """A resolved run: recipe, data and run settings (``config.json`` holds it, with the model
    configuration and the process count). ``init`` records where the starting weights came from."""

    recipe: TrainRecipe
    data: DataSpec
    seed: int = 0
    amp: bool = False
    log_interval: int = 50
    init: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_dict(),
            "data": self.data.to_dict(),
            "seed": self.seed,
            "amp": self.amp,
            "log_interval": self.log_interval,
            "init": dict(self.init),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainJob:
        return cls(
            recipe=TrainRecipe.from_dict(data["recipe"]),
            data=DataSpec.from_dict(data["data"]),
            seed=int(data["seed"]),
            amp=bool(data["amp"]),
            log_interval=int(data["log_interval"]),
            init=dict(data.get("init", {})),
        )


class TrainCallbacks(Protocol):
    """What a front end hears about (rank 0 only). Every method is optional."""

    def on_start(self, start: int, total: int, job: TrainJob) -> None: ...
    def on_iteration(self, iteration: int, loss: float, lr: float) -> None: ...
    def on_log(self, record: dict[str, Any]) -> None: ...
    def on_eval(self, record: dict[str, Any]) -> None: ...
    def on_checkpoint(self, iteration: int) -> None: ...
    def on_note(self, note: Note) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    iteration: int
    best_miou: float | None
    best_iteration: int | None


def train(
    model: Spike2Former,
    job: TrainJob,
    run_dir: str | os.PathLike[str] | Callable[[], Path],
    context: DistributedContext | None = None,
    *,
    workers: int = 0,
    callbacks: TrainCallbacks | None = None,
    recompute_backbone: bool | None = None,
) -> TrainResult:
    """Train ``model`` (already fitted to the data's classes) as ``job`` says, in a new run
    folder ``run_dir`` (an existing non-empty folder is refused), or in the folder a callable
    ``run_dir`` creates (called on every process once the run is checked).
    ``recompute_backbone``: activation checkpointing of the backbone's blocks (the same
    gradients for less memory and more time); ``None``: only where the step would not fit in
    memory otherwise (``callbacks.on_note`` hears of it). A resume may change it.

    The data and settings are checked first (``preflight.check_run``): a run that cannot start
    creates nothing. A run that fails before it holds anything worth resuming (a checkpoint
    past iteration 0, or best weights), interrupted included, removes what it wrote; a folder
    that existed before is kept, emptied."""
    context = context or DistributedContext()
    if job.data.num_classes is None:
        job = dataclasses.replace(
            job,
            data=dataclasses.replace(job.data, num_classes=model.config.head.num_classes),
        )
    datasets = _datasets(job)
    lean = _fitted_lean(model, job, datasets, context, workers, recompute_backbone, callbacks)
    run = RunFolder(run_dir() if callable(run_dir) else run_dir)
    with started_run(run, context, callable(run_dir), _run_config(model, job, context)):
        return _run(model, job, run, context, datasets, None, workers, callbacks, lean)


def resume(
    run_dir: str | os.PathLike[str],
    context: DistributedContext | None = None,
    *,
    workers: int = 0,
    callbacks: TrainCallbacks | None = None,
    recompute_backbone: bool | None = None,
) -> TrainResult:
    """Continue the run in ``run_dir`` from its last checkpoint, with its saved settings
    (``recompute_backbone`` as for ``train``)."""
    context = context or DistributedContext()
    run = RunFolder(run_dir)
    job = TrainJob.from_dict(resumable_config(run, context)["job"])
    datasets = _datasets(job)
    model, state = run.load_checkpoint(context.device)
    lean = _fitted_lean(model, job, datasets, context, workers, recompute_backbone, callbacks)
    with prepared_for_resume(run, state.iteration, context):
        return _run(model, job, run, context, datasets, state, workers, callbacks, lean)


def _fitted_lean(
    model: Spike2Former,
    job: TrainJob,
    datasets: tuple[SegmentationDataset, SegmentationDataset | None],
    context: DistributedContext,
    workers: int,
    recompute_backbone: bool | None,
    callbacks: TrainCallbacks | None,
) -> LeanTraining:
    """The run's checks (``preflight.check_run``) and the step they let it take: recomputing
    the backbone as asked, or (``None``) where only that fits."""
    lean = check_run(
        model, job.recipe, datasets, context, workers=workers,
        lean=dataclasses.replace(LEAN, recompute_backbone=bool(recompute_backbone)),
        amp_dtype=_amp_dtype(context.device) if job.amp else None,
        may_recompute=recompute_backbone is None,
    )  # fmt: skip
    if recompute_backbone is None and lean.recompute_backbone and context.is_main:
        note = Note(
            "the training step fits in memory only with the backbone's activations recomputed "
            "in backward, so they are ({recompute_backbone}; the same gradients, a step about "
            "15 % slower)",
            recompute_backbone=True,
        )
        notify(callbacks, "on_note", note)
    return lean


def _datasets(job: TrainJob) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The training set, with the recipe's augmentation, and the validation set as stored."""
    data, recipe = job.data, job.recipe
    train_set = data.build(
        data.train_split, train_pipeline(recipe.pipeline, recipe.crop_size), job.seed
    )
    if data.val_split is None:
        return train_set, None
    try:
        return train_set, data.build(data.val_split)
    except DatasetError as exc:
        raise DatasetError(
            f"{exc}; to train without validation, set no validation split ({{val_split}})",
            val_split=None,
        ) from None


def _run(
    model: Spike2Former,
    job: TrainJob,
    run: RunFolder,
    context: DistributedContext,
    datasets: tuple[SegmentationDataset, SegmentationDataset | None],
    state: TrainState | None,
    workers: int,
    callbacks: TrainCallbacks | None,
    lean: LeanTraining,
) -> TrainResult:
    recipe, device = job.recipe, context.device
    torch.manual_seed(job.seed)
    train_set, val_set = datasets

    model = prepare_model(model.to(device).train(), lean)
    criterion = build_criterion(model, recipe.cls_cost, lean).to(device)
    queries = model.config.head.num_queries
    lr = recipe.scaled_lr(recipe.batch_size * context.world_size)
    optimizer = build_optimizer(model, recipe, lr)
    scheduler = build_scheduler(optimizer, recipe)
    amp_dtype = _amp_dtype(device) if job.amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    def step(network: torch.nn.Module, images: Tensor, labels: Tensor) -> StepOutcome:
        (num_masks,) = all_reduce_mean([criterion.local_mask_count(labels, queries)], context)
        losses = step_losses(
            network, criterion, images, labels, lean, num_masks=num_masks, autocast_dtype=amp_dtype
        )
        loss = torch.stack(list(losses.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = _clip(model, recipe.clip_grad)
        lr_now = _base_lr(optimizer)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        return StepOutcome(loss, losses, lr_now, grad_norm)

    def validate() -> dict[str, float]:
        scores = evaluate(model, val_set, context=context)
        return {"mIoU": scores.mIoU, "mAcc": scores.mAcc, "aAcc": scores.aAcc}

    progress = run_iterations(
        run, model, context, state, Optimisation(optimizer, scheduler, scaler),
        job=job, train_set=train_set, workers=workers, step=step,
        validate=validate if val_set is not None else None, score="mIoU",
        callbacks=callbacks,
    )  # fmt: skip
    return TrainResult(run.root, progress.iteration, progress.best, progress.best_iteration)


def _run_config(model: Spike2Former, job: TrainJob, context: DistributedContext) -> dict[str, Any]:
    recipe = job.recipe
    total_batch = recipe.batch_size * context.world_size
    return {
        "model": model.config.to_dict(),
        "job": job.to_dict(),
        "processes": context.world_size,
        "total_batch_size": total_batch,
        "lr": recipe.scaled_lr(total_batch),
        "device": context.device.type,
        "torch": torch.__version__,
    }


def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _clip(model: torch.nn.Module, max_norm: float | None) -> float:
    """Clip the global L2 gradient norm (mmengine's ``clip_grad``); returns the norm before."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm is None:
        norms = torch.stack([p.grad.detach().norm() for p in params]) if params else None
        return float(norms.norm()) if norms is not None else 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


def _base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The rate of the non-backbone parameters (the backbone trains at a multiple of it)."""
    for group in optimizer.param_groups:
        if group.get("name") != "backbone":
            return float(group["lr"])
    return float(optimizer.param_groups[0]["lr"])
