"""SDT-V2 (Meta-SpikeFormer) blocks: re-parameterisable convolutions and k^T v linear attention.

Tensors are ``[N, C, H, W]`` with time steps folded into the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import TokenMLP, merge_heads, split_heads
from .depthwise import DepthwiseConv2d
from .neuron import SpikingNeuron


class SepConvV2(nn.Module):
    """SDT-V2 separable convolution: no BN and no neuron between the depthwise and last 1x1 conv."""

    conv_bn_pairs = (("pwconv1", "bn1"), ("pwconv2", "bn2"))

    def __init__(self, dim: int, levels: int, kernel_size: int = 7, expansion: int = 2) -> None:
        super().__init__()
        hidden = dim * expansion
        self.spike1 = SpikingNeuron(levels)
        self.pwconv1 = nn.Conv2d(dim, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.spike2 = SpikingNeuron(levels)
        self.dwconv = DepthwiseConv2d(hidden, kernel_size)
        self.pwconv2 = nn.Conv2d(hidden, dim, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn1(self.pwconv1(self.spike1(x)))
        x = self.dwconv(self.spike2(x))
        return self.bn2(self.pwconv2(x))


class BNAndPad(nn.Module):
    """BatchNorm, then a one-pixel border filled with the BN image of a zero input.

    The following depthwise 3x3 conv has no padding, so this border makes the pair behave like a
    zero-padded conv on the pre-BN input (and lets 1x1 conv + BN + 3x3 conv fold into one conv).
    The border value uses the running statistics, detached, also during training.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        bn = self.bn
        out = F.pad(bn(x), [1, 1, 1, 1])
        border_value = bn.bias.detach() - bn.running_mean * bn.weight.detach() / torch.sqrt(
            bn.running_var + bn.eps
        )
        # Written into the four edges in place: a torch.where over the whole map costs a full
        # (slow, boolean-masked) pass for a one-pixel frame.
        value = border_value.view(1, -1, 1).to(out.dtype)
        out[:, :, 0], out[:, :, -1] = value, value
        out[:, :, :, 0], out[:, :, :, -1] = value, value
        return out


class RepConv(nn.Module):
    """1x1 conv -> BN with border -> depthwise 3x3 (no padding) -> 1x1 conv -> BN."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1, bias=False),
            BNAndPad(in_channels),
            nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, groups=in_channels, bias=False),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            ),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def _rep_conv_bn(dim: int) -> nn.Sequential:
    return nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))


class RepConvAttention(nn.Module):
    """Spike-driven linear attention of SDT-V2: ``q (k^T v) * (C/h)^-0.5``, no softmax."""

    def __init__(self, dim: int, num_heads: int, levels: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.head_spike = SpikingNeuron(levels)
        self.q_conv = _rep_conv_bn(dim)
        self.k_conv = _rep_conv_bn(dim)
        self.v_conv = _rep_conv_bn(dim)
        self.q_spike = SpikingNeuron(levels)
        self.k_spike = SpikingNeuron(levels)
        self.v_spike = SpikingNeuron(levels)
        self.attn_spike = SpikingNeuron(levels)
        self.proj_conv = _rep_conv_bn(dim)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        s = self.head_spike(x)
        q = split_heads(self.q_spike(self.q_conv(s)), self.num_heads)
        k = split_heads(self.k_spike(self.k_conv(s)), self.num_heads)
        v = split_heads(self.v_spike(self.v_conv(s)), self.num_heads)
        out = (q @ (k.transpose(-2, -1) @ v)) * self.scale
        out = self.attn_spike(merge_heads(out, height, width))
        return self.proj_conv(out)


class MetaBlockV2(nn.Module):
    """SDT-V2 transformer block: ``x + Attn(x)``, then ``x + MLP(x)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, levels: int) -> None:
        super().__init__()
        self.attn = RepConvAttention(dim, num_heads, levels)
        self.mlp = TokenMLP(dim, dim * mlp_ratio, levels)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x.flatten(2)).view_as(x)
