"""Training data: the augmentation pipeline of a recipe and a resumable, distributed data order.

Data order: epoch after epoch, every process takes its share of a fresh shuffle
(``DistributedSampler`` with the run's seed, ``set_epoch(epoch)``, the remainder dropped), cut
into batches of ``batch_size``; iteration ``i`` is batch ``i mod B`` of epoch ``i div B``
(B = batches per epoch). The order is a function of (seed, processes, batch size, iteration)
alone, so a resumed run continues it exactly. Items are fetched as ``(index, epoch)``, and the
dataset derives each item's augmentation from (seed, epoch, index): the images do not depend on
which worker loads them either.

Errors: a sample that cannot be loaded ends the run with the dataset's one-line message, the same
with data-loading processes as without. Items are loaded through ``load_sample``, which turns a
failure into a ``SampleFailure`` record; a worker sends that record like any batch, and the main
process raises it again (torch would otherwise send the worker's traceback as the message). A
worker that dies (killed, out of memory) becomes a ``DataLoaderError``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, default_collate

from ..datasets import DatasetError, SegmentationDataset, SegmentationSample, pipeline_for
from ..datasets.transforms import (
    Compose,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomHorizontalFlip,
)
from ..errors import S2FError
from .distributed import DistributedContext

# How many batches each worker loads ahead (torch's default, named for the memory estimate).
PREFETCH_BATCHES = 2


class DataLoaderError(S2FError):
    """A data-loading process ended without a result (killed, or out of memory)."""


@dataclass(frozen=True)
class SampleFailure:
    """Why an item could not be loaded: the error's class and its one-line message (picklable,
    so a worker can send it in place of a batch)."""

    kind: type[S2FError]
    message: str

    def error(self) -> S2FError:
        return self.kind(self.message)


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


@dataclass(frozen=True)
class IterationSampler(Sampler[tuple[int, int]]):
    """Endless ``(index, epoch)`` keys for one process, from iteration ``start`` on."""

    dataset_size: int
    batch_size: int
    context: DistributedContext
    seed: int
    start: int = 0

    def __post_init__(self) -> None:
        if self.batches_per_epoch == 0:
            raise DatasetError(
                f"the training set has {self.dataset_size} images, fewer than one batch of "
                f"{self.batch_size} for each of {self.context.world_size} process(es); "
                "lower {batch_size}",
                batch_size=self.batch_size,
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_size // self.context.world_size // self.batch_size

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


def load_sample(
    dataset: SegmentationDataset, key: tuple[int, int]
) -> SegmentationSample | SampleFailure:
    """Item ``key = (index, epoch)``, or why it could not be loaded. A library error keeps its
    message; anything else raised while reading or transforming the files is named with them."""
    try:
        return dataset[key]
    except S2FError as exc:
        return SampleFailure(type(exc), str(exc))
    except MemoryError:
        files = dataset.files[key[0]]
        return SampleFailure(
            DataLoaderError,
            f"out of memory while loading {files.image}; lower the batch size or the number of "
            "data-loading processes",
        )
    except Exception as exc:  # noqa: BLE001 - a file no check caught: one line naming it
        files = dataset.files[key[0]]
        return SampleFailure(
            DatasetError,
            f"cannot load {files.image} with its label map {files.label}: "
            f"{type(exc).__name__}: {exc}".strip().replace("\n", " "),
        )


class _Loaded(Dataset):
    """``dataset`` through ``load_sample``: failures are items, not exceptions."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> SegmentationSample | SampleFailure:
        return load_sample(self.dataset, key)


def _collate(items: list[Any]) -> Any:
    """A batch, or the first failure among its items."""
    for item in items:
        if isinstance(item, SampleFailure):
            return item
    return default_collate(items)


@contextmanager
def worker_deaths() -> Iterator[None]:
    """Turn torch's report of a data-loading process that died into a ``DataLoaderError`` (torch
    raises it from ``next`` or from its SIGCHLD handler, wherever the main process then is)."""
    try:
        yield
    except RuntimeError as exc:
        if not str(exc).startswith("DataLoader worker"):
            raise
        message = " ".join(str(exc).split())
        raise DataLoaderError(
            f"{message}; if it ran out of memory, lower the batch size or the number of "
            "data-loading processes"
        ) from None


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
    """Batches ``(images [B, 3, h, w], labels [B, h, w], names)`` from iteration ``start`` on.

    A sample that cannot be loaded raises its error (a ``DatasetError``) in this process, with
    the message it would have without workers."""
    sampler = IterationSampler(len(dataset), batch_size, context, seed, start)
    loader = DataLoader(
        _Loaded(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=context.device.type == "cuda",
        drop_last=True,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed + start),
        prefetch_factor=PREFETCH_BATCHES if workers else None,
        persistent_workers=False,
    )
    return _raising(iter(loader))


def _raising(batches: Iterator[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    while True:
        with worker_deaths():
            batch = next(batches)
        if isinstance(batch, SampleFailure):
            raise batch.error()
        yield batch
