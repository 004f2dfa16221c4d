"""Spiking building blocks shared by the backbones and the pixel decoder.

Every tensor here is channel-first with time steps folded into the batch: ``[N, C, H, W]`` or, for
token sequences, ``[N, C, L]`` with ``N = T * B``. Attribute names follow the official modules so
that state-dict keys and neuron names match released checkpoints.
"""

from __future__ import annotations

from torch import Tensor, nn

from .depthwise import DepthwiseConv2d
from .neuron import SpikingNeuron


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    *,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
) -> nn.Sequential:
    """Conv2d followed by BatchNorm2d (official keys ``.0`` and ``.1``), 'same' padding."""
    if groups == in_channels == out_channels and stride == 1:
        depthwise = DepthwiseConv2d(in_channels, kernel_size, bias=bias)
        return nn.Sequential(depthwise, nn.BatchNorm2d(out_channels))
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=bias,
        ),
        nn.BatchNorm2d(out_channels),
    )


def split_heads(x: Tensor, heads: int) -> Tensor:
    """``[N, C, H, W]`` -> ``[N, heads, H*W, C / heads]`` (channel index = head * C/heads + d)."""
    n, c = x.shape[:2]
    return x.reshape(n, heads, c // heads, -1).transpose(-1, -2)


def merge_heads(x: Tensor, height: int, width: int) -> Tensor:
    """``[N, heads, L, d]`` -> ``[N, heads * d, H, W]``, head-major channels."""
    n, heads, _, d = x.shape
    return x.transpose(-1, -2).reshape(n, heads * d, height, width)


class SepConvSpike(nn.Module):
    """Spiking inverted separable convolution (MobileNetV2 style), BN after every conv.

    neuron -> 1x1 (C -> rC) + BN -> neuron -> depthwise kxk + BN -> neuron -> 1x1 (rC -> C) + BN.
    ``[N, C, H, W]`` in and out.
    """

    temporary_input_neurons = ("spike2", "spike3")

    def __init__(self, dim: int, levels: int, kernel_size: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = dim * expansion
        self.spike1 = SpikingNeuron(levels)
        self.pwconv1 = conv_bn(dim, hidden)
        self.spike2 = SpikingNeuron(levels)
        self.dwconv = conv_bn(hidden, hidden, kernel_size, groups=hidden)
        self.spike3 = SpikingNeuron(levels)
        self.pwconv2 = conv_bn(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pwconv1(self.spike1(x))
        x = self.dwconv(self.spike2(x))
        return self.pwconv2(self.spike3(x))


class SpikingConvBlock(nn.Module):
    """Convolutional MetaFormer block: ``x + SepConv(x)``, then ``x + 3x3 conv MLP(x)``.

    ``separable`` is the version-specific separable convolution; the 3x3 MLP
    (neuron -> conv C->rC + BN -> neuron -> conv rC->C + BN) is the same in both backbones.
    """

    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))
    temporary_input_neurons = ("spike2",)

    def __init__(self, dim: int, separable: nn.Module, levels: int, mlp_ratio: int) -> None:
        super().__init__()
        hidden = dim * mlp_ratio
        self.Conv = separable
        self.spike1 = SpikingNeuron(levels)
        self.conv1 = nn.Conv2d(dim, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.spike2 = SpikingNeuron(levels)
        self.conv2 = nn.Conv2d(hidden, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.Conv(x)
        y = self.bn1(self.conv1(self.spike1(x)))
        y = self.bn2(self.conv2(self.spike2(y)))
        return x + y


class TokenMLP(nn.Module):
    """Spiking two-layer MLP over tokens: ``[N, C, L]`` -> ``[N, C_out, L]``.

    neuron -> Conv1d 1x1 (bias) + BN1d -> neuron -> Conv1d 1x1 (bias) + BN1d. Used by the backbone
    transformer blocks and, with the official output reinterpretation, by the pixel-decoder encoder.
    """

    conv_bn_pairs = (("fc1_conv", "fc1_bn"), ("fc2_conv", "fc2_bn"))
    temporary_input_neurons = ("fc2_spike",)

    def __init__(self, dim: int, hidden: int, levels: int, out_dim: int | None = None) -> None:
        super().__init__()
        out_dim = out_dim or dim
        self.fc1_spike = SpikingNeuron(levels)
        self.fc1_conv = nn.Conv1d(dim, hidden, 1)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc2_spike = SpikingNeuron(levels)
        self.fc2_conv = nn.Conv1d(hidden, out_dim, 1)
        self.fc2_bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc1_bn(self.fc1_conv(self.fc1_spike(x)))
        return self.fc2_bn(self.fc2_conv(self.fc2_spike(x)))


class DownSampling(nn.Module):
    """Strided conv + BN, preceded by a neuron except for the stem (which sees the real image)."""

    conv_bn_pairs = (("encode_conv", "encode_bn"),)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        levels: int,
        first_layer: bool = False,
    ) -> None:
        super().__init__()
        self.encode_spike = None if first_layer else SpikingNeuron(levels)
        self.encode_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2
        )
        self.encode_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        if self.encode_spike is not None:
            x = self.encode_spike(x)
        return self.encode_bn(self.encode_conv(x))
