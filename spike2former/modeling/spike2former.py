"""The whole Spike2Former network: spiking backbone + MaskFormer-style spiking head."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .backbone import SpikingMetaFormer
from .head import MaskFormerHead
from .mask_logits import MaskLogits, StageMaskLogits
from .neuron import set_spiking
from .pixel_major import channels_last, pointwise_per_sample


class Spike2Former(nn.Module):
    """Normalised images ``[B, 3, H, W]`` -> mask classification.

    ``forward`` returns a dict with ``class_logits [B, Q, K+1]`` and
    ``mask_logits [B, Q, H/2, W/2]`` of the last stage, plus ``aux``, a list with the same two
    entries for every earlier stage (initial query first), when training or when
    ``return_aux=True``. The image is repeated over ``config.backbone.time_steps`` real time
    steps and the head averages over them.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = SpikingMetaFormer(config.backbone)
        self.decode_head = MaskFormerHead(config.backbone.out_channels, config.head)
        # The T copies of the input stay identical through the network, so inference may run one
        # copy (``optimize_for_inference`` turns this off; the head's mean over T is then exact).
        self.repeat_time_steps = True
        # What ``forward(images, for_loss=True)`` returns (see ``training_stages``).
        self.project_masks_late = False
        if not config.spiking:
            self.set_spiking(False)

    @property
    def time_steps(self) -> int:
        """T actually run: the configured T, or 1 when repeating the input is switched off."""
        return self.config.backbone.time_steps if self.repeat_time_steps else 1

    def extract_features(self, images: Tensor) -> list[Tensor]:
        """Backbone maps ``[T*B, C_i, H_i, W_i]`` for images ``[B, 3, H, W]``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {list(images.shape)}")
        x = images.repeat(self.time_steps, 1, 1, 1) if self.time_steps > 1 else images
        return self.backbone(x)

    def forward(
        self, images: Tensor, return_aux: bool = False, for_loss: bool = False
    ) -> dict[str, object] | tuple[Tensor, MaskLogits]:
        """``for_loss=True`` returns ``training_stages(images, self.project_masks_late)``: the
        loss's inputs, through ``forward`` so that a data-parallel wrapper sees the call."""
        if for_loss:
            return self.training_stages(images, self.project_masks_late)
        all_stages = self.training or return_aux
        class_logits, mask_logits = self.decode_head(
            self.extract_features(images), self.time_steps, all_stages
        )
        out: dict[str, object] = {"class_logits": class_logits[-1], "mask_logits": mask_logits[-1]}
        if all_stages:
            out["aux"] = [
                {"class_logits": c, "mask_logits": m}
                for c, m in zip(class_logits[:-1], mask_logits[:-1], strict=True)
            ]
        return out

    def training_stages(
        self, images: Tensor, project_late: bool = True
    ) -> tuple[Tensor, MaskLogits]:
        """Class logits ``[S, B, Q, K+1]`` and mask logits of every stage, as the loss takes them.

        ``project_late`` gives ``ProjectedMaskLogits`` (the pixel decoder's last projection
        reassociated, maps computed when asked); otherwise the maps are computed as ``forward``
        computes them, one tensor per stage, as the official code does.
        """
        feats = self.extract_features(images)
        if project_late:
            return self.decode_head.training_stages(feats, self.time_steps)
        class_logits, mask_logits = self.decode_head(feats, self.time_steps, all_stages=True)
        return class_logits, StageMaskLogits(list(mask_logits))

    def semantic_logits(self, images: Tensor) -> Tensor:
        """Per-class scores ``[B, K, H, W]`` as the official predict path computes them.

        Last stage; mask logits upsampled bilinearly to the input size; softmax over the K+1
        classes with the no-object column dropped, times the mask sigmoid, summed over queries.
        """
        out = self(images)
        return combine_masks(out["class_logits"], out["mask_logits"], images.shape[-2:])

    def set_spiking(self, enabled: bool) -> None:
        """Switch every neuron between integer spikes and its real-valued (clamped) counterpart."""
        set_spiking(self, enabled)


def combine_masks(class_logits: Tensor, mask_logits: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B, Q, K+1]`` and ``[B, Q, h, w]`` -> semantic scores ``[B, K, *size]``.

    Computed pixel-major: the result is channels-last (classes innermost in memory), so the
    combination is one 1x1 convolution per image and an arg-max over classes reads contiguous
    memory. The values are those of the official channel-first computation up to float rounding.
    """
    masks = F.interpolate(
        channels_last(mask_logits), size=tuple(size), mode="bilinear", align_corners=False
    ).sigmoid_()  # a fresh tensor
    probs = F.softmax(class_logits, dim=-1)[..., :-1]
    return channels_last(pointwise_per_sample(masks, probs.transpose(1, 2)))
