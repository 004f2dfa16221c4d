"""Training data: the augmentation pipeline of a recipe and a resumable, distributed data order.

Data order: epoch after epoch, every process takes its share of a fresh shuffle
(``DistributedSampler`` with the run's seed, ``set_epoch(epoch)``, the remainder dropped), cut
into batches of ``batch_size``; iteration ``i`` is batch ``i mod B`` of epoch ``i div B``
(B = batches per epoch). The order is a function of (seed, processes, batch size, iteration)
alone, so a resumed run continues it exactly. Items are fetched as ``(index, epoch)``, and the
dataset derives each item's augmentation from (seed, epoch, index): the images do not depend on
which worker loads them either.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..datasets import DatasetError, SegmentationDataset, pipeline_for
from ..datasets.transforms import (
    Compose,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomHorizontalFlip,
)
from .distributed import DistributedContext


def train_pipeline(name: str, crop_size: tuple[int, int]) -> Compose:
    """A recipe's pipeline: an official one (``datasets.pipeline_for``) or ``random_crop``
    (crop with cat_max_ratio 0.75, flip, photometric distortion, normalise, pad; no resizing)."""
    if name == "random_crop":
        return Compose(
            [
                RandomCrop(crop_size, cat_max_ratio=0.75),
                RandomHorizontalFlip(0.5),
                PhotoMetricDistortion(),
                Normalize(),
                Pad(size=crop_size),
            ]
        )
    return pipeline_for(name, crop_size)


class IterationSampler(Sampler[tuple[int, int]]):
    """Endless ``(index, epoch)`` keys for one process, from iteration ``start`` on."""

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        context: DistributedContext,
        seed: int,
        start: int = 0,
    ) -> None:
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.context = context
        self.seed = seed
        self.start = start
        self.batches_per_epoch = dataset_size // context.world_size // batch_size
        if self.batches_per_epoch == 0:
            raise DatasetError(
                f"the training set has {dataset_size} images, fewer than one batch of "
                f"{batch_size} for each of {context.world_size} process(es); lower --batch-size"
            )

    def epoch_indices(self, epoch: int) -> list[int]:
        """This process's items of ``epoch``, in order, whole batches only."""
        sampler = DistributedSampler(
            range(self.dataset_size),
            num_replicas=self.context.world_size,
            rank=self.context.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return list(sampler)[: self.batches_per_epoch * self.batch_size]

    def position(self, iteration: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) of ``iteration``."""
        return divmod(iteration, self.batches_per_epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, batch = self.position(self.start)
        skip = batch * self.batch_size
        while True:
            for index in self.epoch_indices(epoch)[skip:]:
                yield index, epoch
            epoch, skip = epoch + 1, 0


def _seed_worker(worker_id: int) -> None:
    # Global generators of a worker, for any transform that uses them (ours draw only from the
    # per-item generator the dataset hands them).
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def train_loader(
    dataset: SegmentationDataset,
    batch_size: int,
    context: DistributedContext,
    seed: int,
    start: int,
    workers: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """Batches ``(images [B, 3, h, w], labels [B, h, w], names)`` from iteration ``start`` on."""
    sampler = IterationSampler(len(dataset), batch_size, context, seed, start)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=context.device.type == "cuda",
        drop_last=True,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed + start),
        persistent_workers=False,
    )
    return iter(loader)
