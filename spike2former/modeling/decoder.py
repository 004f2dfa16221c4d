"""Spike-driven transformer decoder: cross-attention, self-attention and FFN on learned queries.

Token tensors are ``[N, L, C]`` (N = T*B, L tokens). There is no softmax and no normalisation
layer between sub-blocks; every projection is neuron -> 1x1 Conv1d -> BN1d (-> neuron).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ..config import HeadConfig
from .neuron import SpikingNeuron
from .official_layout import channels_as_tokens, tokens_as_channels


def _conv1d_bn(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(channels, channels, 1), nn.BatchNorm1d(channels))


class SpikingAttention(nn.Module):
    """Multi-head spiking attention ``(q k^T / sqrt(C)) v``, no softmax.

    The divisor is sqrt of the full embedding width, not of the head width, as in the official code.
    ``keys_first = True`` computes ``q (k^T v)`` instead: far cheaper with thousands of keys, the
    same value up to float rounding (exact in float64 for power-of-4 widths such as 256).
    """

    temporary_input_neurons = ("q_spike", "k_spike", "v_spike", "attn_spike")

    def __init__(self, channels: int, num_heads: int, levels: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv_spike", SpikingNeuron(levels))
            setattr(self, f"{name}_conv", _conv1d_bn(channels))
            setattr(self, f"{name}_spike", SpikingNeuron(levels))
        self.attn_spike = SpikingNeuron(levels)
        self.out_conv = _conv1d_bn(channels)
        self.keys_first = False

    def _project(self, x: Tensor, name: str) -> Tensor:
        """``[N, L, C]`` -> spiked projection split into heads ``[N, h, L, C/h]``."""
        n, length, c = x.shape
        conv = getattr(self, f"{name}_conv")
        y = conv(getattr(self, f"{name}_conv_spike")(x).transpose(1, 2)).transpose(1, 2)
        y = getattr(self, f"{name}_spike")(y)
        return y.reshape(n, length, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        n, length, c = query.shape
        q = self._project(query, "q")
        k = self._project(key, "k")
        v = self._project(value, "v")
        if self.keys_first:
            out = (q @ (k.transpose(-2, -1) @ v)) / math.sqrt(c)
        else:
            out = ((q @ k.transpose(-2, -1)) / math.sqrt(c)) @ v
        out = out.transpose(1, 2).reshape(n, length, c)
        out = self.attn_spike(out)
        return self.out_conv(out.transpose(1, 2)).transpose(1, 2)


class PositionalAttention(nn.Module):
    """Adds position encodings to query and key before ``SpikingAttention`` (official ``attn``)."""

    def __init__(self, channels: int, num_heads: int, levels: int) -> None:
        super().__init__()
        self.attn = SpikingAttention(channels, num_heads, levels)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, query_pos: Tensor, key_pos: Tensor
    ) -> Tensor:
        return self.attn(query + query_pos, key + key_pos, value)


class QueryFFN(nn.Module):
    """Decoder FFN. Its input and output go through the official token/channel reinterpretation."""

    conv_bn_pairs = (("fc1", "bn1"), ("fc2", "bn2"))

    def __init__(self, channels: int, hidden: int, levels: int) -> None:
        super().__init__()
        self.fc1_spike = SpikingNeuron(levels)
        self.fc1 = nn.Conv1d(channels, hidden, 1)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2_spike = SpikingNeuron(levels)
        self.fc2 = nn.Conv1d(hidden, channels, 1)
        self.bn2 = nn.BatchNorm1d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn1(self.fc1(tokens_as_channels(self.fc1_spike(x))))
        y = self.bn2(self.fc2(self.fc2_spike(y)))
        return channels_as_tokens(y)


class DecoderLayer(nn.Module):
    """Cross-attention to one memory level, self-attention, FFN; post-residual, no norms."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        c, heads, levels = config.channels, config.decoder_heads, config.spike_levels
        self.self_attn = PositionalAttention(c, heads, levels)
        self.cross_attn = PositionalAttention(c, heads, levels)
        self.ffn = QueryFFN(c, config.decoder_ffn_channels, levels)

    def forward(
        self, query: Tensor, memory: Tensor, query_pos: Tensor, memory_pos: Tensor
    ) -> Tensor:
        """``query [N, Q, C]``, ``memory [N, L, C]`` (level embedding added), positions."""
        query = query + self.cross_attn(query, memory, memory, query_pos, memory_pos)
        query = query + self.self_attn(query, query, query, query_pos, query_pos)
        return query + self.ffn(query)


class TransformerDecoder(nn.Module):
    """The decoder layers (official key prefix ``transformer_decoder.layers``)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
