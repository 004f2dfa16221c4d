"""One firing run split over processes: what each process hands over, and the whole run rebuilt
from those shares on rank 0.

Each process measures every ``world_size``-th input (``inference.sharding.Shard.take``). The merged
run is the one a single process measuring every input in order would have made: records in input
order, failed inputs counted once (by the process that had them), integer counts summed exactly
and floating sums (synaptic operations) exact as well, since ``FiringTotals`` keeps them as
``ExactSum``s; per-image values are each computed from that image alone. So the reports are equal
bit for bit, the time each image took aside, as long as every process computes each image's
forward as one process would (same device type and precision; on CPUs, thread counts can change
the last bits of a convolution, which may move a spike count that sits on a rounding boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from ..training.distributed import DistributedContext, gather_objects
from .records import ImageRecord
from .totals import FiringTotals


@dataclass
class RunShare:
    """What one process measured: its records, in the order it measured them, and totals over
    its measured images (the ``ok`` records, in the same order)."""

    records: list[ImageRecord]
    totals: FiringTotals


def merge_shares(shares: Sequence[RunShare]) -> RunShare:
    """The run of all the shares' inputs, as one process measuring them in input order."""
    tagged = sorted(
        (record.input_index, share, local)
        for share, part in enumerate(shares)
        for local, record in enumerate(part.records)
    )
    records = [shares[share].records[local] for _, share, local in tagged]
    # position among all measured images of each share's measured images, in its own order
    position: dict[tuple[int, int], int] = {}
    for _, share, local in tagged:
        if shares[share].records[local].status == "ok":
            position[share, local] = len(position)
    parts = [
        (part.totals, [position[share, local] for local in _measured(part.records)])
        for share, part in enumerate(shares)
    ]
    return RunShare(records, FiringTotals.merged(parts))


def gather_share(share: RunShare, context: DistributedContext) -> RunShare | None:
    """Every process's share merged on rank 0 (``None`` on the other processes); every process
    of the group must call it."""
    shares = gather_objects(share, context)
    if shares is None:
        return None
    return merge_shares(cast(list[RunShare], shares))


def _measured(records: list[ImageRecord]) -> list[int]:
    return [local for local, record in enumerate(records) if record.status == "ok"]
