"""How much memory one forward pass of a network takes at any input size, from three small passes.

``memory.network_peak_per_pixel`` assumes the peak grows linearly with the pixels, which holds for
the fused inference network (attention as q (k^T v)). The reference network, which ``s2f eval``
and ``s2f firing-rates`` run as the official code does, computes SDT-V3 attention as (q k^T) v:
N x N matrices in the N tokens, quadratic in the pixels. So the live bytes are followed through
three passes on squares of ``PROBE_SIDES`` (multiples of the networks' 32-pixel stride, so that
every feature map scales exactly): after each allocation they are ``c + a P + b P^2`` in the
input's P pixels (constants, feature maps, token-by-token matrices), solved for per allocation,
and the peak at any size is the largest of those polynomials there. The passes are made only for
inputs that a bound from the network's configuration (``reference_bound``) says might not fit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..config import ModelConfig
from .memory import COARSE_BYTES_PER_PIXEL, LiveTensors, MemoryBudget, MemoryLimitError

PROBE_SIDES = (64, 96, 128)
STRIDE = 32
# Stride of the backbone's first attention stage, whose tokens the N x N matrices are made of.
ATTENTION_STRIDE = 16


class PassMemory:
    """Checks, before it runs, that one pass of ``forward`` over an input fits the memory that
    ``max_memory`` (bytes of host memory; ``None``: what is free) and the machine allow.
    ``bound``: bytes a pass over P pixels takes at most (``reference_bound``); the probe passes
    run at the first check that it does not settle."""

    def __init__(
        self,
        forward: Callable[[Tensor], object],
        dtype: torch.dtype,
        device: torch.device,
        max_memory: float | None,
        bound: Callable[[int], float],
    ) -> None:
        self._forward = forward
        self._bound = bound
        self.dtype, self.device, self.max_memory = dtype, device, max_memory
        self._peak: PeakCurve | None = None

    def check(
        self,
        what: str,
        size: tuple[int, int],
        image_pixels: int,
        held: float = 0.0,
        **arguments: object,
    ) -> None:
        """Raise ``MemoryLimitError`` ("``what`` needs about ...", ``what`` naming
        ``arguments`` as ``errors.NamesArguments`` does) when a pass over an input of ``size``
        (height, width), with ``held`` bytes more beside the network and an image of
        ``image_pixels`` on the host, would not fit."""
        # feature maps of a side that is not a multiple of the stride are rounded up
        pixels = _stride_multiple(size[0]) * _stride_multiple(size[1])
        budget = MemoryBudget.now(self.device, self.max_memory)
        need = budget.need((self._bound(pixels) + held) / pixels, pixels, image_pixels)
        if budget.allows(need):
            return
        if self._peak is None:
            self._peak = PeakCurve.measure(self._forward, self.dtype, self.device)
        need = budget.need((self._peak(pixels) + held) / pixels, pixels, image_pixels)
        if not budget.allows(need):
            raise MemoryLimitError(
                f"{what} needs about {budget.shortfall(need)}",
                budget.capped_by_user(need),
                **arguments,
            )


def reference_bound(config: ModelConfig, dtype: torch.dtype) -> Callable[[int], float]:
    """Bytes a pass of the network ``config`` describes takes at most over P input pixels, in
    ``dtype``: per pixel ``COARSE_BYTES_PER_PIXEL`` per time step (far above every network
    measured) and three full-size maps per class and query, and one N x N matrix per attention
    head and time step in the N tokens of the first attention stage."""
    scale = dtype.itemsize / 4
    time_steps, head = config.backbone.time_steps, config.head
    per_pixel = scale * (
        COARSE_BYTES_PER_PIXEL * time_steps + 12 * (head.num_classes + head.num_queries)
    )
    per_token_pair = 2 * dtype.itemsize * time_steps * config.backbone.num_heads

    def bound(pixels: int) -> float:
        return per_pixel * pixels + per_token_pair * (pixels / ATTENTION_STRIDE**2) ** 2

    return bound


class PeakCurve:
    """Peak live bytes of a pass as a function of its input pixels (see the module docstring):
    ``coefficients`` holds ``c, a, b`` per allocation, in units of ``PROBE_SIDES[0]`` squared
    pixels."""

    def __init__(self, coefficients: np.ndarray) -> None:
        self.coefficients = coefficients

    @classmethod
    def measure(
        cls, forward: Callable[[Tensor], object], dtype: torch.dtype, device: torch.device
    ) -> PeakCurve:
        traces = [_trace(forward, side, dtype, device) for side in PROBE_SIDES]
        if len({len(trace) for trace in traces}) > 1:  # the passes differ: fit their peaks
            traces = [[max(trace)] for trace in traces]
        sizes = np.array([side**2 / PROBE_SIDES[0] ** 2 for side in PROBE_SIDES])
        powers = np.stack([np.ones_like(sizes), sizes, sizes**2], axis=1)
        return cls(np.linalg.solve(powers, np.array(traces, dtype=np.float64)).T)

    def __call__(self, pixels: int) -> float:
        x = pixels / PROBE_SIDES[0] ** 2
        return float(max((self.coefficients @ np.array([1.0, x, x * x])).max(), 0.0))


class _TracedLiveTensors(LiveTensors):
    """``LiveTensors`` that also keeps the live bytes after every allocation."""

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[int] = []

    def _hold(self, tensor: Tensor) -> None:
        super()._hold(tensor)
        self.trace.append(self.live)


def _stride_multiple(side: int) -> int:
    return -(-max(side, 1) // STRIDE) * STRIDE


def _trace(
    forward: Callable[[Tensor], object], side: int, dtype: torch.dtype, device: torch.device
) -> list[int]:
    probe = torch.zeros(1, 3, side, side, dtype=dtype, device=device)
    # One thread: between the operations traced in Python, other threads would only fall
    # asleep and have to be woken for the next one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(), _TracedLiveTensors() as tracker:
            forward(probe)
    finally:
        torch.set_num_threads(threads)
    return tracker.trace or [0]
