"""What a run is checked for before its folder is created, so that a bad setting or bad data costs
one line and leaves nothing behind:

1. the training set holds at least one batch for every process;
2. the first training sample loads and transforms, the first validation sample loads, and the
   headers of up to ``SIZE_SAMPLE`` images spread over each set (and of their label maps, which
   must have the same sizes) can be read;
3. the crop is no larger than those training images can be once the pipeline has resized them
   (a larger one would only be padding, and would cost memory for it);
4. the memory the run needs (``memory.py``), with the largest of those images, is free.

Every process runs the checks; if any refuses, all stop.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..datasets import SegmentationDataset
from ..errors import S2FError
from ..inference.memory import gib
from ..inference.preprocess import network_input_size
from ..modeling.spike2former import Spike2Former
from .data import SampleFailure, load_sample, train_pipeline
from .distributed import DistributedContext, all_reduce_mean, refused_together
from .lean import LeanTraining
from .memory import Images, Room, TrainingMemory, coarse, estimate
from .recipe import RecipeError, TrainRecipe

# Training images whose sizes are read (from their headers) to check the crop against.
SIZE_SAMPLE = 32


class RunSettingsError(RecipeError, S2FError):
    """Settings that do not fit the data or this machine. A usage error: the message names the
    settings at fault as ``RecipeError`` does, so a front end can name its options instead."""


@dataclass(frozen=True)
class ImageSizes:
    """The largest sizes among ``count`` sampled images: ``largest`` (height, width) and
    ``pixels`` once resized, ``stored`` pixels as stored."""

    largest: tuple[int, int]
    pixels: int
    stored: int
    count: int


def check_run(
    model: Spike2Former,
    recipe: TrainRecipe,
    datasets: tuple[SegmentationDataset, SegmentationDataset | None],
    context: DistributedContext,
    *,
    workers: int,
    lean: LeanTraining,
    amp_dtype: torch.dtype | None = None,
    may_recompute: bool = False,
) -> LeanTraining:
    """Raise ``DatasetError`` for data that cannot be trained on and ``RunSettingsError`` for
    settings that do not fit it or this machine; nothing is written. Returns ``lean``, or, with
    ``may_recompute``, ``lean`` recomputing the backbone where only that makes the step fit
    (on every process if on any: they run one network)."""
    with refused_together(context):
        train_set, val_set = datasets
        check_batches(len(train_set), recipe.batch_size, context)
        pipeline = train_pipeline(recipe.pipeline, recipe.crop_size)
        sizes = image_sizes(train_set, pipeline.largest_size)
        check_crop(recipe, sizes)
        test_size = model.config.test_size
        val_sizes = None
        if val_set is not None:
            val_sizes = image_sizes(val_set, lambda h, w: network_input_size(h, w, test_size))
        for dataset in (train_set, val_set):
            if dataset is not None:
                loaded = load_sample(dataset, (0, 0))
                if isinstance(loaded, SampleFailure):
                    raise loaded.error()
        images = Images(
            crop=recipe.crop_size[0] * recipe.crop_size[1],
            train_image=max(sizes.pixels, sizes.stored),
            val_image=val_sizes.stored if val_sizes else 0,
            val_input=val_sizes.pixels if val_sizes else 0,
        )
        fitted = check_memory(
            model, recipe, images, context, workers, lean, amp_dtype, may_recompute
        )
    if may_recompute and context.distributed:
        (anywhere,) = all_reduce_mean([float(fitted.recompute_backbone)], context)
        fitted = dataclasses.replace(lean, recompute_backbone=anywhere > 0)
    return fitted


def check_batches(images: int, batch_size: int, context: DistributedContext) -> None:
    if images // context.world_size < batch_size:
        raise RunSettingsError(
            f"{{batch_size}} is more than the training set's {images} images give each of "
            f"{context.world_size} process(es); lower it",
            batch_size=batch_size,
        )


def image_sizes(
    dataset: SegmentationDataset, resized: Callable[[int, int], tuple[int, int]]
) -> ImageSizes:
    """The sizes of up to ``SIZE_SAMPLE`` images spread evenly over ``dataset`` (the first and
    the last included), from their headers, as stored and as ``resized`` (height, width) makes
    them at most."""
    indices = sampled_indices(len(dataset))
    largest_h = largest_w = pixels = stored = 0
    for index in indices:
        height, width = dataset.check_sizes(index)
        resized_h, resized_w = resized(height, width)
        largest_h, largest_w = max(largest_h, resized_h), max(largest_w, resized_w)
        pixels = max(pixels, resized_h * resized_w)
        stored = max(stored, height * width)
    return ImageSizes((largest_h, largest_w), pixels, stored, len(indices))


def sampled_indices(size: int) -> list[int]:
    """Up to ``SIZE_SAMPLE`` indices of ``size`` items, spread evenly, first and last included."""
    count = min(size, SIZE_SAMPLE)
    return sorted({round(i * (size - 1) / max(count - 1, 1)) for i in range(count)})


def check_crop(recipe: TrainRecipe, sizes: ImageSizes) -> None:
    crop_h, crop_w = recipe.crop_size
    most_h, most_w = sizes.largest
    if crop_h > most_h or crop_w > most_w:
        fits = (min(crop_h, most_h), min(crop_w, most_w))
        raise RunSettingsError(
            f"{{crop_size}} is larger than the training images ever are with {{pipeline}}: at "
            f"most {most_h}x{most_w} (the largest of {sizes.count} images looked at); choose a "
            f"crop of at most {fits[0]}x{fits[1]}",
            crop_size=recipe.crop_size,
            pipeline=recipe.pipeline,
        )


def check_memory(
    model: Spike2Former,
    recipe: TrainRecipe,
    images: Images,
    context: DistributedContext,
    workers: int,
    lean: LeanTraining,
    amp_dtype: torch.dtype | None,
    may_recompute: bool = False,
) -> LeanTraining:
    """Refuse a run that would not fit in memory, naming what to lower and how far. The step is
    measured only when the coarse bound does not fit. Returns ``lean``, or with
    ``may_recompute`` ``lean`` recomputing the backbone when only that fits (the advice of a
    refusal is then for recomputing too)."""
    batch, crop = recipe.batch_size, recipe.crop_size
    room = Room.now(context.device, _processes_here(context))
    if coarse(model, images, context.device).shortfall(room, batch, workers) is None:
        return lean

    def measured(lean: LeanTraining) -> TrainingMemory:
        return estimate(
            model, crop, images, cls_cost=recipe.cls_cost, lean=lean, device=context.device,
            autocast_dtype=amp_dtype, processes=context.world_size,
        )  # fmt: skip

    need = measured(lean)
    if need.shortfall(room, batch, workers) is None:
        return lean
    if may_recompute and not lean.recompute_backbone:
        lean = dataclasses.replace(lean, recompute_backbone=True)
        need = measured(lean)
        if need.shortfall(room, batch, workers) is None:
            return lean
    short = need.shortfall(room, batch, workers)
    assert short is not None
    where, needed, free = short
    if workers and need.shortfall(room, batch, 0) is None:
        most = _most(lambda n: need.shortfall(room, batch, n) is None, workers)
        raise RunSettingsError(
            f"{{workers}} data-loading processes with {{batch_size}} need about {gib(needed)} "
            f"{where}, {gib(free)} free; lower it to {most} (0 loads in the training process)",
            workers=workers,
            batch_size=batch,
        )
    if need.validation > batch * need.per_image and need.shortfall(room, 1, 0) is not None:
        raise RunSettingsError(
            f"validating on images resized to {{test_size}} needs about {gib(needed)} {where}, "
            f"{gib(free)} free; lower it, or train without validation",
            test_size=model.config.test_size,
        )
    most = _most(lambda n: need.shortfall(room, n, workers) is None, batch)
    advice = (
        f"at most {most} image(s) of that crop fit: lower the batch size or the crop"
        if most
        else "not even one image of that crop fits: choose a smaller crop"
    )
    raise RunSettingsError(
        f"{{batch_size}} with {{crop_size}} needs about {gib(needed)} {where}, {gib(free)} free; "
        f"{advice}",
        batch_size=batch,
        crop_size=crop,
    )


def _most(fits: Callable[[int], bool], upper: int) -> int:
    """The largest n in [0, upper) for which ``fits(n)`` holds (it holds for all smaller n)."""
    low, high = 0, upper
    while low + 1 < high:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _processes_here(context: DistributedContext) -> int:
    """How many of the run's processes share this machine's memory (torchrun's local count)."""
    if not context.distributed:
        return 1
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
