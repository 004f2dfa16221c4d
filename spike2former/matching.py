"""Semantic-segmentation targets and the Hungarian matching of queries to them.

This is the assignment step of the official MaskFormer recipe (mmseg
``MaskFormerHead._seg_data_to_instance_data`` and mmdet ``HungarianAssigner`` with
``ClassificationCost``, binary ``FocalLossCost`` and naive ``DiceCost``), kept apart from the loss
so that a trainer or a test can look at who was matched to what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .mask_loss import OFFICIAL_TERMS, MaskLossTerms

# mmdet FocalLossCost's guard inside the logarithms (not configurable in the official configs).
FOCAL_COST_LOG_EPS = 1e-12

# Pixels per chunk of the chunked matching costs (100 queries × 4,096 float32 logits: 1.6 MB).
DEFAULT_COST_CHUNK_PIXELS = 4096


@dataclass(frozen=True)
class Match:
    """The queries matched in one image at one stage, by ascending query index.

    ``query_indices[i]`` was matched to ground-truth mask ``gt_indices[i]`` (an index into the
    image's masks, which are ordered by ascending class id), whose class is ``gt_labels[i]``.
    All three are int64 tensors of the same length on the CPU.
    """

    query_indices: Tensor
    gt_indices: Tensor
    gt_labels: Tensor

    def __len__(self) -> int:
        return int(self.query_indices.numel())


def semantic_classes(label: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """The classes present in a label map ``[H, W]``, ascending, ``ignore_index`` left out.

    One ground-truth mask per present class is what the official semantic recipe supervises.
    A label value that is neither a class id nor ``ignore_index`` is an error.
    """
    classes = torch.unique(label)
    classes = classes[classes != ignore_index].long()
    invalid = classes[(classes < 0) | (classes >= num_classes)]
    if invalid.numel():
        raise ValueError(
            f"label values {invalid.tolist()} are not class ids: expected 0..{num_classes - 1} "
            f"or {ignore_index} (ignore); check the class count and reduce_zero_label"
        )
    return classes


def class_masks(label: Tensor, classes: Tensor) -> Tensor:
    """Binary masks ``[G, H, W]`` (bool), one per entry of ``classes [G]``, of a label ``[H, W]``.

    Ignored pixels belong to no mask.
    """
    return label.unsqueeze(0) == classes.to(label.dtype).view(-1, 1, 1)


def nearest_resize_label(label: Tensor, size: tuple[int, int]) -> Tensor:
    """``label [H, W]`` resized to ``size`` by nearest neighbour, as ``F.interpolate`` does it.

    Resizing the label map once and then splitting it into class masks gives exactly the masks
    the official code gets by resizing every binary mask (nearest only selects pixels).
    """
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    resized = F.interpolate(label[None, None].float(), size=size, mode="nearest")
    return resized[0, 0].to(label.dtype)


@dataclass(frozen=True)
class HungarianMatcher:
    """One-to-one assignment of queries to ground-truth masks by minimum total cost.

    cost[q, g] = ``cls_cost`` · (−softmax(class_logits[q])[label_g])
               + ``focal_cost`` · mean over pixels of the binary focal cost of σ(mask[q]) vs mask g
               + ``dice_cost`` · (1 − (2Σσ·g + eps) / (Σσ + Σg + eps)),
    computed at the prediction size against nearest-resized masks and solved with
    ``scipy.optimize.linear_sum_assignment``. No gradient flows through the matching.
    """

    cls_cost: float = 2.0
    focal_cost: float = 20.0
    dice_cost: float = 1.0
    terms: MaskLossTerms = field(default=OFFICIAL_TERMS, kw_only=True)
    # None: the official formula over all pixels at once; a number: the same sums over at most
    # this many pixels of every query's map at a time, small enough to stay in cache
    chunk_pixels: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.chunk_pixels is not None and self.chunk_pixels < 1:
            raise ValueError(f"chunk_pixels must be positive or None, got {self.chunk_pixels}")

    @torch.no_grad()
    def cost_matrices(
        self, class_logits: Tensor, mask_logits: Tensor, gt_labels: Tensor, gt_masks: Tensor
    ) -> Tensor:
        """Costs ``[S, Q, G]`` for ``class_logits [S, Q, K+1]``, ``mask_logits [S, Q, h, w]``,
        ``gt_labels [G]`` and ``gt_masks [G, h, w]`` (already at the prediction size)."""
        probs = class_logits.softmax(-1)
        class_cost = -probs[..., gt_labels]
        logits = mask_logits.flatten(2)
        target = gt_masks.flatten(1).to(logits.dtype)
        if self.chunk_pixels is None:
            focal, overlap, prob_sums = self._mask_sums(logits, target)
        else:
            focal, overlap, prob_sums = self._chunked_mask_sums(logits, target, self.chunk_pixels)
        focal = focal / logits.shape[-1]
        dice_eps = self.terms.dice_eps
        denominator = prob_sums[..., None] + target.sum(-1)[None, None, :]
        dice = 1 - (2 * overlap + dice_eps) / (denominator + dice_eps)
        return torch.stack(
            [class_cost * self.cls_cost, focal * self.focal_cost, dice * self.dice_cost]
        ).sum(0)

    def _mask_sums(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per query and mask, over pixels: the focal cost sum, Σσ·g; and per query Σσ (the
        official formulas, each term over the whole map)."""
        pred = logits.sigmoid()
        alpha, gamma, eps = self.terms.focal_alpha, self.terms.focal_gamma, FOCAL_COST_LOG_EPS
        neg = -(1 - pred + eps).log() * (1 - alpha) * pred.pow(gamma)
        pos = -(pred + eps).log() * alpha * (1 - pred).pow(gamma)
        focal = torch.einsum("sqp,gp->sqg", pos, target) + torch.einsum(
            "sqp,gp->sqg", neg, 1 - target
        )
        return focal, torch.einsum("sqp,gp->sqg", pred, target), pred.sum(-1)

    def _chunked_mask_sums(
        self, logits: Tensor, target: Tensor, chunk: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``_mask_sums`` a chunk of pixels at a time, with fewer passes over each chunk.

        Σ pos·g + neg·(1 − g) = Σ (pos − neg)·g + Σ neg, so one product with the masks serves
        both terms; the temporaries are a chunk large and updated in place.
        """
        alpha, gamma, eps = self.terms.focal_alpha, self.terms.focal_gamma, FOCAL_COST_LOG_EPS
        focal = logits.new_zeros(*logits.shape[:-1], target.shape[0])
        overlap = torch.zeros_like(focal)
        prob_sums = logits.new_zeros(logits.shape[:-1])
        for start in range(0, logits.shape[-1], chunk):
            pred = logits[..., start : start + chunk].sigmoid()
            masks = target[:, start : start + chunk].T
            miss = 1 - pred
            pos = (pred + eps).log_().mul_(miss.pow(gamma)).mul_(-alpha)
            neg = miss.add_(eps).log_().mul_(pred.pow(gamma)).mul_(alpha - 1)
            focal += pos.sub_(neg) @ masks + neg.sum(-1, keepdim=True)
            overlap += pred @ masks
            prob_sums += pred.sum(-1)
        return focal, overlap, prob_sums

    def match_image(
        self,
        class_logits: Tensor,
        mask_logits: Sequence[Tensor],
        label: Tensor,
        classes: Tensor,
    ) -> list[Match]:
        """One ``Match`` per stage for one image.

        ``class_logits [S, Q, K+1]``, ``mask_logits`` ``[S, Q, h, w]`` or any sequence of S
        ``[Q, h, w]`` maps (read one stage at a time, as the official code costs them: the
        temporaries stay one stage large), ``label [H, W]`` at full resolution and its present
        ``classes [G]`` (ascending).
        """
        num_stages = class_logits.shape[0]
        if classes.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return [Match(empty, empty, empty) for _ in range(num_stages)]
        cpu_classes = classes.cpu()
        gt_masks = None
        matches = []
        for stage in range(num_stages):
            maps = mask_logits[stage]
            if gt_masks is None:
                gt_masks = class_masks(nearest_resize_label(label, tuple(maps.shape[-2:])), classes)
            cost = self.cost_matrices(
                class_logits[stage : stage + 1], maps[None], classes, gt_masks
            )
            rows, cols = linear_sum_assignment(cost[0].detach().cpu().numpy())
            order = rows.argsort()
            query_indices = torch.as_tensor(rows[order], dtype=torch.long)
            gt_indices = torch.as_tensor(cols[order], dtype=torch.long)
            matches.append(Match(query_indices, gt_indices, cpu_classes[gt_indices]))
        return matches
