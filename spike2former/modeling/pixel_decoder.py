"""Pixel decoder: spike-driven deformable encoder on the stride-16 map plus a spiking top-down path.

Inputs are the four backbone maps ``[N, C_i, H_i, W_i]`` (strides 2, 4, 8, 16; N = T*B). Outputs
are the mask features at stride 2 and the memories at strides 16, 8, 4 that the decoder attends to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import HeadConfig
from .blocks import SepConvSpike, TokenMLP, conv_bn
from .dcn import SpikeDCN
from .neuron import SpikingNeuron
from .official_layout import channels_first_buffer_as_channels_last
from .pixel_major import channels_last


class EncoderLayer(nn.Module):
    """One encoder layer: SepConv, DCN and MLP residual branches, each with a layer scale.

    ``[N, C, H, W]`` in and out. The MLP output goes through the official channel-first to
    channel-last reinterpretation (see ``official_layout``).
    """

    def __init__(self, config: HeadConfig, layer_scale: float = 1e-6) -> None:
        super().__init__()
        c, levels = config.channels, config.spike_levels
        self.gamma1 = nn.Parameter(torch.full((c,), layer_scale))
        self.gamma2 = nn.Parameter(torch.full((c,), layer_scale))
        self.gamma3 = nn.Parameter(torch.full((c,), layer_scale))
        self.Conv = SepConvSpike(c, levels, kernel_size=3)
        self.dcn = SpikeDCN(
            c, config.dcn_groups, config.dcn_kernel_size, config.dcn_dw_kernel_size, levels
        )
        self.ffn = TokenMLP(c, config.encoder_ffn_channels, levels)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        x = x + self.gamma1.view(1, -1, 1, 1) * self.Conv(x)
        x = x + self.gamma2.view(1, -1, 1, 1) * self.dcn(x)
        mlp = channels_first_buffer_as_channels_last(self.ffn(x.flatten(2)), height, width)
        return x + self.gamma3.view(1, -1, 1, 1) * mlp.permute(0, 3, 1, 2)


class Encoder(nn.Module):
    """A stack of ``EncoderLayer`` (official key prefix ``encoder.layers``)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class PixelDecoder(nn.Module):
    """Spiking FPN around a deformable encoder.

    ``forward(feats)`` returns ``(mask_features, encoder_memory, memories)``:
    mask features ``[N, C, H/2, W/2]``, the spiked encoder output ``[N, C, H/16, W/16]`` and the
    memories ``[s16, s8, s4]``, each ``[N, C, H_s, W_s]``.
    """

    temporary_input_neurons = ("output_convs_spike", "mask_feature_spike")

    def __init__(self, in_channels: tuple[int, ...], config: HeadConfig) -> None:
        super().__init__()
        c, levels = config.channels, config.spike_levels
        self.lateral_convs = nn.ModuleList()
        self.lateral_convs_spike = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        self.output_convs_spike = nn.ModuleList()
        for channels in in_channels[:-1]:
            self.lateral_convs_spike.append(SpikingNeuron(levels))
            self.lateral_convs.append(conv_bn(channels, c, bias=True))
            self.output_convs_spike.append(SpikingNeuron(levels))
            self.output_convs.append(conv_bn(c, c, 3, groups=c))
        self.mask_feature_spike = SpikingNeuron(levels)
        self.mask_feature = nn.Conv2d(c, c, 1)
        self.encoder = Encoder(config)
        self.last_feat_conv_spike = SpikingNeuron(levels)
        self.encoder_in_proj = conv_bn(in_channels[-1], c, bias=True)
        self.encoder_out_proj_spike = SpikingNeuron(levels)
        self.encoder_out_proj = conv_bn(c, c, bias=True)

    def forward(
        self, feats: list[Tensor], project_mask_features: bool = True
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """With ``project_mask_features=False`` the first output is the spiked stride-2 map
        that the 1x1 ``mask_feature`` conv would project (``MaskFormerHead.late_mask_projection``).
        """
        x = self.encoder_in_proj(self.last_feat_conv_spike(feats[-1]))
        memory = self.encoder_out_proj_spike(self.encoder(x))
        y = self.encoder_out_proj(memory)
        memories = [y]
        for i in range(len(feats) - 2, -1, -1):
            feat = feats[i]
            if i == 0 and not project_mask_features and not self.training:
                # Only the late mask projection reads this level, pixel by pixel: computed
                # channels-last, its depthwise conv, upsampling and projection read memory in order.
                # (Not in training: BatchNorm's backward is several times slower channels-last.)
                feat, y = channels_last(feat), channels_last(y)
            lateral = self.lateral_convs[i](self.lateral_convs_spike[i](feat))
            y = lateral + F.interpolate(
                y, size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            y = self.output_convs[i](self.output_convs_spike[i](y))
            memories.append(y)
        spikes = self.mask_feature_spike(y)
        mask_features = self.mask_feature(spikes) if project_mask_features else spikes
        return mask_features, memory, memories[:3]
