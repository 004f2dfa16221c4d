"""Activation checkpointing that leaves the training computation exactly as it was.

``recomputed(module, x)`` runs ``module`` without keeping what its layers save for backward;
backward runs it again (``torch.utils.checkpoint``, non-reentrant) to get them. The forward is
deterministic, so the recomputed tensors and every gradient are bit-identical. What would differ
is BatchNorm's running statistics, which a second training-mode forward would update twice:
the recomputation restores them, so they end as after one forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


@contextmanager
def unchanged_running_statistics(module: nn.Module) -> Iterator[None]:
    """The block's BatchNorm buffers as they were before it, whatever the block does."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    kept = [[b.clone() for b in norm.buffers()] for norm in norms]
    try:
        yield
    finally:
        for norm, saved in zip(norms, kept, strict=True):
            for buffer, value in zip(norm.buffers(), saved, strict=True):
                buffer.copy_(value)


def recomputed(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)``, its intermediate tensors recomputed in backward instead of kept."""
    calls = 0

    def run(inputs: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            return module(inputs)
        with unchanged_running_statistics(module):
            return module(inputs)

    return checkpoint(run, x, use_reentrant=False)
