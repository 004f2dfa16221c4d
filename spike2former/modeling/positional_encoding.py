"""DETR sine positional encoding of an unpadded feature map."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sine_position_encoding(
    height: int,
    width: int,
    num_feats: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    temperature: float = 10000.0,
    eps: float = 1e-6,
) -> Tensor:
    """Normalised sine encoding of an ``height x width`` grid, ``[H*W, 2 * num_feats]``.

    Row and column positions 1..n are scaled to (0, 2*pi]; feature pairs alternate sin/cos with
    frequency ``temperature ** (2 * (k // 2) / num_feats)``; the y part comes before the x part.
    Computed in ``dtype`` (float64 under ``model.double()``).
    """
    scale = 2 * math.pi
    y = torch.arange(1, height + 1, dtype=dtype, device=device)
    x = torch.arange(1, width + 1, dtype=dtype, device=device)
    y = y / (y[-1:] + eps) * scale
    x = x / (x[-1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=dtype, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def encode(pos: Tensor) -> Tensor:
        angles = pos[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, num_feats)
    pos_x = encode(x)[None, :, :].expand(height, width, num_feats)
    return torch.cat((pos_y, pos_x), dim=-1).reshape(height * width, 2 * num_feats)
