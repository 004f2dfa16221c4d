"""Channels-last (pixel-major) maps for the inference tail: storage and per-sample 1x1 maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def channels_last(x: Tensor) -> Tensor:
    """``x`` ``[N, C, H, W]`` stored channels-last, with every stride spelt out.

    Kernels choose their memory format from the strides, and the batch stride of a single image
    is otherwise arbitrary (a size-1 dimension), which can send it to the channel-first kernel.
    """
    x = x.contiguous(memory_format=torch.channels_last)
    _, c, _, w = x.shape
    return x.as_strided(x.shape, (x[0].numel(), 1, w * c, c))


def pointwise_per_sample(x: Tensor, weights: Tensor, biases: Tensor | None = None) -> Tensor:
    """``out[n, k] = sum_c weights[n, k, c] x[n, c] (+ biases[n, k])`` at every pixel.

    ``x [N, C, H, W]``, ``weights [N, K, C]``, ``biases [N, K]`` -> ``[N, K, H, W]``: one 1x1
    convolution per sample, so a channels-last ``x`` gives a channels-last result.
    """
    out = [
        F.conv2d(x[n : n + 1], weights[n][:, :, None, None], None if biases is None else biases[n])
        for n in range(len(x))
    ]
    return out[0] if len(out) == 1 else torch.cat(out)
