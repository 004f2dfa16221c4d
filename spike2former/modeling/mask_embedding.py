"""Spike-Driven Mask Embedding (SME): class logits and integer mask embeddings from query states.

With ``Z`` the decoder query states, ``q(.)`` the D-level neuron and alpha its output multiplier:
``S = alpha * q(sigmoid(Z))``; class logits ``= Linear(S)``; mask embedding
``E = alpha * q(MLP(S) + w * BN(Conv1d_queries(alpha * q(sigmoid(Z)))))``, where the shortcut mixes
the query axis; mask logits ``= E . mask_features``. Its parameters live on the head itself
under the official names (``decode_head.cls_embed``, ``decode_head.mask_embed``,
``decode_head.shortcut_conv``, ...; see ``head.MaskFormerHead.embed_masks``); this file holds the
mask MLP.
"""

from __future__ import annotations

from torch import Tensor, nn

from .neuron import SpikingNeuron


class SpikingMaskMLP(nn.Module):
    """Linear (no bias) -> scaled neuron -> Linear (no bias) -> scaled neuron -> Linear."""

    def __init__(self, channels: int, levels: int, scale: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels, bias=False)
        self.spike1 = SpikingNeuron(levels, scale)
        self.fc2 = nn.Linear(channels, channels, bias=False)
        self.spike2 = SpikingNeuron(levels, scale)
        self.fc_out = nn.Linear(channels, channels)
        nn.init.trunc_normal_(self.fc_out.weight, std=0.02)
        nn.init.zeros_(self.fc_out.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.spike1(self.fc1(x))
        x = self.spike2(self.fc2(x))
        return self.fc_out(x)
