"""The official optimiser: AdamW over three parameter groups, and its learning-rate schedule.

Parameter groups follow mmengine's ``paramwise_cfg.custom_keys`` of the official configs: a
parameter whose name contains ``backbone`` trains at ``lr × backbone_lr_mult`` (0.1) with the
full weight decay; one whose name contains any of ``no_decay_keys`` (the decoder's query
embeddings and level embedding) at the full rate without weight decay; everything else (BN
weights and biases, layer-scale gammas and biases included) at the full rate with weight decay.
mmengine keeps one group per parameter; grouping them by their settings gives the same update.

The schedule is a ``LambdaLR`` stepped once after every optimiser step, so the t-th step (0-based)
uses ``lr · factor(t)`` (``TrainRecipe`` spells the factor out).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .recipe import TrainRecipe

GROUP_NAMES = ("backbone", "no_decay", "default")


def parameter_groups(
    model: nn.Module, recipe: TrainRecipe, lr: float | None = None
) -> list[dict[str, object]]:
    """AdamW parameter groups ``backbone``, ``no_decay``, ``default`` (empty ones left out),
    each a dict with ``params``, ``names``, ``lr``, ``weight_decay`` and ``name``.

    ``lr`` defaults to ``recipe.lr``. A name matching both a no-decay key and ``backbone`` is
    decided as mmengine decides, by the longer key.
    """
    base_lr = recipe.lr if lr is None else lr
    settings = {
        "backbone": (base_lr * recipe.backbone_lr_mult, recipe.weight_decay),
        "no_decay": (base_lr, 0.0),
        "default": (base_lr, recipe.weight_decay),
    }
    members: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in GROUP_NAMES}
    for name, param in model.named_parameters():
        if param.requires_grad:
            members[_group_of(name, recipe.no_decay_keys)].append((name, param))
    groups = []
    for group, items in members.items():
        if items:
            lr_value, decay = settings[group]
            groups.append(
                {
                    "name": group,
                    "params": [param for _, param in items],
                    "names": [name for name, _ in items],
                    "lr": lr_value,
                    "weight_decay": decay,
                }
            )
    return groups


def _group_of(name: str, no_decay_keys: Iterable[str]) -> str:
    # mmengine tries its custom keys longest first and takes the first one contained in the name.
    groups = {key: "no_decay" for key in no_decay_keys}
    groups["backbone"] = "backbone"
    for key in sorted(sorted(groups), key=len, reverse=True):
        if key in name:
            return groups[key]
    return "default"


def build_optimizer(
    model: nn.Module, recipe: TrainRecipe, lr: float | None = None
) -> torch.optim.AdamW:
    """AdamW over ``parameter_groups(model, recipe, lr)``."""
    return torch.optim.AdamW(
        parameter_groups(model, recipe, lr),
        lr=recipe.lr if lr is None else lr,
        betas=recipe.betas,
        eps=recipe.eps,
        weight_decay=recipe.weight_decay,
    )


@dataclass(frozen=True)
class WarmupPolyFactor:
    """The multiplier of a group's base rate at iteration ``t`` (see ``TrainRecipe``).

    ``min_ratio`` is ``recipe.min_lr`` over this group's base rate: mmengine's ``eta_min`` is an
    absolute rate, the same for every group. A dataclass without slots: ``LambdaLR`` saves and
    restores the fields through ``__dict__``.
    """

    warmup_iters: int
    warmup_factor: float
    poly_end: int
    power: float
    min_ratio: float = 0.0

    def _warmup(self, t: int) -> float:
        # mmengine LinearLR over [0, W): its last step (W - 1) reaches the end factor 1.
        span = max(self.warmup_iters - 1, 1)
        return self.warmup_factor + (1.0 - self.warmup_factor) * min(t, span) / span

    def __call__(self, t: int) -> float:
        if t < self.warmup_iters:
            return self._warmup(t)
        # mmengine PolyLR over [W, E): starts from the rate warm-up left and reaches eta_min at
        # its last step E - 1; the rate stays there after E.
        start = self._warmup(self.warmup_iters - 1) if self.warmup_iters > 0 else 1.0
        span = self.poly_end - 1 - self.warmup_iters
        remaining = max(self.poly_end - 1 - t, 0)
        fraction = remaining / span if span > 0 else 0.0
        return self.min_ratio + (start - self.min_ratio) * fraction**self.power


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: TrainRecipe) -> LambdaLR:
    """The warm-up + poly schedule of ``recipe`` as a ``LambdaLR`` (one factor per group)."""
    factors = [
        WarmupPolyFactor(
            recipe.warmup_iters,
            recipe.warmup_factor,
            recipe.poly_end,
            recipe.poly_power,
            recipe.min_lr / group["lr"] if group["lr"] else 0.0,
        )
        for group in optimizer.param_groups
    ]
    return LambdaLR(optimizer, factors)
