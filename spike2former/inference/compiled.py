"""The network and its score combination compiled with ``torch.compile`` (opt-in).

Inductor (weights frozen into the graph) runs the elementwise work between the convolutions (the
neurons' clamp/round/scale, the residual adds, the layer scales) as a few generated kernels and
removes the per-operation Python overhead: on a 2-core CPU a 512x512 image runs about a fifth
faster. Some operations round differently (the last projections and the score combination, by a
few ulp), so like every change of rounding in this chaotic network it can move labels:
agreement is measured in ``benchmarks``. The price is compilation, once per input size and
batch size: one to two minutes the first time, about 15 s with torch's on-disk cache warm.
Shapes are compiled statically (dynamic shapes compile for several minutes and run slower than
eager), so the mode pays off for many inputs of one size: videos, frame folders, datasets at a
fixed size.

Where compilation is impossible (no C++ compiler, an unsupported device or operation), the first
call falls back to eager execution for good and ``note`` says why.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..modeling.spike2former import Spike2Former, combine_masks


class SemanticScores(nn.Module):
    """Normalised ``[B, 3, h, w]`` -> per-class scores ``[B, K, h, w]``, as the official predict."""

    def __init__(self, network: Spike2Former) -> None:
        super().__init__()
        self.network = network

    def forward(self, batch: Tensor) -> Tensor:
        out = self.network(batch)
        return combine_masks(out["class_logits"], out["mask_logits"], batch.shape[-2:])


class CompiledScores:
    """``SemanticScores`` through ``torch.compile``, falling back to eager on failure."""

    def __init__(self, scores: SemanticScores) -> None:
        self.eager = scores
        self.note: str | None = None
        # Whether the last call compiled (a batch shape, dtype or device not seen before).
        self.compiled_last_call = False
        self._seen: set[tuple[object, ...]] = set()
        self._compiled: Callable[[Tensor], Tensor] | None = torch.compile(
            scores, dynamic=False, options={"freezing": True}
        )

    @property
    def active(self) -> bool:
        """False once compilation has failed and calls run eagerly."""
        return self._compiled is not None

    def __call__(self, batch: Tensor) -> Tensor:
        self.compiled_last_call = False
        if self._compiled is not None:
            key = (tuple(batch.shape), batch.dtype, batch.device)
            try:
                out = self._compiled(batch)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly instead
                self._compiled = None
                lines = str(exc).strip().splitlines()
                reason = lines[0] if lines else type(exc).__name__
                self.note = f"cannot compile the network ({reason[:200]}); running it uncompiled"
            else:
                self.compiled_last_call = key not in self._seen
                self._seen.add(key)
                return out
        return self.eager(batch)
