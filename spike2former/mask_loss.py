"""The mask terms of the training loss: sigmoid focal and naive dice on upsampled mask logits.

``sigmoid_focal_loss`` and ``naive_dice_loss`` are the official formulas, differentiated by
autograd. ``ChunkedMaskLossSums`` computes the same sums in chunks of masks and differentiates
them in closed form: its forward keeps only the low-resolution logits, its backward upsamples one
chunk at a time again (and takes the upsampling's gradient the fast way at 2x,
``bilinear_grad``). For binary targets t, logits x, σ = sigmoid(x), p_t = σ if t = 0 else
1 − σ, q = 1 − p_t, BCE(x, t) and the focal weight w_t = α t + (1 − α)(1 − t):

    d focal / dx = ±w_t p_tᵞ (γ q BCE + p_t)      (+ for t = 0, − for t = 1)
    d dice_i / dx = (a_i − 2 t b_i) / b_i² · σ (1 − σ),   a_i = 2Σσt + ε,  b_i = Σσ + Σt + ε
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .bilinear_grad import bilinear_upsample_grad


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float, gamma: float) -> Tensor:
    """Element-wise binary focal loss of ``logits`` against 0/1 ``targets`` (same shape).

    The formula of mmdet's ``py_sigmoid_focal_loss``: BCE-with-logits × (α·t + (1−α)(1−t)) · p_tᵞ
    with p_t = 1 − σ for positives and σ for negatives.
    """
    negative = 1 - targets
    pt = focal_pt(logits.sigmoid(), targets, negative)
    focal_weight = (alpha * targets + (1 - alpha) * negative) * pt.pow(gamma)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * focal_weight


def focal_pt(probs: Tensor, targets: Tensor, negative: Tensor) -> Tensor:
    """p_t: ``1 − σ`` where the 0/1 ``targets`` are 1, ``σ`` where they are 0 (``negative`` is
    ``1 − targets``). Selected by products, exact for 0/1 targets, which run several times faster
    than ``torch.where`` with a boolean mask on CPUs."""
    return (1 - probs) * targets + probs * negative


def naive_dice_loss(logits: Tensor, targets: Tensor, eps: float) -> Tensor:
    """Per-mask ``1 − (2Σσt + eps) / (Σσ + Σt + eps)`` for ``logits``, ``targets [N, H, W]``."""
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (probs * targets).sum(1) + eps
    denominator = probs.sum(1) + targets.sum(1) + eps
    return 1 - numerator / denominator


def upsample_to(logits: Tensor, labels: Tensor) -> Tensor:
    """Mask logits ``[n, h, w]`` resized bilinearly to the label size ``[n, H, W]``."""
    return F.interpolate(
        logits.unsqueeze(1), size=labels.shape[-2:], mode="bilinear", align_corners=False
    ).squeeze(1)


def mask_targets(labels: Tensor, images: Tensor, classes: Tensor, dtype: torch.dtype) -> Tensor:
    """Binary targets ``labels[images] == classes`` as ``dtype``, ``[n, H, W]``."""
    return (labels[images] == classes.to(labels.dtype).view(-1, 1, 1)).to(dtype)


# Label pixels per chunk of ``ChunkedMaskLossSums`` unless told otherwise (16 masks at 512x512).
DEFAULT_CHUNK_PIXELS = 2**22


@dataclass(frozen=True)
class MaskLossTerms:
    """The constants of the two mask terms (the official ones by default), shared by the
    matching costs and the losses."""

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    dice_eps: float = 1.0


OFFICIAL_TERMS = MaskLossTerms()


def mask_loss_sums(
    logits: Tensor, labels: Tensor, images: Tensor, classes: Tensor, terms: MaskLossTerms
) -> Tensor:
    """``[focal sum, dice sum]`` of matched mask ``logits [n, h, w]``, upsampled bilinearly to
    the label size, against the masks ``labels[images] == classes``."""
    upsampled = upsample_to(logits, labels)
    targets = mask_targets(labels, images, classes, logits.dtype)
    focal = sigmoid_focal_loss(upsampled, targets, terms.focal_alpha, terms.focal_gamma).sum()
    dice = naive_dice_loss(upsampled, targets, terms.dice_eps).sum()
    return torch.stack([focal, dice])


class ChunkedMaskLossSums(torch.autograd.Function):
    """``[focal sum, dice sum]`` of matched mask logits ``[n, h, w]`` upsampled to the label
    size, against ``labels[images] == classes``, at most ``chunk_pixels`` label pixels at a time.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        logits: Tensor,
        labels: Tensor,
        images: Tensor,
        classes: Tensor,
        terms: MaskLossTerms,
        chunk_pixels: int,
    ) -> Tensor:
        chunk = max(1, chunk_pixels // labels.shape[-2:].numel())
        sums = logits.new_zeros(2)
        for part in _chunks(logits.shape[0], chunk):
            sums += mask_loss_sums(logits[part], labels, images[part], classes[part], terms)
        ctx.save_for_backward(logits, labels, images, classes)
        ctx.terms, ctx.chunk = terms, chunk
        return sums

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        logits, labels, images, classes = ctx.saved_tensors
        terms: MaskLossTerms = ctx.terms
        alpha, gamma, eps = terms.focal_alpha, terms.focal_gamma, terms.dice_eps
        grad_focal, grad_dice = grad[0], grad[1]
        grads = []
        for part in _chunks(logits.shape[0], ctx.chunk):
            upsampled = upsample_to(logits[part], labels)
            targets = mask_targets(labels, images[part], classes[part], logits.dtype)
            probs = upsampled.sigmoid()
            # Focal: ±w_t p_t^γ (γ q BCE + p_t), its selections by t as products (focal_pt).
            negative = 1 - targets
            pt = focal_pt(probs, targets, negative)
            bce = F.binary_cross_entropy_with_logits(upsampled, targets, reduction="none")
            focal = (gamma * (1 - pt) * bce + pt) * pt.pow(gamma)
            focal = focal * (targets * -alpha + negative * (1 - alpha))
            # Dice: (a − 2 t b) / b² · σ(1 − σ), per mask.
            flat_probs, flat_targets = probs.flatten(1), targets.flatten(1)
            a = (2 * (flat_probs * flat_targets).sum(1) + eps).view(-1, 1, 1)
            b = (flat_probs.sum(1) + flat_targets.sum(1) + eps).view(-1, 1, 1)
            dice = (a - 2 * targets * b) / (b * b) * probs * (1 - probs)
            grad_upsampled = grad_focal * focal + grad_dice * dice
            low_size = [grad_upsampled.shape[0], 1, *logits.shape[-2:]]
            grads.append(bilinear_upsample_grad(grad_upsampled.unsqueeze(1), low_size).squeeze(1))
        return torch.cat(grads), None, None, None, None, None


def _chunks(total: int, size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, total, size)]
