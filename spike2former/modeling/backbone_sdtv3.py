"""SDT-V3 (E-SpikeFormer) blocks: separable-conv token mixer and (q k^T) v linear attention.

Tensors are ``[N, C, H, W]`` with time steps folded into the batch.
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import SepConvSpike, TokenMLP, conv_bn, merge_heads, split_heads
from .neuron import SpikingNeuron


class LinearAttentionV3(nn.Module):
    """Spike-driven linear attention of SDT-V3: ``(q k^T) v * 2 (C/h)^-0.5``, no softmax.

    The value path is ``value_ratio`` (4) times wider than q and k. ``keys_first = True``
    computes the same product as ``q (k^T v)``: N x d x d instead of N x N x d operations, exact
    when the spike sums fit the float mantissa (always in float64), otherwise rounded differently.
    """

    temporary_input_neurons = ("q_spike", "k_spike", "v_spike", "attn_spike")

    def __init__(self, dim: int, num_heads: int, levels: int, value_ratio: int = 4) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.head_spike = SpikingNeuron(levels)
        self.q_conv = conv_bn(dim, dim)
        self.q_spike = SpikingNeuron(levels)
        self.k_conv = conv_bn(dim, dim)
        self.k_spike = SpikingNeuron(levels)
        self.v_conv = conv_bn(dim, dim * value_ratio)
        self.v_spike = SpikingNeuron(levels)
        self.attn_spike = SpikingNeuron(levels)
        self.proj_conv = conv_bn(dim * value_ratio, dim)
        self.keys_first = False

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        s = self.head_spike(x)
        q, k, v = (
            self.q_spike(self.q_conv(s)),
            self.k_spike(self.k_conv(s)),
            self.v_spike(self.v_conv(s)),
        )
        if self.keys_first:
            # Channel-major: out^T = (v^T k) q^T per head, read off the conv outputs as views.
            n, heads = x.shape[0], self.num_heads
            q, k, v = (t.view(n, heads, t.shape[1] // heads, -1) for t in (q, k, v))
            out = ((v @ k.transpose(-2, -1)) @ q).mul_(self.scale * 2)
            out = out.view(n, -1, height, width)
        else:
            q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
            out = ((q @ k.transpose(-2, -1)) @ v) * (self.scale * 2)
            out = merge_heads(out, height, width)
        return self.proj_conv(self.attn_spike(out))


class MetaBlockV3(nn.Module):
    """SDT-V3 transformer block: ``x + SepConv(x)``, ``x + Attn(x)``, ``x + MLP(x)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, levels: int) -> None:
        super().__init__()
        self.conv = SepConvSpike(dim, levels, kernel_size=3)
        self.attn = LinearAttentionV3(dim, num_heads, levels)
        self.mlp = TokenMLP(dim, dim * mlp_ratio, levels)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.conv(x)
        x = x + self.attn(x)
        return x + self.mlp(x.flatten(2)).view_as(x)
