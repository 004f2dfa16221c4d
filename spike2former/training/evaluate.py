"""Dataset evaluation as the official test path, whole-image or sliding-window, on one or many
processes.

Per image (architecture.md §7): keep-ratio resize to the test size (short side ``test_size``,
long side at most 2048, as the ``Predictor``), normalise, run the network in evaluation mode, turn
the last stage into per-class scores at the network input size (``combine_masks``), resize them
bilinearly to the label's size and take the arg-max. The metric is mmseg's ``IoUMetric``:
per-class areas summed over the whole set (255 ignored) and scored once at the end.

``mode="slide"`` is mmseg's ``slide_inference``: windows of ``crop_size`` every ``stride`` pixels
over the resized image (the last row and column of windows aligned to the border), the scores of
overlapping windows averaged. Defaults: a square window of the test size, and a stride of two
thirds of it, rounded down (mmseg's ADE20K setting, crop 512 and stride 341, at the model's test
size). The official Spike2Former configs evaluate whole images.

Under data parallelism each process takes every ``world_size``-th image and the areas are summed
with ``all_reduce``; every process returns the same scores.

``check_memory`` refuses, from the images' headers, a dataset with an image too large to evaluate
in the memory there is (``inference.memory``), before anything is run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..datasets import SegmentationDataset
from ..inference.memory import DEFAULT_MAX_MEMORY
from ..inference.pass_memory import PassMemory, reference_bound
from ..inference.predictor import label_dtype, scores_to_labels
from ..inference.preprocess import network_input_size, normalize, resize_image
from ..metrics import IoUMetric, SegmentationScores
from ..modeling.spike2former import combine_masks
from .distributed import DistributedContext, all_reduce_sum_

Mode = Literal["whole", "slide"]
# Called with each image's name and predicted label map [H, W] (at the label's size).
PredictionCallback = Callable[[str, np.ndarray], None]


def default_stride(crop_size: tuple[int, int]) -> tuple[int, int]:
    """Two thirds of the window, rounded down (at least 1): 341 for 512 (mmseg's ADE20K slide
    setting)."""
    return (max(1, crop_size[0] * 2 // 3), max(1, crop_size[1] * 2 // 3))


@dataclass(frozen=True)
class EvalPlan:
    """How each image is evaluated: resized to the short side ``test_size`` (0: its own size),
    then scored whole or, in ``mode="slide"``, in windows of ``crop_size`` every ``stride``
    pixels (``crop_size`` and ``stride`` unused for whole images)."""

    test_size: int
    mode: Mode
    crop_size: tuple[int, int]
    stride: tuple[int, int]

    @classmethod
    def of(
        cls,
        config: ModelConfig,
        test_size: int | None = None,
        mode: Mode = "whole",
        crop_size: tuple[int, int] | None = None,
        stride: tuple[int, int] | None = None,
    ) -> EvalPlan:
        """The plan of ``evaluate``'s arguments: the model's test size, a square window of the
        test size and ``default_stride`` where they are not given."""
        if mode not in ("whole", "slide"):
            raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
        size = config.test_size if test_size is None else test_size
        window = crop_size or (size, size)
        return cls(size, mode, window, stride or default_stride(window))


def whole_scores(model: nn.Module, images: Tensor) -> Tensor:
    """Normalised ``[B, 3, H, W]`` -> per-class scores ``[B, K, H, W]`` (last stage)."""
    out = model(images)
    return combine_masks(out["class_logits"], out["mask_logits"], images.shape[-2:])


def slide_scores(
    model: nn.Module, images: Tensor, crop_size: tuple[int, int], stride: tuple[int, int]
) -> Tensor:
    """mmseg ``slide_inference``: window scores pasted into place and averaged where windows
    overlap. ``images [B, 3, H, W]`` -> ``[B, K, H, W]``."""
    crop_h, crop_w = crop_size
    stride_h, stride_w = stride
    batch, _, height, width = images.shape
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total: Tensor | None = None
    count = images.new_zeros((batch, 1, height, width))
    for row in range(rows):
        for col in range(cols):
            y2 = min(row * stride_h + crop_h, height)
            x2 = min(col * stride_w + crop_w, width)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            window = whole_scores(model, images[:, :, y1:y2, x1:x2])
            if total is None:
                total = images.new_zeros((batch, window.shape[1], height, width))
            total += F.pad(window, (x1, width - x2, y1, height - y2))
            count[:, :, y1:y2, x1:x2] += 1
    assert total is not None
    return total / count


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    dataset: SegmentationDataset,
    *,
    context: DistributedContext | None = None,
    test_size: int | None = None,
    mode: Mode = "whole",
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    on_prediction: PredictionCallback | None = None,
    on_image: Callable[[], None] | None = None,
) -> SegmentationScores:
    """Score ``model`` (a ``Spike2Former``, run in evaluation mode) on ``dataset``.

    ``dataset`` must have no transform (items are the stored RGB image and label ids).
    ``test_size`` defaults to the model's ``config.test_size``. ``on_prediction`` receives each
    of this process's label maps; ``on_image`` is called after each image (progress).
    The model is left in the mode it was in.
    """
    context = context or _local(model)
    config = model.config
    plan = EvalPlan.of(config, test_size, mode, crop_size, stride)
    num_classes = config.head.num_classes
    names = config.class_names or _padded_names(dataset.class_names, num_classes)
    metric = IoUMetric(num_classes, dataset.ignore_index, names)
    dtype = next(model.parameters()).dtype
    with _evaluation_mode(model):
        for index in range(context.rank, len(dataset), context.world_size):
            image, label, name = dataset[index]
            batch = normalize(resize_image(image, plan.test_size), dtype)[None].to(context.device)
            if plan.mode == "whole":
                scores = whole_scores(model, batch)
            else:
                scores = slide_scores(model, batch, plan.crop_size, plan.stride)
            prediction = scores_to_labels(scores[0], label.shape[:2]).cpu()
            metric.update(prediction, torch.from_numpy(label.astype(np.int64)))
            if on_prediction is not None:
                on_prediction(name, prediction.numpy().astype(label_dtype(num_classes)))
            if on_image is not None:
                on_image()
    all_reduce_sum_(metric.areas, context)
    return metric.compute()


def check_memory(
    model: nn.Module,
    dataset: SegmentationDataset,
    plan: EvalPlan,
    *,
    context: DistributedContext | None = None,
    max_memory: float | None = DEFAULT_MAX_MEMORY,
) -> None:
    """Raise ``MemoryLimitError`` when an image of this process's share of ``dataset``, evaluated
    by ``plan``, needs more memory than ``max_memory`` (bytes of host memory; ``None``: what is
    free) and the machine allow; ``DatasetError`` for an image whose header cannot be read or
    disagrees with its label map's. Only headers are read; the network runs once, on a small
    input, when the coarse bound does not fit."""
    context = context or _local(model)
    config = model.config
    size, window = plan.test_size, plan.crop_size
    dtype = next(model.parameters()).dtype
    memory = PassMemory(
        lambda batch: whole_scores(model, batch),
        dtype,
        context.device,
        max_memory,
        reference_bound(config, dtype),
    )
    # sum, window, its padded copy and the quotient: [K, H, W] each, and the count [1, H, W]
    held_per_pixel = (3 * config.head.num_classes + 1) * dtype.itemsize
    sizes: dict[tuple[int, int], int] = {}
    for index in range(context.rank, len(dataset), context.world_size):
        sizes.setdefault(dataset.check_sizes(index), index)
    with _evaluation_mode(model):
        for (height, width), index in sizes.items():
            net_h, net_w = network_input_size(height, width, size)
            what = f"image {dataset.files[index].image} ({height}x{width}) at {{test_size}}"
            network, held = (net_h, net_w), 0.0
            if plan.mode == "slide":
                what += f" ({net_h}x{net_w}, in windows of {{crop_size}})"
                network = (min(window[0], net_h), min(window[1], net_w))
                held = held_per_pixel * net_h * net_w
            else:
                what += f" ({net_h}x{net_w} into the network)"
            memory.check(
                what,
                network,
                max(height * width, net_h * net_w),
                held,
                test_size=size,
                crop_size=window,
            )


def _local(model: nn.Module) -> DistributedContext:
    """One process, on the model's device."""
    return DistributedContext(device=next(model.parameters()).device)


@contextmanager
def _evaluation_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in evaluation mode, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _padded_names(names: tuple[str, ...], num_classes: int) -> tuple[str, ...]:
    if len(names) >= num_classes:
        return names[:num_classes]
    return (*names, *(f"unused_{i}" for i in range(len(names), num_classes)))
