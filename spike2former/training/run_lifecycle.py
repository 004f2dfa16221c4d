"""Starting and resuming a run folder on every process: what segmentation training and backbone
pretraining share.

``started_run`` creates the folder on rank 0 (an error there is raised on every process), writes
the run's configuration and, if the run fails before it holds anything worth resuming
(interrupted included), removes what it wrote. ``resumable_config`` checks that a folder holds a
run this many processes may continue; ``prepared_for_resume`` tidies it once every process has
read its checkpoint. ``starting_point`` and ``training_state`` put a run's optimiser, schedule
and random state into a checkpoint and back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .checkpoint import RunFolder, RunFolderError, TrainState, capture_rng, restore_rng
from .data import worker_deaths
from .distributed import DistributedContext, barrier, broadcast_object


@contextmanager
def started_run(
    run: RunFolder, context: DistributedContext, made_by_caller: bool, config: dict[str, Any]
) -> Iterator[RunFolder]:
    """The new run folder ``run``, created and described by ``config``, for the block that
    trains in it."""
    error = None
    if context.is_main:
        try:
            run.create(made_by_caller=made_by_caller)
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every process
            error = exc
    error = broadcast_object(error, context)
    if error is not None:
        raise error  # type: ignore[misc]
    try:
        if context.is_main:
            run.write_config(config)
        with worker_deaths():
            yield run
    except BaseException:
        if context.is_main and not run.holds_progress():
            run.discard()
        raise


def resumable_config(run: RunFolder, context: DistributedContext) -> dict[str, Any]:
    """The saved configuration of the run in ``run``, which this many processes may continue."""
    run.check_resumable()
    saved = run.read_config()
    if saved.get("processes") != context.world_size:
        raise RunFolderError(
            f"{run.root} was trained with {saved.get('processes')} process(es), this is "
            f"{context.world_size}; resume it with as many (the data order and batch depend on it)"
        )
    return saved


@contextmanager
def prepared_for_resume(
    run: RunFolder, iteration: int, context: DistributedContext
) -> Iterator[RunFolder]:
    """``run`` tidied for continuing from ``iteration`` (stale weights and the log lines after
    it removed by rank 0, once every process has read the checkpoint), for the block that
    trains in it."""
    barrier(context)
    if context.is_main:
        run.tidy(iteration)
        run.truncate_metrics(iteration)
    with worker_deaths():
        yield run


def training_state(
    iteration: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    best: float | None,
    best_iteration: int | None,
    scaler: torch.amp.GradScaler | None = None,
) -> TrainState:
    """What a checkpoint of ``iteration`` holds besides the weights."""
    return TrainState(
        iteration=iteration,
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        rng=capture_rng(),
        best_miou=best,
        best_iteration=best_iteration,
        scaler=scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    )


def starting_point(
    run: RunFolder,
    model: torch.nn.Module,
    state: TrainState | None,
    context: DistributedContext,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[int, float | None, int | None]:
    """(first iteration, best score, its iteration): a new run checkpoints its starting network
    as iteration 0; a resumed one takes back the optimiser, schedule, scaler and random state."""
    if state is None:
        if context.is_main:
            run.save_checkpoint(model, training_state(0, optimizer, scheduler, None, None, scaler))
        return 0, None, None
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    if scaler is not None and state.scaler is not None:
        scaler.load_state_dict(state.scaler)
    restore_rng(state.rng)
    return state.iteration, state.best_miou, state.best_iteration


def notify(callbacks: object | None, name: str, *args: object) -> None:
    """Call ``callbacks.name(*args)`` where the front end has that method."""
    method = getattr(callbacks, name, None)
    if method is not None:
        method(*args)
