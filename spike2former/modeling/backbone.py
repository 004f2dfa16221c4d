"""Spiking MetaFormer backbone, SDT-V2 or SDT-V3 flavour.

Four stages at strides 2, 4, 8 and 16 (the last transformer stage keeps stride 16 and only widens
the channels). The outputs are the real-valued residual streams; the head spikes them itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import BackboneConfig
from .backbone_sdtv2 import MetaBlockV2, SepConvV2
from .backbone_sdtv3 import MetaBlockV3
from .blocks import DownSampling, SepConvSpike, SpikingConvBlock
from .pixel_major import channels_last
from .recompute import recomputed


class SpikingMetaFormer(nn.Module):
    """``[N, 3, H, W]`` normalised images (N = T*B, already repeated over T) -> four feature maps.

    Returns ``[x1, x2, x3, x4]`` with ``config.out_channels`` channels at strides 2, 4, 8, 16.

    ``pixel_major_convs = True`` (set by ``optimize_for_inference``) runs the convolutional
    stages channels-last, where oneDNN's kernels are faster at these sizes; ``x1`` stays
    channels-last (the pixel decoder wants it so), the other outputs are channel-first.

    ``recompute_blocks = True`` (set by ``training.lean.prepare_model``) keeps only each
    block's input for backward while gradients are recorded, and runs the block again in
    backward (``recompute.recomputed``): the same gradients for much less memory.
    """

    pixel_major_convs = False
    recompute_blocks = False

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        d = config.embed_dims
        levels = config.levels
        ratio = config.mlp_ratio

        def conv_block(dim: int) -> nn.ModuleList:
            if config.version == "sdtv3":
                separable: nn.Module = SepConvSpike(dim, levels, kernel_size=7)
            else:
                separable = SepConvV2(dim, levels, kernel_size=7)
            return nn.ModuleList([SpikingConvBlock(dim, separable, levels, ratio)])

        def meta_blocks(dim: int, depth: int) -> nn.ModuleList:
            block = MetaBlockV3 if config.version == "sdtv3" else MetaBlockV2
            return nn.ModuleList(block(dim, config.num_heads, ratio, levels) for _ in range(depth))

        self.downsample1_1 = DownSampling(3, d[0] // 2, 7, 2, levels, first_layer=True)
        self.ConvBlock1_1 = conv_block(d[0] // 2)
        self.downsample1_2 = DownSampling(d[0] // 2, d[0], 3, 2, levels)
        self.ConvBlock1_2 = conv_block(d[0])
        self.downsample2 = DownSampling(d[0], d[1], 3, 2, levels)
        self.ConvBlock2_1 = conv_block(d[1])
        self.ConvBlock2_2 = conv_block(d[1])
        self.downsample3 = DownSampling(d[1], d[2], 3, 2, levels)
        self.block3 = meta_blocks(d[2], config.stage3_depth)
        self.downsample4 = DownSampling(d[2], d[3], 3, 1, levels)
        self.block4 = meta_blocks(d[3], config.stage4_depth)

    def forward(self, x: Tensor) -> list[Tensor]:
        if self.pixel_major_convs:
            x = channels_last(x)
        run = self._run
        x = run(self.ConvBlock1_1[0], run(self.downsample1_1, x))
        x1 = x
        x = run(self.ConvBlock1_2[0], run(self.downsample1_2, x))
        x2 = x.contiguous()
        x = run(self.ConvBlock2_2[0], run(self.ConvBlock2_1[0], run(self.downsample2, x)))
        x3 = x.contiguous()
        x = run(self.downsample3, x).contiguous()
        for block in self.block3:
            x = run(block, x)
        x = run(self.downsample4, x)
        for block in self.block4:
            x = run(block, x)
        return [x1, x2, x3, x]

    def _run(self, block: nn.Module, x: Tensor) -> Tensor:
        if self.recompute_blocks and torch.is_grad_enabled():
            return recomputed(block, x)
        return block(x)
