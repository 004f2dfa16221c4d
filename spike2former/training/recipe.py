"""Training recipes: the optimiser, schedule and data settings of the official configs, as data.

One frozen ``TrainRecipe`` per preset (``recipe_for(name)``), transcribed from the official
``configs/Spike2Former/*`` files; a run overrides single fields with ``recipe.replace(...)``,
and ``recipe.with_iters(n)`` fits the whole schedule (warm-up, poly end) to a longer or shorter run.
What every official config shares (architecture.md §6.4): AdamW with lr 1e-3, betas (0.9, 0.999),
weight decay 0.005; parameters whose name contains ``backbone`` at lr × 0.1; no weight decay on
``query_embed``, ``query_feat`` and ``level_embed``; gradients clipped to a global L2 norm of
0.01; mmengine's ``LinearLR`` warm-up from a factor of 1e-6 over the first 1,500 iterations, then
``PolyLR`` (power 1, eta_min 0) until ``poly_end``; fp32; validation every 2,500 iterations and a
checkpoint every 10,000.

``batch_size`` is per process (mmseg's ``train_dataloader.batch_size``, images per GPU); the
official runs used 8 GPUs (``official_processes``), so their total batch is 8 × that.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..config import ModelConfig
from ..errors import NamesArguments
from ..named import lookup

# Training pipelines: the official three of ``datasets.pipeline_for`` and ``random_crop``
# (no rescaling; for small images already at the network's scale).
PIPELINES = ("shortest_edge_a", "shortest_edge_c", "random_resize", "random_crop")


@dataclass(frozen=True)
class TrainRecipe:
    """Everything that decides how a network is trained, apart from the network and the data.

    Learning rate per iteration ``t`` (0-based; the rate the t-th optimiser step uses), as
    mmengine's ``LinearLR`` + ``PolyLR`` chain computes it:
    ``lr · (f + (1 − f) · t / (W − 1))`` for ``t < W`` (f = ``warmup_factor``,
    W = ``warmup_iters``), then ``min_lr + (lr' − min_lr) · ((E − 1 − t) / (E − 1 − W))^p`` for
    ``W ≤ t < E`` (E = ``poly_end``, p = ``poly_power``, lr' the rate reached at the end of
    warm-up), and ``min_lr`` from ``E`` on. ``lr_base_batch`` set: ``lr`` is scaled by
    (total batch) / ``lr_base_batch``, mmengine's ``auto_scale_lr``.
    """

    lr: float = 1e-3
    weight_decay: float = 0.005
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    backbone_lr_mult: float = 0.1
    no_decay_keys: tuple[str, ...] = ("query_embed", "query_feat", "level_embed")
    clip_grad: float | None = 0.01
    warmup_iters: int = 1500
    warmup_factor: float = 1e-6
    poly_power: float = 1.0
    poly_end: int = 160_000
    min_lr: float = 0.0
    lr_base_batch: int | None = None
    iters: int = 160_000
    batch_size: int = 12
    crop_size: tuple[int, int] = (512, 512)
    pipeline: str = "shortest_edge_a"
    cls_cost: float = 2.0
    eval_interval: int = 2500
    checkpoint_interval: int = 10_000
    official_processes: int = 8

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> TrainRecipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainRecipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainRecipe fields: {', '.join(unknown)}")
        values = dict(data)
        for key in ("betas", "no_decay_keys", "crop_size"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def overridden(self, **changes: Any) -> TrainRecipe:
        """``changes`` applied as the command line applies its options: ``iters`` rescales the
        schedule (``with_iters``) and the other changes apply on top of that, so an explicit
        ``warmup_iters`` or ``poly_end`` is kept as given; an explicit ``lr`` is used as given
        (no batch scaling), and ``clip_grad=0`` turns clipping off."""
        changes = dict(changes)
        if changes.get("clip_grad") == 0:
            changes["clip_grad"] = None
        if "lr" in changes:
            changes["lr_base_batch"] = None
        recipe = self.with_iters(changes.pop("iters")) if "iters" in changes else self
        return recipe.replace(**changes)

    def with_iters(self, iters: int) -> TrainRecipe:
        """The recipe for ``iters`` iterations, its schedule stretched or shrunk alike: the
        warm-up and the poly decay's end move in proportion, so ``iters == self.iters`` leaves
        the recipe as it is, a schedule that ends with training still does, Cityscapes' still
        stops at the same fraction of its decay, and a short run warms up for the same fraction
        of it."""
        scale = iters / self.iters
        poly_end = max(round(self.poly_end * scale), 1)
        # Rounding can bring a scaled warm-up level with the end of training or of the decay
        # (60 warm-up iterations of 100, scaled to 1 of 1); it has to stop short of both.
        warmup_iters = min(round(self.warmup_iters * scale), iters - 1, poly_end - 1)
        return self.replace(iters=iters, poly_end=poly_end, warmup_iters=warmup_iters)

    def scaled_lr(self, total_batch: int) -> float:
        """The base learning rate for ``total_batch`` images per step (all processes)."""
        if self.lr_base_batch is None:
            return self.lr
        return self.lr * total_batch / self.lr_base_batch


class RecipeError(NamesArguments, ValueError):
    """A recipe that cannot run. The message names the fields at fault with their values
    (``warmup_iters=50``); ``describe`` writes it with other names for them, such as a command
    line's options."""


def validate(recipe: TrainRecipe) -> None:
    """Raise ``RecipeError`` for a recipe that cannot run, naming the fields at fault."""
    for name in ("lr", "weight_decay", "backbone_lr_mult", "clip_grad", "min_lr", "eps"):
        value = getattr(recipe, name)
        if value is not None and not math.isfinite(value):
            raise RecipeError(f"{{{name}}} must be a finite number", **{name: value})
    positive = {
        "lr": recipe.lr,
        "iters": recipe.iters,
        "batch_size": recipe.batch_size,
        "eval_interval": recipe.eval_interval,
        "checkpoint_interval": recipe.checkpoint_interval,
        "poly_end": recipe.poly_end,
    }
    for name, value in positive.items():
        if value <= 0:
            raise RecipeError(f"{{{name}}} must be positive", **{name: value})
    for name, value in {
        "warmup_iters": recipe.warmup_iters,
        "weight_decay": recipe.weight_decay,
        "min_lr": recipe.min_lr,
    }.items():
        if value < 0:
            raise RecipeError(f"{{{name}}} must not be negative", **{name: value})
    if not 0.0 <= recipe.warmup_factor <= 1.0:
        raise RecipeError("{warmup_factor} must be in [0, 1]", warmup_factor=recipe.warmup_factor)
    if recipe.warmup_iters >= recipe.iters:
        raise RecipeError(
            "{warmup_iters} must be less than {iters}: the warm-up has to end before training "
            "does; shorten the warm-up or train longer",
            warmup_iters=recipe.warmup_iters,
            iters=recipe.iters,
        )
    if recipe.poly_end <= recipe.warmup_iters:
        raise RecipeError(
            "{poly_end} must come after the warm-up, {warmup_iters}; end the decay later or "
            "shorten the warm-up",
            poly_end=recipe.poly_end,
            warmup_iters=recipe.warmup_iters,
        )
    if recipe.clip_grad is not None and recipe.clip_grad <= 0:
        raise RecipeError("{clip_grad} must be positive or None", clip_grad=recipe.clip_grad)
    if len(recipe.crop_size) != 2 or min(recipe.crop_size) <= 0:
        raise RecipeError("{crop_size} must be (height, width)", crop_size=recipe.crop_size)
    if recipe.pipeline not in PIPELINES:
        raise RecipeError(
            f"{{pipeline}} must be one of {', '.join(PIPELINES)}", pipeline=recipe.pipeline
        )
    if recipe.lr_base_batch is not None and recipe.lr_base_batch <= 0:
        raise RecipeError("{lr_base_batch} must be positive", lr_base_batch=recipe.lr_base_batch)


_ADE20K = TrainRecipe()
_CITYSCAPES = TrainRecipe(
    iters=90_000, poly_end=160_000, batch_size=8, crop_size=(512, 1024), pipeline="shortest_edge_c"
)

# Per official config (architecture.md §6.5). The VOC configs keep ADE20K's 150 classes; only
# their optimisation and data settings are taken here.
RECIPES: dict[str, TrainRecipe] = {
    # SDTv3_b_Spike2former_ade20k_512x512
    "sdtv3b-ade20k": _ADE20K,
    # SDTv2_maskformer_DCNpixelDecoder_ade20k
    "sdtv2-ade20k": _ADE20K.replace(batch_size=6, cls_cost=1.0),
    # SDTv3_b_Spike2former_voc_512x512
    "sdtv3b-voc": _ADE20K.replace(batch_size=16, pipeline="random_resize"),
    # SDTv2_Spike2former_voc_512x512
    "sdtv2-voc": _ADE20K.replace(
        batch_size=8, iters=120_000, poly_end=120_000, pipeline="random_resize", cls_cost=1.0
    ),
    # SDTv3_b_Spike2former_Cityscapes_512x1024: lr 2e-3 with auto_scale_lr (base batch 48), so
    # 2e-3 × 64 / 48 ≈ 2.67e-3 on the official 8 × 8 images; PolyLR ends at 160k but training
    # stops at 90k, where the rate is still ≈ 44 % of its peak.
    "sdtv3b-cityscapes": _CITYSCAPES.replace(lr=2e-3, lr_base_batch=48),
    # SDTv2_maskformer_DCNPixelDecoder_CityScapes
    "sdtv2-cityscapes": _CITYSCAPES.replace(cls_cost=1.0),
    # SDTv2_maskformer_cocostuff10k_512x512
    "sdtv2-cocostuff10k": _ADE20K.replace(batch_size=16, cls_cost=1.0),
    # SDTv2_maskformer_cocostuff164k_512x512
    "sdtv2-cocostuff164k": _ADE20K.replace(
        batch_size=16, iters=320_000, poly_end=320_000, eval_interval=5000, cls_cost=1.0
    ),
    # Not an official recipe: the ADE20K optimiser on a schedule one process can finish on a
    # CPU (short warm-up, 256 crops, 4 images per step).
    "tiny": _ADE20K.replace(
        iters=4000,
        poly_end=4000,
        warmup_iters=100,
        batch_size=4,
        crop_size=(256, 256),
        eval_interval=500,
        checkpoint_interval=500,
    ),
}

# A dataset format -> the preset whose recipe fits it, per backbone version.
_FORMAT_RECIPES = {
    ("sdtv3", "ade20k"): "sdtv3b-ade20k",
    ("sdtv3", "cityscapes"): "sdtv3b-cityscapes",
    ("sdtv3", "voc"): "sdtv3b-voc",
    ("sdtv2", "ade20k"): "sdtv2-ade20k",
    ("sdtv2", "cityscapes"): "sdtv2-cityscapes",
    ("sdtv2", "voc"): "sdtv2-voc",
    ("sdtv2", "cocostuff10k"): "sdtv2-cocostuff10k",
    ("sdtv2", "cocostuff164k"): "sdtv2-cocostuff164k",
}


def recipe_for(name: str) -> TrainRecipe:
    """The recipe of preset ``name``; raises ``KeyError`` listing the known names."""
    return lookup(RECIPES, name, "recipe")


def recipe_name_for(config: ModelConfig, dataset_format: str) -> str:
    """The preset whose recipe suits a network (e.g. loaded from a model file) and a dataset:
    the official config of the same backbone version on that dataset, else its ADE20K one
    (SDT-V3 has no COCO-Stuff config; ``folder`` datasets get the ADE20K recipe)."""
    version = config.backbone.version
    return _FORMAT_RECIPES.get(
        (version, dataset_format), "sdtv3b-ade20k" if version == "sdtv3" else "sdtv2-ade20k"
    )
