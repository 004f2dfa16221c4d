"""Data parallelism through ``torch.distributed``, started by ``torchrun``.

``torchrun --nproc_per_node N ...`` (one node or several) sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``init_distributed`` reads them and joins the
process group with NCCL when the processes use GPUs and gloo on CPUs. Without those variables
everything runs in one process and the helpers below are no-ops.

Under data parallelism every process keeps its own BatchNorm statistics (plain BN, as the
official code, whose ``SyncBN`` is never instantiated); DDP broadcasts rank 0's buffers at each
forward, so rank 0's statistics are the ones saved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import S2FError
from ..inference.devices import resolve_device


class DistributedError(S2FError):
    """The process group cannot be set up as the environment describes."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group torchrun describes (if any) and choose this process's device.

    ``device``: any name ``inference.devices.resolve_device`` takes (``auto``: CUDA, then MPS,
    then CPU). Under torchrun each process takes GPU ``LOCAL_RANK`` (so ``cuda:N`` and ``mps``,
    which name one device for all processes, are refused there). Backend: NCCL for CUDA, gloo
    for CPU.
    """
    try:
        single = resolve_device(device)
    except S2FError as exc:
        raise DistributedError(str(exc)) from None
    use_cuda = single.type == "cuda"
    if not launched_by_torchrun():
        return DistributedContext(device=single)
    if single.type == "mps" or single.index is not None:
        raise DistributedError(
            f"device {device!r} names one device for every process; under torchrun use cuda "
            "(each process takes GPU LOCAL_RANK) or cpu"
        )
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise DistributedError(
            f"RANK and WORLD_SIZE are set but not {' and '.join(missing)}, so the processes "
            "cannot join one process group to combine their results; launch with torchrun "
            "(or srun with MASTER_ADDR and MASTER_PORT exported)"
        )
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) here; "
                "start at most one process per GPU"
            )
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            device_id=chosen if use_cuda else None,
        )
    return DistributedContext(rank, world_size, local_rank, chosen)


def shutdown(context: DistributedContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, context: DistributedContext) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when there are several processes."""
    if not context.distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum_(tensor: Tensor, context: DistributedContext) -> Tensor:
    """Sum ``tensor`` over all processes, in place (on the process's device for NCCL)."""
    if context.distributed:
        on_device = tensor.to(context.device)
        dist.all_reduce(on_device)
        tensor.copy_(on_device)
    return tensor


def all_reduce_mean(values: list[float], context: DistributedContext) -> list[float]:
    """Mean of each value over all processes (mmdet's ``reduce_mean``)."""
    if not context.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    all_reduce_sum_(tensor, context)
    return (tensor / context.world_size).tolist()


def barrier(context: DistributedContext) -> None:
    if context.distributed:
        dist.barrier()


def gather_objects(value: object, context: DistributedContext) -> list[object] | None:
    """Every process's ``value`` in rank order on rank 0; ``None`` on the other processes."""
    if not context.distributed:
        return [value]
    gathered: list[object] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_object(value: object, context: DistributedContext) -> object:
    """Rank 0's ``value`` on every process."""
    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
