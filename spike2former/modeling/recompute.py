"""Activation checkpointing that leaves the training computation exactly as it was.

``recomputed(module, x)`` runs ``module`` without keeping what its layers save for backward;
backward runs it again (``torch.utils.checkpoint``, non-reentrant) to get them. The forward is
deterministic, so the recomputed tensors and every gradient are bit-identical, provided the
second run starts from the same state: BatchNorm's running statistics, which the first
training-mode run updated (and which SDT-V2's ``BNAndPad`` reads right after its update), are
put back as they were before it for the recomputation, and as they were after it afterwards.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def _copied(buffers: list[Tensor]) -> list[Tensor]:
    return [buffer.clone() for buffer in buffers]


def _restore(buffers: list[Tensor], values: list[Tensor]) -> None:
    for buffer, value in zip(buffers, values, strict=True):
        buffer.copy_(value)


def recomputed(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)``, its intermediate tensors recomputed in backward instead of kept."""
    statistics = list(module.buffers())  # BatchNorm's running statistics in these blocks
    before = _copied(statistics)
    calls = 0

    def run(inputs: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            return module(inputs)
        after = _copied(statistics)
        _restore(statistics, before)
        try:
            return module(inputs)
        finally:
            _restore(statistics, after)

    return checkpoint(run, x, use_reentrant=False)
