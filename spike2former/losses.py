"""The official Spike2Former training loss: MaskFormer-style set prediction with deep supervision.

Semantics follow mmdet ``MaskFormerHead.loss_by_feat`` as configured by the official configs (no
point sampling): per stage and image, queries are matched to one ground-truth mask per present
class (``matching.py``); cross-entropy over K+1 classes for every query, with unmatched queries
labelled "no object"; sigmoid focal and naive dice losses on the matched masks, upsampled to the
label resolution. The loss of every stage is reported under its own key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mask_loss import (
    DEFAULT_CHUNK_PIXELS,
    ChunkedMaskLossSums,
    MaskLossTerms,
    mask_loss_sums,
)
from .matching import HungarianMatcher, Match, semantic_classes
from .modeling.mask_logits import MaskLogits, StageMaskLogits

# mmdet's weight_reduce_loss divides by (avg_factor + this) whatever the dtype.
AVG_FACTOR_EPS = torch.finfo(torch.float32).eps


def stack_stages(outputs: Mapping[str, object]) -> tuple[Tensor, Tensor]:
    """``Spike2Former.forward`` output (with ``aux``) -> ``class_logits [S, B, Q, K+1]`` and
    ``mask_logits [S, B, Q, h, w]``, earliest stage first, the layout ``MaskFormerLoss`` takes."""
    stages = [*outputs.get("aux", []), outputs]  # type: ignore[misc]
    class_logits = torch.stack([stage["class_logits"] for stage in stages])
    mask_logits = torch.stack([stage["mask_logits"] for stage in stages])
    return class_logits, mask_logits


class MaskFormerLoss(nn.Module):
    """Stacked stage outputs and semantic labels -> the official dictionary of loss terms.

    Call as ``loss(class_logits [S, B, Q, K+1], mask_logits [S, B, Q, h, w], labels [B, H, W])``
    (``labels`` integer, ``ignore_index`` = ignore; a single stage may be given without the S
    axis). Returns ``loss_cls``, ``loss_mask``, ``loss_dice`` of the last stage and
    ``d{i}.loss_cls``, ``d{i}.loss_mask``, ``d{i}.loss_dice`` of earlier stage i (``d0`` the first);
    the training objective is their sum.

    Normalisation, as mmdet: cross-entropy is the class-weighted mean over all B·Q queries; the
    mask terms are divided by the number of ground-truth masks, counted per image as
    max(matched, 1) and summed over the batch (``local_mask_count``). Under data parallelism pass
    ``num_masks``, the all-reduced mean of that count, so every process divides alike; it is
    clamped to at least 1.

    ``mask_logits`` is a stacked tensor ``[S, B, Q, h, w]`` or a ``MaskLogits`` (per-stage
    tensors, or maps computed on demand: only the matched ones are computed with gradient).

    Memory: the official code upsamples all matched masks of a stage to label resolution at
    once and keeps the result for the backward pass (matched masks × H × W floats, several times,
    per stage). Here the matched masks are processed in chunks of at most ``chunk_pixels``
    label-resolution pixels (``mask_loss.ChunkedMaskLossSums``): the forward keeps only the
    low-resolution logits, and the backward recomputes one chunk's upsampling at a time and
    applies the closed-form gradient. Sums of the same terms in another grouping, so the values
    agree with the direct computation to rounding. ``chunk_pixels=None`` computes everything at
    once with autograd, exactly as the official code.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher | None = None,
        *,
        no_object_weight: float = 0.1,
        cls_weight: float = 1.0,
        mask_weight: float = 20.0,
        dice_weight: float = 1.0,
        ignore_index: int = 255,
        chunk_pixels: int | None = DEFAULT_CHUNK_PIXELS,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if chunk_pixels is not None and chunk_pixels < 1:
            raise ValueError(f"chunk_pixels must be positive or None, got {chunk_pixels}")
        self.num_classes = num_classes
        self.cls_weight = cls_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.chunk_pixels = chunk_pixels
        # the matcher's costs and the focal/dice constants it shares with the losses
        self.matcher = matcher or HungarianMatcher()
        class_weight = torch.tensor([1.0] * num_classes + [no_object_weight])
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(
        self,
        class_logits: Tensor,
        mask_logits: Tensor | MaskLogits,
        labels: Tensor,
        num_masks: float | Tensor | None = None,
    ) -> dict[str, Tensor]:
        losses, _ = self.losses_and_matches(class_logits, mask_logits, labels, num_masks)
        return losses

    def losses_and_matches(
        self,
        class_logits: Tensor,
        mask_logits: Tensor | MaskLogits,
        labels: Tensor,
        num_masks: float | Tensor | None = None,
    ) -> tuple[dict[str, Tensor], list[list[Match]]]:
        """The loss dictionary and the matching it used (``match``'s layout)."""
        class_logits, mask_logits = self._check_inputs(class_logits, mask_logits, labels)
        matches = self._match(class_logits, mask_logits, labels)
        if num_masks is None:
            num_masks = float(sum(max(len(match), 1) for match in matches[-1]))
        num_masks = max(float(num_masks), 1.0)

        rows = [_matched_rows(stage) for stage in matches]
        matched = [_loss_precision(maps) for maps in mask_logits.matched(rows)]
        per_stage = [
            (
                self._class_loss(class_logits[stage], matches[stage]),
                *self._mask_losses(
                    matched[stage], labels, rows[stage][0], matches[stage], num_masks
                ),
            )
            for stage in range(class_logits.shape[0])
        ]
        # mmdet's order: the last stage without prefix, then d0, d1, ...
        prefixes = [""] + [f"d{stage}." for stage in range(len(per_stage) - 1)]
        ordered = [per_stage[-1], *per_stage[:-1]]
        losses = {}
        for prefix, (cls_loss, mask_loss, dice_loss) in zip(prefixes, ordered, strict=True):
            losses[f"{prefix}loss_cls"] = cls_loss
            losses[f"{prefix}loss_mask"] = mask_loss
            losses[f"{prefix}loss_dice"] = dice_loss
        return losses, matches

    @torch.no_grad()
    def match(
        self, class_logits: Tensor, mask_logits: Tensor | MaskLogits, labels: Tensor
    ) -> list[list[Match]]:
        """The Hungarian matching: ``matches[stage][image]``, a ``Match`` each."""
        class_logits, mask_logits = self._check_inputs(class_logits, mask_logits, labels)
        return self._match(class_logits, mask_logits, labels)

    def local_mask_count(self, labels: Tensor, num_queries: int) -> float:
        """This process's mask count for the normalisation: Σ over images of
        max(min(present classes, queries), 1). All-reduce its mean and pass it as ``num_masks``."""
        return float(
            sum(
                max(min(self._classes(label).numel(), num_queries), 1)
                for label in labels.reshape(-1, *labels.shape[-2:])
            )
        )

    def _check_inputs(
        self, class_logits: Tensor, mask_logits: Tensor | MaskLogits, labels: Tensor
    ) -> tuple[Tensor, MaskLogits]:
        if isinstance(mask_logits, Tensor) and class_logits.dim() == 3 and mask_logits.dim() == 4:
            class_logits, mask_logits = class_logits.unsqueeze(0), mask_logits.unsqueeze(0)
        if class_logits.dim() != 4 or len(mask_logits.shape) != 5:
            raise ValueError(
                "expected class_logits [S, B, Q, K+1] and mask_logits [S, B, Q, h, w], got "
                f"{list(class_logits.shape)} and {list(mask_logits.shape)}"
            )
        if class_logits.shape[:3] != mask_logits.shape[:3]:
            raise ValueError(
                f"class_logits {list(class_logits.shape)} and mask_logits "
                f"{list(mask_logits.shape)} disagree on stages, batch or queries"
            )
        if class_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"class_logits have {class_logits.shape[-1]} entries per query, expected "
                f"{self.num_classes + 1} ({self.num_classes} classes + no object)"
            )
        if labels.dim() != 3 or labels.shape[0] != class_logits.shape[1]:
            raise ValueError(
                f"expected labels [B, H, W] with B = {class_logits.shape[1]}, "
                f"got {list(labels.shape)}"
            )
        if labels.is_floating_point():
            raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
        if isinstance(mask_logits, Tensor):
            mask_logits = StageMaskLogits(mask_logits)
        return class_logits, mask_logits

    def _classes(self, label: Tensor) -> Tensor:
        return semantic_classes(label, self.num_classes, self.ignore_index)

    def _match(
        self, class_logits: Tensor, mask_logits: MaskLogits, labels: Tensor
    ) -> list[list[Match]]:
        per_image = [
            self.matcher.match_image(
                class_logits[:, image].detach(),
                _ImageMaps(mask_logits, image),
                labels[image],
                self._classes(labels[image]),
            )
            for image in range(labels.shape[0])
        ]
        return [list(stage) for stage in zip(*per_image, strict=True)]

    def _class_loss(self, class_logits: Tensor, matches: Sequence[Match]) -> Tensor:
        """Weighted cross-entropy for ``class_logits [B, Q, K+1]``; unmatched -> no object."""
        batch, queries = class_logits.shape[:2]
        targets = torch.full((batch, queries), self.num_classes, dtype=torch.long)
        for image, match in enumerate(matches):
            targets[image, match.query_indices] = match.gt_labels
        targets = targets.flatten().to(class_logits.device)
        weight = self.class_weight.to(class_logits.dtype)
        per_query = F.cross_entropy(
            class_logits.flatten(0, 1), targets, weight=weight, reduction="none"
        )
        return self.cls_weight * per_query.sum() / (weight[targets].sum() + AVG_FACTOR_EPS)

    def _mask_losses(
        self,
        matched: Tensor,
        labels: Tensor,
        images: Tensor,
        matches: Sequence[Match],
        num_masks: float,
    ) -> tuple[Tensor, Tensor]:
        """Focal and dice terms of one stage's matched mask logits ``[N, h, w]``, which belong
        to ``images [N]`` and ``matches`` (in image order)."""
        if matched.shape[0] == 0:
            return matched.sum(), matched.sum()
        device = matched.device
        classes = torch.cat([m.gt_labels for m in matches]).to(device)
        images = images.to(device)
        if self.chunk_pixels is None:  # all at once: every upsampled map kept for backward
            sums = mask_loss_sums(matched, labels, images, classes, self._loss_terms)
        else:
            sums = ChunkedMaskLossSums.apply(
                matched, labels, images, classes, self._loss_terms, self.chunk_pixels
            )
        height, width = labels.shape[-2:]
        mask_loss = sums[0] / (num_masks * height * width + AVG_FACTOR_EPS)
        dice_loss = sums[1] / (num_masks + AVG_FACTOR_EPS)
        return self.mask_weight * mask_loss, self.dice_weight * dice_loss

    @property
    def _loss_terms(self) -> MaskLossTerms:
        return self.matcher.terms


class _ImageMaps(Sequence[Tensor]):
    """One image's mask logits, stage by stage, without gradient, in the loss's precision."""

    def __init__(self, mask_logits: MaskLogits, image: int) -> None:
        self.mask_logits, self.image = mask_logits, image

    def __len__(self) -> int:
        return self.mask_logits.shape[0]

    def __getitem__(self, stage: int) -> Tensor:  # type: ignore[override]
        return _loss_precision(self.mask_logits.detached(self.image, stage))


def _loss_precision(maps: Tensor) -> Tensor:
    """Half-precision maps (from autocast) in float32; other dtypes unchanged."""
    return maps.float() if maps.dtype in (torch.float16, torch.bfloat16) else maps


def _matched_rows(matches: Sequence[Match]) -> tuple[Tensor, Tensor]:
    """``(images, queries)`` of one stage's matched queries, in image order."""
    images = torch.cat([torch.full((len(m),), i, dtype=torch.long) for i, m in enumerate(matches)])
    queries = torch.cat([m.query_indices for m in matches])
    return images, queries
