"""MaskFormer-style head: pixel decoder, spiking decoder and spike-driven mask embedding.

Attribute names are the official ``decode_head`` names, so the head's state dict has the official
key layout (the SME parameters sit directly on the head, as in the released checkpoints).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import HeadConfig
from .decoder import TransformerDecoder
from .mask_embedding import SpikingMaskMLP
from .mask_logits import ProjectedMaskLogits
from .neuron import SpikingNeuron
from .pixel_decoder import PixelDecoder
from .pixel_major import pointwise_per_sample
from .positional_encoding import sine_position_encoding


class MaskFormerHead(nn.Module):
    """Backbone maps -> per-stage class logits and mask logits.

    Stage 0 is the learned initial query, stage i the output of decoder layer i; there are
    ``decoder_layers + 1`` stages, all of which are supervised in training.
    """

    def __init__(self, in_channels: tuple[int, ...], config: HeadConfig) -> None:
        super().__init__()
        c, q, levels, alpha = (
            config.channels,
            config.num_queries,
            config.spike_levels,
            config.mask_embed_scale,
        )
        self.config = config
        self.pixel_decoder = PixelDecoder(in_channels, config)
        self.transformer_decoder = TransformerDecoder(config)
        self.query_embed = nn.Embedding(q, c)
        self.query_feat = nn.Embedding(q, c)
        self.level_embed = nn.Embedding(config.num_levels, c)
        # Spike-driven mask embedding (see mask_embedding.py for the equations).
        self.decoder_out_spike = SpikingNeuron(levels, alpha)
        self.cls_embed = nn.Linear(c, config.num_classes + 1)
        self.mask_embed = SpikingMaskMLP(c, levels, alpha)
        self.w = nn.Parameter(torch.ones(1))
        self.shortcut_conv_spike = SpikingNeuron(levels, alpha)
        self.shortcut_conv = nn.Sequential(nn.Conv1d(q, q, 1, bias=False), nn.BatchNorm1d(q))
        self.mask_embed_spike = SpikingNeuron(levels, alpha)
        # Inference only: apply the pixel decoder's final 1x1 conv to the Q mask embeddings
        # instead of to the C-channel stride-2 map (same product, reassociated).
        self.late_mask_projection = False
        self.init_weights()

    def init_weights(self) -> None:
        """The official initialisation for training from scratch."""
        pd = self.pixel_decoder
        convs = [pd.mask_feature, pd.encoder_in_proj[0], pd.encoder_out_proj[0]]
        # The official loop stops one short: the stride-8 lateral/output convs keep defaults.
        for i in range(len(pd.lateral_convs) - 1):
            convs += [pd.lateral_convs[i][0], pd.output_convs[i][0]]
        for conv in convs:
            nn.init.kaiming_uniform_(conv.weight, a=1, mode="fan_in", nonlinearity="leaky_relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        for p in self.transformer_decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.trunc_normal_(self.cls_embed.weight, std=0.02)
        nn.init.zeros_(self.cls_embed.bias)

    def decoder_inputs(self, memories: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Memories ``[N, C, h, w]`` -> keys ``[N, h*w, C]`` (level embedding added) and their
        sine position encodings ``[h*w, C]``, one per level."""
        keys, positions = [], []
        for i, memory in enumerate(memories):
            height, width = memory.shape[-2:]
            keys.append(memory.flatten(2).transpose(1, 2) + self.level_embed.weight[i])
            position = sine_position_encoding(
                height, width, memory.shape[1] // 2, dtype=memory.dtype, device=memory.device
            )
            # Stored channel-major like the keys, so that every layer adds the two in memory order.
            positions.append(position.t().contiguous().t())
        return keys, positions

    def decode_queries(self, memories: list[Tensor]) -> Tensor:
        """Memories ``[s16, s8, s4]`` (``[N, C, h, w]``) -> query states ``[L+1, N, Q, C]``.

        Layer i attends to memory level ``i mod 3``.
        """
        keys, positions = self.decoder_inputs(memories)
        query = self.query_feat.weight.unsqueeze(0).expand(memories[0].shape[0], -1, -1)
        query_pos = self.query_embed.weight
        states = [query]
        for i, layer in enumerate(self.transformer_decoder.layers):
            level = i % len(memories)
            query = layer(query, keys[level], query_pos, positions[level])
            states.append(query)
        return torch.stack(states)

    def embed_masks(
        self, states: Tensor, mask_features: Tensor, time_steps: int, late_projection: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Spike-driven mask embedding.

        Args:
            states: query states ``[L, N, Q, C]`` (N = T*B). In training pass every stage at once:
                the shortcut BatchNorm pools its statistics over all of them.
            mask_features: ``[N, C, h, w]``; with ``late_projection`` the spikes that the
                pixel decoder's ``mask_feature`` conv would project.

        Returns:
            class logits ``[L, B, Q, K+1]`` and mask logits ``[L, B, Q, h, w]``, both averaged
            over T, and the spiked mask embedding ``[L, N, Q, C]`` (values in {0, alpha/D, ...}).
        """
        class_logits, embedding = self._embed(states)
        if late_projection:
            masks = self._late_projected_masks(embedding, mask_features)
        else:
            masks = torch.einsum("lnqc,nchw->lnqhw", embedding, mask_features)
        return (
            _mean_over_time(class_logits, time_steps),
            _mean_over_time(masks, time_steps),
            embedding,
        )

    def _embed(self, states: Tensor) -> tuple[Tensor, Tensor]:
        """Query states ``[L, N, Q, C]`` -> class logits ``[L, N, Q, K+1]`` and the spiked mask
        embedding ``[L, N, Q, C]``."""
        stages, n, queries, channels = states.shape
        probs = torch.sigmoid(states)
        spikes = self.decoder_out_spike(probs)
        class_logits = self.cls_embed(spikes)
        shortcut = self.shortcut_conv(
            self.shortcut_conv_spike(probs).reshape(stages * n, queries, channels)
        )
        embedding = self.mask_embed(spikes) + self.w * shortcut.view_as(states)
        return class_logits, self.mask_embed_spike(embedding)

    def _late_projected_masks(self, embedding: Tensor, spikes: Tensor) -> Tensor:
        """``E . (W s + b)`` computed as ``(E W) . s + E b``; ``[L, N, Q, C]``, ``[N, C, h, w]``.

        One 1x1 convolution per sample (weights ``E W``, bias ``E b``): with channels-last
        spikes the mask logits come out pixel-major, as ``combine_masks`` wants them.
        """
        projection = self.pixel_decoder.mask_feature
        weights = embedding @ projection.weight.flatten(1)
        biases = embedding @ projection.bias
        stages = [
            pointwise_per_sample(spikes, weight, bias)
            for weight, bias in zip(weights, biases, strict=True)
        ]
        return torch.stack(stages)

    def training_stages(
        self, feats: list[Tensor], time_steps: int
    ) -> tuple[Tensor, ProjectedMaskLogits]:
        """Backbone maps -> class logits ``[L, B, Q, K+1]`` of every stage and their mask
        logits as ``ProjectedMaskLogits`` (computed when the loss asks for them)."""
        spikes, _, memories = self.pixel_decoder(feats, project_mask_features=False)
        class_logits, embedding = self._embed(self.decode_queries(memories))
        projection = self.pixel_decoder.mask_feature
        masks = ProjectedMaskLogits(
            embedding, spikes, projection.weight.flatten(1), projection.bias, time_steps
        )
        return _mean_over_time(class_logits, time_steps), masks

    def forward(
        self, feats: list[Tensor], time_steps: int, all_stages: bool
    ) -> tuple[Tensor, Tensor]:
        """Backbone maps -> class logits ``[L, B, Q, K+1]`` and mask logits ``[L, B, Q, h, w]``.

        With ``all_stages=False`` only the last stage is embedded (L = 1).
        """
        late = self.late_mask_projection and not all_stages
        mask_features, _, memories = self.pixel_decoder(feats, project_mask_features=not late)
        states = self.decode_queries(memories)
        if not all_stages:
            states = states[-1:]
        class_logits, mask_logits, _ = self.embed_masks(states, mask_features, time_steps, late)
        return class_logits, mask_logits


def _mean_over_time(x: Tensor, time_steps: int) -> Tensor:
    """``[L, T*B, ...]`` -> ``[L, B, ...]`` averaged over T (``x`` itself when T = 1: no copy)."""
    if time_steps == 1:
        return x
    return x.view(x.shape[0], time_steps, -1, *x.shape[2:]).mean(1)
