"""The iteration skeleton that segmentation training and backbone pretraining share.

A run's algorithm differs in what one step computes (``Step``) and how the network is scored
(``Validate``); everything around them is the same and lives here: the start point (a new run
checkpoints iteration 0, a resumed one takes back its optimiser, schedule, scaler and random
state), the data-parallel wrapper, the resumable batch order, the ``metrics.jsonl`` lines every
``log_interval`` iterations (each loss term averaged over the interval and over processes), the
validation every ``eval_interval`` (a better score rewrites ``weights/best.safetensors``) and the
checkpoint every ``checkpoint_interval``, all three also at the last iteration. Rank 0 writes,
every rank computes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .checkpoint import RunFolder, TrainState
from .data import train_loader
from .distributed import DistributedContext, all_reduce_mean, barrier, wrap
from .run_lifecycle import notify, starting_point, training_state

# The fields of a ``metrics.jsonl`` training line that are measured times, not results.
TIMING_FIELDS = frozenset({"time", "data_time", "images_per_s", "eta_s"})


@dataclass(frozen=True)
class Cadence:
    """How long a run is and how often it logs, validates and checkpoints."""

    iters: int
    batch_size: int
    log_interval: int
    eval_interval: int
    checkpoint_interval: int

    @classmethod
    def of(cls, job: Any) -> Cadence:
        """The cadence of a ``TrainJob`` or a ``PretrainJob`` (a ``log_interval`` and a recipe
        with ``iters``, ``batch_size``, ``eval_interval`` and ``checkpoint_interval``)."""
        recipe = job.recipe
        return cls(
            recipe.iters, recipe.batch_size, job.log_interval, recipe.eval_interval,
            recipe.checkpoint_interval,
        )  # fmt: skip

    def due(self, done: int, interval: int) -> bool:
        return done % interval == 0 or done == self.iters


@dataclass(frozen=True)
class StepOutcome:
    """One optimiser step: the total loss, its named terms (may be empty), the learning rate it
    used and the gradient norm before clipping (None where nothing measures it)."""

    loss: Tensor
    terms: dict[str, Tensor]
    lr: float
    grad_norm: float | None = None


# ``step(network, images, labels)``: forward, loss, backward, optimiser and schedule step.
Step = Callable[[torch.nn.Module, Tensor, Tensor], StepOutcome]
# ``validate()``: the scores of the current network; ``score`` names the one that ranks runs.
Validate = Callable[[], dict[str, float]]


@dataclass(frozen=True)
class Optimisation:
    """What a checkpoint carries besides the weights."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = None


@dataclass(frozen=True)
class Progress:
    """Where the iterations ended: the last iteration and the best score with its iteration."""

    iteration: int
    best: float | None
    best_iteration: int | None


def run_iterations(
    run: RunFolder,
    model: torch.nn.Module,
    context: DistributedContext,
    state: TrainState | None,
    optimisation: Optimisation,
    *,
    job: Any,
    train_set: Any,
    workers: int,
    step: Step,
    validate: Validate | None,
    score: str,
    callbacks: object | None,
) -> Progress:
    """Train ``model`` from ``state`` (None: a new run) to the end of ``job`` (a ``TrainJob``
    or a ``PretrainJob``: its recipe's cadence, its seed for the data order); ``callbacks``
    (rank 0 only, every method optional) hear ``on_start(start, total, job)``,
    ``on_iteration``, ``on_log``, ``on_eval`` and ``on_checkpoint``."""
    cadence = Cadence.of(job)
    callbacks = callbacks if context.is_main else None
    optimizer, scheduler, scaler = (
        optimisation.optimizer,
        optimisation.scheduler,
        optimisation.scaler,
    )
    start, best, best_iteration = starting_point(
        run, model, state, context, optimizer, scheduler, scaler
    )
    network = wrap(model, context)
    batches = train_loader(train_set, cadence.batch_size, context, job.seed, start, workers)
    notify(callbacks, "on_start", start, cadence.iters, job)

    window = _Window()
    for iteration in range(start, cadence.iters):
        tick = time.perf_counter()
        images, labels, _ = next(batches)
        images, labels = images.to(context.device, non_blocking=True), labels.to(context.device)
        window.data_time += time.perf_counter() - tick

        outcome = step(network, images, labels)

        done = iteration + 1
        window.add(outcome, time.perf_counter() - tick)
        notify(callbacks, "on_iteration", done, outcome.loss.item(), outcome.lr)

        if cadence.due(done, cadence.log_interval):
            record = window.record(done, outcome.lr, cadence, context)
            if context.is_main:
                run.append_metrics(record)
                notify(callbacks, "on_log", record)
            window = _Window()
        if validate is not None and cadence.due(done, cadence.eval_interval):
            scores = validate()
            improved = best is None or scores[score] > best
            if improved:
                best, best_iteration = scores[score], done
            record = {"iter": done, "event": "val", **scores, f"best_{score}": best}
            if context.is_main:
                if improved:
                    run.save_best(model)
                run.append_metrics(record)
                notify(callbacks, "on_eval", record)
        if cadence.due(done, cadence.checkpoint_interval):
            if context.is_main:
                run.save_checkpoint(
                    model,
                    training_state(done, optimizer, scheduler, best, best_iteration, scaler),
                )
                notify(callbacks, "on_checkpoint", done)
    barrier(context)
    return Progress(max(start, cadence.iters), best, best_iteration)


class _Window:
    """Sums over the iterations since the last log line."""

    def __init__(self) -> None:
        self.count = 0
        self.terms: dict[str, float] = {}
        self.grad_norm: float | None = None
        self.time = 0.0
        self.data_time = 0.0

    def add(self, outcome: StepOutcome, seconds: float) -> None:
        self.count += 1
        for key, value in {"loss": outcome.loss, **outcome.terms}.items():
            self.terms[key] = self.terms.get(key, 0.0) + value.item()
        if outcome.grad_norm is not None:
            self.grad_norm = (self.grad_norm or 0.0) + outcome.grad_norm
        self.time += seconds

    def record(
        self, iteration: int, lr: float, cadence: Cadence, context: DistributedContext
    ) -> dict[str, Any]:
        keys = list(self.terms)
        means = all_reduce_mean([self.terms[k] / self.count for k in keys], context)
        images = self.count * cadence.batch_size * context.world_size
        record: dict[str, Any] = {"iter": iteration, "event": "train", "lr": lr}
        record.update({key: round(value, 6) for key, value in zip(keys, means, strict=True)})
        if self.grad_norm is not None:
            record["grad_norm"] = round(self.grad_norm / self.count, 6)
        record["time"] = round(self.time / self.count, 4)
        record["data_time"] = round(self.data_time / self.count, 4)
        record["images_per_s"] = round(images / self.time, 3) if self.time > 0 else None
        record["eta_s"] = round((cadence.iters - iteration) * self.time / self.count, 1)
        return record
