"""The gradient of a bilinear upsampling (``align_corners=False``) with respect to its input.

ATen's CPU backward of ``upsample_bilinear2d`` scatters every output pixel's gradient to its four
sources one element at a time: for the 2x upsampling of mask logits to label size it takes six to
eight times the forward pass. At exactly twice the size the map is separable and regular (output
2i reads 1/4 of input i-1 and 3/4 of input i, output 2i+1 reads 3/4 of i and 1/4 of i+1, clamped
at the borders), so its transpose is a few strided passes per axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def bilinear_upsample_grad(grad: Tensor, input_size: Sequence[int]) -> Tensor:
    """``d loss / d x`` for ``y = F.interpolate(x, size, mode="bilinear", align_corners=False)``
    given ``grad = d loss / d y``; ``input_size`` is ``x``'s shape ``[N, C, h, w]``."""
    height, width = input_size[-2:]
    if tuple(grad.shape[-2:]) == (2 * height, 2 * width):
        return _halve_axis(_halve_axis(grad, grad.dim() - 1), grad.dim() - 2)
    return torch.ops.aten.upsample_bilinear2d_backward(
        grad, list(grad.shape[-2:]), list(input_size), False
    )


def _halve_axis(grad: Tensor, dim: int) -> Tensor:
    """The transpose of the 2x linear upsampling along ``dim`` applied to ``grad``."""
    n = grad.shape[dim] // 2
    pairs = grad.unflatten(dim, (n, 2))
    even, odd = pairs.select(dim + 1, 0), pairs.select(dim + 1, 1)
    out = (even + odd).mul_(0.75)
    out.narrow(dim, 1, n - 1).add_(odd.narrow(dim, 0, n - 1), alpha=0.25)
    out.narrow(dim, 0, n - 1).add_(even.narrow(dim, 1, n - 1), alpha=0.25)
    out.narrow(dim, 0, 1).add_(even.narrow(dim, 0, 1), alpha=0.25)  # output 0 reads input 0 only
    out.narrow(dim, n - 1, 1).add_(odd.narrow(dim, n - 1, 1), alpha=0.25)  # and the last, too
    return out
