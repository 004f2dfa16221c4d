"""Whether a pretraining run fits in memory, checked before it starts.

The same account as segmentation training (``training.memory``): the optimiser's share of the
parameters, one step's activations per image (the live tensors of one measured step on one crop,
turned into resident bytes by ``resident_per_pixel``), the batches in flight and the decoded
images of the loading processes. A batch or crop that does not fit is refused with the sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..inference.memory import LiveTensors, MemoryLimitError, gib
from ..training.distributed import DistributedContext
from ..training.memory import (
    STEP_OVERHEAD,
    Images,
    Room,
    TrainingMemory,
    parameter_bytes,
    resident_per_pixel,
    step_undone,
)
from .classifier import BackboneClassifier
from .recipe import PretrainRecipe


def live_bytes_per_pixel(model: BackboneClassifier, crop: int, device: torch.device) -> float:
    """Peak bytes of live tensors per input pixel of one training step on one ``crop`` image;
    the network is left as it was."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, crop, crop, generator=generator).to(device)
    target = torch.zeros(1, dtype=torch.long, device=device)
    with step_undone(model):
        model.train()
        with LiveTensors() as live:
            F.cross_entropy(model(images), target).backward()
    return live.peak / (crop * crop)


def check_memory(
    model: BackboneClassifier,
    recipe: PretrainRecipe,
    context: DistributedContext,
    workers: int,
    largest_image: int,
) -> None:
    """Raise ``MemoryLimitError`` unless a step of ``recipe.batch_size`` crops, with ``workers``
    loading images of up to ``largest_image`` pixels, fits in this process's share of memory."""
    device = context.device
    model.to(device)
    crop = recipe.crop_size
    per_pixel = resident_per_pixel(live_bytes_per_pixel(model, crop, device), device)
    copies = 4 if context.distributed else 3
    memory = TrainingMemory(
        fixed=copies * parameter_bytes(model) + STEP_OVERHEAD,
        per_image=per_pixel * crop * crop,
        validation=0.0,
        images=Images(crop=crop * crop, train_image=largest_image),
        on_device=device.type != "cpu",
    )
    shortfall = memory.shortfall(Room.now(device, context.world_size), recipe.batch_size, workers)
    if shortfall is not None:
        where, needed, free = shortfall
        raise MemoryLimitError(
            f"pretraining {recipe.batch_size} crops of {crop}x{crop} per step with {workers} "
            f"loading processes needs about {gib(needed)} {where}, {gib(free)} are free; "
            "lower the batch size, the crop size or the loading processes"
        )
