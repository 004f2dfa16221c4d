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
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import S2FError
from ..inference.devices import resolve_device
from ..inference.sharding import shard_from_environment


class DistributedError(S2FError):
    """The process group cannot be set up as the environment describes (a usage error)."""


class ProcessGroupError(S2FError):
    """The process group failed: it could not be joined, or another process of it died or can
    no longer be reached, so this one cannot finish its part."""


# What the backends say when a peer's connection breaks: gloo's TCP transport, the TCP store,
# NCCL's watchdog.
_LOST_PEER = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Connection refused",
    "Socket closed",
    "remote process exited",
    "communicator was aborted",
)
# A backend's source location at the start of its messages: ``[/path/pair.cc:537] ``.
_SOURCE_LOCATION = re.compile(r"\[[^\]\s]+\.(?:cc|cpp|h|hpp):\d+\]\s*")


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


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group torchrun describes (if any) and choose this process's device.

    ``device``: any name ``inference.devices.resolve_device`` takes (``auto``: CUDA, then MPS,
    then CPU). Under torchrun each process takes GPU ``LOCAL_RANK`` (so ``cuda:N`` and ``mps``,
    which name one device for all processes, are refused there). Backend: NCCL for CUDA, gloo
    for CPU. Bad settings (of ``device`` or the launcher's variables) raise
    ``DistributedError``; a group that cannot be joined raises ``ProcessGroupError``.
    """
    try:
        single = resolve_device(device)
        launch = shard_from_environment()
    except S2FError as exc:
        raise DistributedError(str(exc)) from None
    if launch is None or launch.count == 1:
        return DistributedContext(device=single)
    use_cuda = single.type == "cuda"
    if single.type == "mps" or single.index is not None:
        raise DistributedError(
            f"device {device!r} names one device for every process; under torchrun use cuda "
            "(each process takes GPU LOCAL_RANK) or cpu"
        )
    _check_master()
    if use_cuda:
        if launch.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK {launch.local_rank} but only {torch.cuda.device_count()} GPU(s) "
                "here; start at most one process per GPU"
            )
        torch.cuda.set_device(launch.local_rank)
        chosen = torch.device("cuda", launch.local_rank)
    else:
        chosen = torch.device("cpu")
    if not dist.is_initialized():
        try:
            dist.init_process_group(
                backend="nccl" if use_cuda else "gloo",
                device_id=chosen if use_cuda else None,
            )
        except (RuntimeError, ValueError) as exc:
            where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
            raise ProcessGroupError(
                f"cannot join the process group at {where} as rank {launch.index} of "
                f"{launch.count}: {_one_line(exc)}"
            ) from None
    return DistributedContext(launch.index, launch.count, launch.local_rank, chosen)


def _check_master() -> None:
    """``MASTER_ADDR`` and ``MASTER_PORT`` are set, the port a number, before anything waits on
    them."""
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise DistributedError(
            f"RANK and WORLD_SIZE are set but not {' and '.join(missing)}, so the processes "
            "cannot join one process group to combine their results; launch with torchrun "
            "(or srun with MASTER_ADDR and MASTER_PORT exported)"
        )
    port = os.environ["MASTER_PORT"]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"MASTER_PORT={port[:40]!r} in the environment is not a TCP port")


def group_failure(error: BaseException) -> ProcessGroupError | None:
    """``error`` as a one-line ``ProcessGroupError`` when a collective raised it because another
    process of the group died or its connection broke (a ``torch.distributed`` error, or the
    backend's ``RuntimeError`` out of DDP's backward pass); ``None`` for any other error."""
    if not isinstance(error, RuntimeError) or not (dist.is_available() and dist.is_initialized()):
        return None
    text = str(error)
    marker = next((m for m in _LOST_PEER if m.lower() in text.lower()), None)
    if marker is None and not isinstance(error, dist.DistError):
        return None
    return ProcessGroupError(
        "another process of the group died or can no longer be reached, so this one stops "
        f"too ({marker or _one_line(error)})"
    )


def _one_line(error: BaseException) -> str:
    """The first sentence of a backend's message, without its source location."""
    text = _SOURCE_LOCATION.sub("", str(error)).strip()
    first = " ".join(text.splitlines()[0].split()) if text else ""
    return first.split(". ")[0][:200] or type(error).__name__


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


@contextmanager
def refused_together(context: DistributedContext) -> Iterator[None]:
    """Checks before a job that stop every process when any refuses: the ``S2FError`` of the
    block is raised where it happened and a ``DistributedError`` in the processes whose block
    passed. Every process of the group must enter it."""
    error: S2FError | None = None
    try:
        yield
    except S2FError as exc:
        error = exc
    if context.distributed:
        refused = all_reduce_mean([float(error is not None)], context)[0] > 0
        if refused and error is None:
            error = DistributedError("another process refused to start; see its message")
    if error is not None:
        raise error


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
