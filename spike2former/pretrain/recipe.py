"""The classification recipe of the SDT repositories (SDT-V2 ``classification``, SDT-V3
``Model_Base``), as data.

Published (ImageNet-1k, 8 GPUs x 128 images): 200 epochs, 10 of them warm-up, base learning
rate 6e-4 per 256 images (the rate is ``base_lr * total_batch / 256``), half-cycle cosine decay
to 1e-6 after a linear warm-up, weight decay 0.05 (none on biases and normalisation weights),
label smoothing 0.1, 224 x 224 crops, random erasing 0.25, RandAugment rand-m9-mstd0.5, no mixup,
no gradient clipping, LAMB.

Adapted: lengths in iterations, the warm-up the same 5 % of them; AdamW instead of LAMB (torch
has no LAMB; the SDT-V2 code carries AdamW as its alternative); photometric distortion instead
of RandAugment (see ``augment``); no stochastic depth (the segmentation backbone has none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..errors import ConfigError

WARMUP_FRACTION = 10 / 200
# Classification crops beyond this only cost memory (the published size is 224).
MIN_CROP, MAX_CROP = 32, 1024


@dataclass(frozen=True)
class PretrainRecipe:
    iters: int = 2_000_000
    batch_size: int = 128
    base_lr: float = 6e-4  # per 256 images
    lr: float | None = None  # the peak rate as given; None: base_lr scaled to the batch
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_iters: int | None = None  # None: WARMUP_FRACTION of ``iters``
    label_smoothing: float = 0.1
    crop_size: int = 224
    erase_prob: float = 0.25
    eval_interval: int = 5_000
    checkpoint_interval: int = 5_000

    def __post_init__(self) -> None:
        positive = ("iters", "batch_size", "eval_interval", "checkpoint_interval")
        for name in positive:
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{{{name}}} must be at least 1", **{name: value})
        if not MIN_CROP <= self.crop_size <= MAX_CROP:
            raise ConfigError(
                f"{{crop_size}}: pretraining crops are {MIN_CROP} to {MAX_CROP} pixels square",
                crop_size=self.crop_size,
            )
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(
                "{label_smoothing} must lie in [0, 1)", label_smoothing=self.label_smoothing
            )
        if not 0 <= self.erase_prob <= 1:
            raise ConfigError("{erase_prob} must lie in [0, 1]", erase_prob=self.erase_prob)
        if self.warmup_iters is not None and not 0 <= self.warmup_iters < self.iters:
            raise ConfigError(
                "{warmup_iters} must be at least 0 and below {iters}",
                warmup_iters=self.warmup_iters,
                iters=self.iters,
            )

    @property
    def warmup(self) -> int:
        if self.warmup_iters is not None:
            return self.warmup_iters
        return round(self.iters * WARMUP_FRACTION)

    def peak_lr(self, total_batch: int) -> float:
        """The peak rate for ``total_batch`` images per step: ``lr`` where given, else the
        linear scaling rule."""
        return self.lr if self.lr is not None else self.base_lr * total_batch / 256


def build_optimizer(model: nn.Module, recipe: PretrainRecipe, lr: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and kernels only."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": recipe.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, recipe: PretrainRecipe, lr: float
) -> LambdaLR:
    """Linear warm-up from 0, then half-cycle cosine from ``lr`` to ``min_lr``, per iteration."""
    warmup, total = recipe.warmup, recipe.iters
    floor = min(recipe.min_lr / lr, 1.0) if lr > 0 else 0.0

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)
