"""Which share of a batch job this process takes, from ``--shard K/N`` or the launcher.

Shares are taken by input, round robin over the expanded input list (every process expands the
same arguments to the same list), so each input, image or video, is processed by exactly one
process and shares of folders with mixed sizes stay balanced. ``torchrun`` and schedulers such as
SLURM describe the process through ``RANK``/``WORLD_SIZE`` (and ``LOCAL_RANK``/
``LOCAL_WORLD_SIZE`` for the processes of one machine, which pick a GPU and a CPU share by it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..errors import S2FError

T = TypeVar("T")


class ShardError(S2FError):
    """A share specification that cannot be used as given (a usage error)."""


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` (0-based); ``local_rank`` among ``local_count`` processes
    on this machine."""

    index: int = 0
    count: int = 1
    local_rank: int = 0
    local_count: int = 1

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def take(self, items: Sequence[T]) -> list[T]:
        """This process's inputs: every ``count``-th one, starting at ``index``."""
        return list(items[self.index :: self.count])


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> share K (0 <= K < N) of N."""
    parts = text.split("/")
    try:
        index, count = (int(part) for part in parts)
    except ValueError:
        raise ShardError(f"shard {text!r}: use K/N, for example 0/4 (K counts from 0)") from None
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"shard {text!r}: K must be 0 to N-1 and N at least 1")
    return Shard(index, count)


def shard_from_environment(environ: Mapping[str, str] = os.environ) -> Shard | None:
    """The share ``RANK``/``WORLD_SIZE`` describe (as torchrun and most schedulers set them),
    or ``None`` when they are not set. Values that are not numbers, or out of range, raise
    ``ShardError`` naming the variable."""
    if "RANK" not in environ and "WORLD_SIZE" not in environ:
        return None
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        raise ShardError("RANK and WORLD_SIZE must be set together")
    rank, world = _number(environ, "RANK"), _number(environ, "WORLD_SIZE")
    if world < 1 or not 0 <= rank < world:
        raise ShardError(f"RANK={rank} and WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    local_rank = _number(environ, "LOCAL_RANK", 0)
    if local_rank < 0:
        raise ShardError(f"LOCAL_RANK={local_rank}: need LOCAL_RANK >= 0")
    local_count = _number(environ, "LOCAL_WORLD_SIZE", local_rank + 1)
    if local_count < 1:
        raise ShardError(f"LOCAL_WORLD_SIZE={local_count}: need LOCAL_WORLD_SIZE >= 1")
    return Shard(rank, world, local_rank, max(local_count, local_rank + 1))


def _number(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = environ.get(name)
    if raw is None and default is not None:
        return default
    try:
        return int(raw or "")
    except ValueError:
        shown = raw if raw is None or len(raw) <= 40 else raw[:40] + "..."
        raise ShardError(f"{name}={shown!r} in the environment is not a number") from None


def resolve_shard(option: str | None, environ: Mapping[str, str] = os.environ) -> Shard:
    """``--shard K/N`` when given, else the launcher's share, else the whole job."""
    launched = shard_from_environment(environ)
    if option is None:
        return launched or Shard()
    if launched is not None and launched.count > 1:
        raise ShardError(
            f"shard {option!r} given, but the launcher already set RANK/WORLD_SIZE "
            f"({launched.index}/{launched.count}); use one or the other"
        )
    return parse_shard(option)


def shard_device(requested: str, shard: Shard, cuda_devices: int) -> str:
    """The device of this process: a GPU per local process when several share a machine."""
    if requested in ("auto", "cuda") and cuda_devices > 0 and shard.local_count > 1:
        return f"cuda:{shard.local_rank % cuda_devices}"
    return requested


def shard_threads(requested: int, shard: Shard, cpus: int | None = None) -> int:
    """CPU threads for this process: ``requested``, or for 0 (automatic) an equal part of the
    machine's CPUs when several processes share it (torchrun's default is one thread each)."""
    if requested or shard.local_count == 1:
        return requested
    if cpus is None:
        affinity = getattr(os, "sched_getaffinity", None)
        cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    return max(1, cpus // shard.local_count)
