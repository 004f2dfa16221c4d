"""The loop through the library API: data order, callbacks, mixed precision, finished runs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from spike2former import load_model
from spike2former.datasets import DatasetError
from spike2former.training import DataSpec, TrainJob, fit_model_to_data, recipe_for, resume, train
from spike2former.training.data import IterationSampler
from spike2former.training.distributed import DistributedContext
from tests.training.helpers import read_tensors, write_shapes_dataset, write_small_model


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def keys(sampler: IterationSampler, count: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), count))


def test_data_order_resumes_mid_epoch_and_splits_between_processes() -> None:
    # 7 images, batch 2, one process: 3 batches per epoch (one image left out each epoch)
    full = keys(IterationSampler(7, 2, DistributedContext(), seed=0), 12)
    assert [epoch for _, epoch in full] == [0] * 6 + [1] * 6
    assert len({index for index, _ in full[:6]}) == 6
    # starting at iteration 4 (epoch 1, batch 1) continues the same sequence
    assert keys(IterationSampler(7, 2, DistributedContext(), seed=0, start=4), 4) == full[8:]
    # two processes take disjoint halves of every epoch
    ranks = [
        keys(IterationSampler(8, 2, DistributedContext(rank, 2), seed=3), 4) for rank in (0, 1)
    ]
    assert sorted(i for rank in ranks for i, _ in rank) == list(range(8))
    with pytest.raises(DatasetError, match="fewer than one batch of 4 for each of 2 process"):
        IterationSampler(7, 4, DistributedContext(0, 2), seed=0)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def on_start(self, start: int, total: int, job: TrainJob) -> None:
        self.events.append(("start", start))

    def on_log(self, record: dict[str, object]) -> None:
        self.events.append(("log", record["iter"]))  # type: ignore[arg-type]

    def on_eval(self, record: dict[str, object]) -> None:
        self.events.append(("eval", record["iter"]))  # type: ignore[arg-type]

    def on_checkpoint(self, iteration: int) -> None:
        self.events.append(("checkpoint", iteration))


def test_mixed_precision_run_with_callbacks(tmp_path: Path) -> None:
    data = DataSpec.of("folder", write_shapes_dataset(tmp_path / "data", train=2, val=1, size=32))
    start = write_small_model(tmp_path / "start.safetensors")
    model, _ = fit_model_to_data(load_model(start).train(), data, test_size=0)
    recipe = recipe_for("tiny").replace(
        iters=2, poly_end=2, warmup_iters=0, batch_size=2, crop_size=(32, 32),
        pipeline="random_crop", eval_interval=2, checkpoint_interval=1,
    )  # fmt: skip
    recorder = Recorder()
    result = train(model, TrainJob(recipe, data, amp=True, log_interval=1), tmp_path / "run",
                   callbacks=recorder)  # fmt: skip
    assert recorder.events == [
        ("start", 0),
        ("log", 1),
        ("checkpoint", 1),
        ("log", 2),
        ("eval", 2),
        ("checkpoint", 2),
    ]
    assert result.iteration == 2 and result.best_iteration == 2
    records = [r for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("NaN" not in line for line in records)
    before, after = (
        read_tensors(start),
        read_tensors(tmp_path / "run" / "weights" / "last.safetensors"),
    )
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v.float()).all() for v in after.values())

    # resuming a finished run trains nothing and changes nothing
    again = Recorder()
    finished = resume(tmp_path / "run", callbacks=again)
    assert again.events == [("start", 2)] and finished.iteration == 2
    assert not math.isnan(finished.best_miou or 0.0)
    kept = read_tensors(tmp_path / "run" / "weights" / "last.safetensors")
    assert all(torch.equal(kept[k], after[k]) for k in after)
