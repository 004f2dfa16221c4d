"""Spike-driven deformable convolution (DCNv3 with spiked modulation, no softmax), pure PyTorch.

Each output pixel gathers, per channel group, ``k*k`` bilinear samples of the projected input at
learned offsets around a regular grid and sums them weighted by a spiked modulation in
{0, 1/D, ..., 1} (the original DCNv3 softmax over points is removed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import SepConvSpike, conv_bn
from .neuron import SpikingNeuron
from .official_layout import channels_first_buffer_as_channels_last


def deformable_sample(
    x: Tensor, offsets: Tensor, modulation: Tensor, groups: int, kernel_size: int
) -> Tensor:
    """Modulated deformable aggregation.

    Args:
        x: ``[N, C, H, W]`` values to sample (zero-padded by ``kernel_size // 2`` here).
        offsets: ``[N, H, W, G*P*2]`` pixel offsets ordered (group, point, xy); P = k*k points
            ordered with the x displacement as the outer loop.
        modulation: ``[N, H, W, G*P]`` weights ordered (group, point).

    Returns:
        ``[N, C, H, W]``; channel ``g * C/G + c`` aggregates group g.
    """
    n, channels, height, width = x.shape
    pad = kernel_size // 2
    points = kernel_size * kernel_size
    padded = F.pad(x, [pad, pad, pad, pad])
    in_h, in_w = height + 2 * pad, width + 2 * pad
    dtype, device = x.dtype, x.device

    # Sampling locations in [0, 1] over the padded map: pixel centre + kernel grid + offset.
    centre_x = torch.linspace(pad + 0.5, pad + 0.5 + width - 1, width, dtype=dtype, device=device)
    centre_y = torch.linspace(pad + 0.5, pad + 0.5 + height - 1, height, dtype=dtype, device=device)
    ref = torch.stack(
        (
            (centre_x / in_w).view(1, width).expand(height, width),
            (centre_y / in_h).view(height, 1).expand(height, width),
        ),
        dim=-1,
    ).view(1, height, width, 1, 1, 2)
    steps = torch.linspace(-pad, pad, kernel_size, dtype=dtype, device=device)
    grid_x, grid_y = torch.meshgrid(steps, steps, indexing="ij")
    kernel = torch.stack((grid_x / in_w, grid_y / in_h), dim=-1).view(1, 1, 1, 1, points, 2)
    norm = torch.tensor([in_w, in_h], dtype=dtype, device=device)
    offsets = offsets.reshape(n, height, width, groups, points, 2)
    locations = (ref + kernel) + offsets / norm

    grids = (2 * locations - 1).view(n, height * width, groups, points, 2)
    # Contiguous (also for one sample, where reshape returns a strided view): grid_sample's
    # vectorised kernel needs it, and is several times slower on a strided grid.
    grids = grids.transpose(1, 2).reshape(n * groups, height * width, points, 2).contiguous()
    values = padded.reshape(n * groups, channels // groups, in_h, in_w)
    samples = F.grid_sample(
        values, grids, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    weights = modulation.reshape(n, height * width, groups, points).transpose(1, 2)
    weights = weights.reshape(n * groups, 1, height * width, points).contiguous()
    return (samples * weights).sum(-1).view(n, channels, height, width)


class SpikeDCN(nn.Module):
    """Spike-driven DCNv3 block of the pixel-decoder encoder, ``[N, C, H, W]`` in and out.

    input_proj (SepConv) gives the values to sample; a spiking depthwise conv gives the features
    from which 1x1 conv + BN predict the offsets (real-valued) and the modulation (spiked);
    output_proj (SepConv) mixes the result.
    """

    temporary_input_neurons = ("offset_spike", "mask_spike")

    def __init__(
        self, channels: int, groups: int, kernel_size: int, dw_kernel_size: int, levels: int
    ) -> None:
        super().__init__()
        points = groups * kernel_size * kernel_size
        self.groups = groups
        self.kernel_size = kernel_size
        self.dw_spike = SpikingNeuron(levels)
        self.offset_spike = SpikingNeuron(levels)
        self.mask_spike = SpikingNeuron(levels)
        self.dw_conv = conv_bn(channels, channels, dw_kernel_size, groups=channels)
        self.offset = conv_bn(channels, points * 2, bias=True)
        self.mask = conv_bn(channels, points, bias=True)
        self.input_proj = SepConvSpike(channels, levels, dw_kernel_size)
        self.output_proj = SepConvSpike(channels, levels, dw_kernel_size)
        for conv in (self.offset[0], self.mask[0]):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        values = self.input_proj(x)
        features = self.offset_spike(self.dw_conv(self.dw_spike(x)))
        offsets = channels_first_buffer_as_channels_last(self.offset(features), height, width)
        modulation = self.mask_spike(
            channels_first_buffer_as_channels_last(self.mask(features), height, width)
        )
        out = deformable_sample(values, offsets, modulation, self.groups, self.kernel_size)
        return self.output_proj(out)
