"""A spiking backbone with a classification head: what ImageNet pretraining trains.

The head is the SDT repositories' one: the last feature map ``[T*B, C, h, w]`` (the real-valued
residual stream) averaged over the pixels, spiked into integer counts 0..D (SDT-V3's head neuron
does not normalise them), a linear layer, then the mean over the T time steps. Its weights are
``head.weight`` and ``head.bias``, and the backbone's keep their names without a prefix, so
``backbone_state`` has the key layout of the official ImageNet checkpoints that
``s2f train --init-backbone`` loads (which drops the head).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..modeling.backbone import SpikingMetaFormer
from ..modeling.neuron import SpikingNeuron, set_spiking

HEAD_KEYS = ("head.weight", "head.bias")


class BackboneClassifier(nn.Module):
    """Normalised images ``[B, 3, H, W]`` -> class logits ``[B, num_classes]``.

    ``config`` is a segmentation model's configuration: its backbone is built, the rest is kept
    so that the pretrained backbone can be matched to the preset it came from. ``class_names``
    are the head's classes (index = label).
    """

    def __init__(self, config: ModelConfig, class_names: tuple[str, ...]) -> None:
        super().__init__()
        self.config = config
        self.class_names = tuple(class_names)
        num_classes = len(self.class_names)
        self.backbone = SpikingMetaFormer(config.backbone)
        levels = config.backbone.levels
        self.head_spike = SpikingNeuron(levels, scale=levels)  # integer counts, not k / D
        self.head = nn.Linear(config.backbone.out_channels[-1], num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.set_spiking(config.spiking)

    def set_spiking(self, enabled: bool) -> None:
        """Integer spikes, or every neuron's real-valued counterpart (a conventional network)."""
        set_spiking(self, enabled)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {list(images.shape)}")
        steps = self.config.backbone.time_steps
        x = images.repeat(steps, 1, 1, 1) if steps > 1 else images
        features = self.backbone(x)[-1]  # [T*B, C, h, w]
        pooled = features.flatten(2).mean(2)
        logits = self.head(self.head_spike(pooled))  # [T*B, K]
        return logits.view(steps, images.shape[0], -1).mean(0)

    def backbone_state(self) -> dict[str, Tensor]:
        """Backbone and head weights under the official ImageNet checkpoint names."""
        state = {
            key.removeprefix("backbone."): value
            for key, value in self.state_dict().items()
            if key.startswith("backbone.")
        }
        state.update({"head.weight": self.head.weight, "head.bias": self.head.bias})
        return {key: value.detach() for key, value in state.items()}

    def load_backbone_state(self, state: dict[str, Tensor]) -> None:
        """The inverse of ``backbone_state`` (strict: every key, every shape)."""
        renamed = {
            (key if key in HEAD_KEYS else f"backbone.{key}"): value for key, value in state.items()
        }
        self.load_state_dict(renamed, strict=True)


@torch.no_grad()
def top_k_correct(logits: Tensor, targets: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many of the targets are among the ``k`` highest logits, for each ``k`` (a ``k``
    above the class count counts every sample)."""
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == targets[:, None]
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]
