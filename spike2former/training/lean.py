"""A training step that computes the official network's losses and gradients at a lower cost.

``LeanTraining`` lists what may differ from the official computation; none of it changes the
mathematics, only what is kept for the backward pass and the order of some products:

- ``compact_spikes``: neurons keep one byte per element for backward (count and in-range bit)
  instead of their float input, and layers that save spikes keep the same byte instead of a float
  copy (``modeling.saved_spikes``);
- ``reassociate``: spiking attention computes ``q (k^T v)`` instead of ``(q k^T) v`` (no softmax,
  so the product is associative), and the mask logits are read as ``(E W) . x + E . c``
  (``modeling.mask_logits.ProjectedMaskLogits``): the pixel decoder's largest projection is never
  computed, and only the matched queries' maps are computed with gradient;
- ``loss_chunk_pixels``: the mask terms of the loss in chunks with a closed-form backward
  (``mask_loss.ChunkedMaskLossSums``) instead of keeping every upsampled map;
- ``cost_chunk_pixels``: the matching's focal and dice costs over a few thousand pixels at a
  time with fewer, in-place passes (``matching.HungarianMatcher``): the same sums, computed in
  cache (in float32 they round differently, so costs tied to rounding may match otherwise);
- ``blocked_depthwise_grad``: the weight gradient of the depthwise 5x5 and 7x7 convolutions
  summed in cache-sized bands of rows (``modeling.depthwise``) instead of by oneDNN, which takes
  several times longer for it on CPUs;
- ``recompute_backbone``: each backbone block keeps only its input and runs again in backward
  (activation checkpointing, ``modeling.recompute``): less memory, more time; off by default.

``OFFICIAL`` switches all of them off. In float64 the two give the same losses and gradients to
rounding (tests hold them to 1e-10); in float32 they differ by float rounding, like any two
orders of the same sums.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..losses import MaskFormerLoss
from ..mask_loss import DEFAULT_CHUNK_PIXELS
from ..matching import DEFAULT_COST_CHUNK_PIXELS, HungarianMatcher
from ..modeling.depthwise import DepthwiseConv2d
from ..modeling.saved_spikes import compact_saved_spikes
from ..modeling.spike2former import Spike2Former


@dataclass(frozen=True)
class LeanTraining:
    """Which of the cost savings a training step uses (see the module docstring)."""

    compact_spikes: bool = True
    reassociate: bool = True
    loss_chunk_pixels: int | None = DEFAULT_CHUNK_PIXELS
    cost_chunk_pixels: int | None = DEFAULT_COST_CHUNK_PIXELS
    blocked_depthwise_grad: bool = True
    recompute_backbone: bool = False


OFFICIAL = LeanTraining(
    compact_spikes=False,
    reassociate=False,
    loss_chunk_pixels=None,
    cost_chunk_pixels=None,
    blocked_depthwise_grad=False,
)


def prepare_model(model: Spike2Former, lean: LeanTraining) -> Spike2Former:
    """Set the model's computation order for training as ``lean`` says (in place)."""
    for module in model.modules():
        if hasattr(module, "keys_first"):
            module.keys_first = lean.reassociate
        if isinstance(module, DepthwiseConv2d):
            module.blocked_weight_grad = lean.blocked_depthwise_grad
    model.project_masks_late = lean.reassociate
    model.backbone.recompute_blocks = lean.recompute_backbone
    return model


def build_criterion(model: Spike2Former, cls_cost: float, lean: LeanTraining) -> MaskFormerLoss:
    return MaskFormerLoss(
        model.config.head.num_classes,
        HungarianMatcher(cls_cost, chunk_pixels=lean.cost_chunk_pixels),
        chunk_pixels=lean.loss_chunk_pixels,
    )


def step_losses(
    network: nn.Module,
    criterion: MaskFormerLoss,
    images: Tensor,
    labels: Tensor,
    lean: LeanTraining,
    *,
    num_masks: float | Tensor | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """Forward in training mode and the loss terms (``network`` may be DDP-wrapped)."""
    saving = compact_saved_spikes() if lean.compact_spikes else nullcontext()
    autocast = (
        torch.autocast(images.device.type, autocast_dtype) if autocast_dtype else nullcontext()
    )
    with saving:
        with autocast:
            class_logits, mask_logits = network(images, for_loss=True)
        return criterion(class_logits.float(), mask_logits, labels, num_masks)
