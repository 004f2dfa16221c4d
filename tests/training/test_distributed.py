"""Two gloo processes under torchrun update the network exactly as one process does on the same
global batch.

What one process has to reproduce: DDP averages the gradients of the two processes (each divides
its gradient by 2, then they are summed); the loss divides the mask terms by the mask count
averaged over the processes; and BatchNorm is *not* synchronised: each process normalises its own
half of the batch with its own statistics, and DDP then overwrites every process's running
statistics with rank 0's at the next forward. So the reference below runs the two halves one after
the other from the same buffers, keeps rank 0's updated buffers, and adds the halved gradients.
One process running both images as one batch of 2 would normalise over both and differ (that is
the official per-GPU BN, not a bug). Everything runs on one thread, so the equality is exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from spike2former import Spike2Former, load_model
from spike2former.training import TrainJob, build_optimizer, build_scheduler, evaluate
from spike2former.training.data import IterationSampler, train_pipeline
from spike2former.training.distributed import DistributedContext
from spike2former.training.lean import build_criterion, prepare_model, step_losses
from spike2former.training.loop import LEAN
from tests.training.helpers import (
    REPO,
    assert_same_tensors,
    cli_env,
    quick_args,
    read_tensors,
    write_shapes_dataset,
    write_small_model,
)

ITERS = 3


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference_training(model_file: Path, job: TrainJob, world_size: int) -> Spike2Former:
    """``job`` on one process, as ``world_size`` DDP processes of batch 1 would train it."""
    recipe = job.recipe
    model = prepare_model(load_model(model_file).train(), LEAN)
    dataset = job.data.build(
        job.data.train_split, train_pipeline(recipe.pipeline, recipe.crop_size), job.seed
    )
    criterion = build_criterion(model, recipe.cls_cost, LEAN)
    optimizer = build_optimizer(model, recipe, recipe.scaled_lr(recipe.batch_size * world_size))
    scheduler = build_scheduler(optimizer, recipe)
    orders = [
        iter(IterationSampler(len(dataset), 1, DistributedContext(rank, world_size), job.seed))
        for rank in range(world_size)
    ]
    params = list(model.parameters())
    for _ in range(recipe.iters):
        items = [dataset[next(order)] for order in orders]
        labels = [label[None] for _, label, _ in items]
        num_masks = (
            sum(
                criterion.local_mask_count(label, model.config.head.num_queries) for label in labels
            )
            / world_size
        )
        start_buffers = {name: b.clone() for name, b in model.named_buffers()}
        summed: list[torch.Tensor] | None = None
        for rank, ((image, _, _), label) in enumerate(zip(items, labels, strict=True)):
            with torch.no_grad():
                for name, buffer in model.named_buffers():
                    buffer.copy_(start_buffers[name])
            optimizer.zero_grad(set_to_none=True)
            losses = step_losses(model, criterion, image[None], label, LEAN, num_masks=num_masks)
            torch.stack(list(losses.values())).sum().backward()
            halves = [p.grad / world_size for p in params]
            summed = (
                halves if summed is None else [a + b for a, b in zip(summed, halves, strict=True)]
            )
            if rank == 0:
                rank0_buffers = {name: b.clone() for name, b in model.named_buffers()}
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(rank0_buffers[name])
        for param, grad in zip(params, summed, strict=True):  # type: ignore[arg-type]
            param.grad = grad
        torch.nn.utils.clip_grad_norm_(params, recipe.clip_grad)  # type: ignore[arg-type]
        optimizer.step()
        scheduler.step()
    return model


def test_two_gloo_processes_match_one_process(tmp_path: Path, one_thread: None) -> None:
    data = write_shapes_dataset(tmp_path / "data", train=4, val=3)
    model_file = write_small_model(tmp_path / "start.safetensors")
    run = tmp_path / "ddp"
    args = quick_args(model_file, data, run, ITERS, 1)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + ["-m", "s2f_cli", *args],
        env=cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(run)  # rank 0 alone prints
    saved = json.loads((run / "config.json").read_text())
    assert (saved["processes"], saved["total_batch_size"]) == (2, 2)

    job = TrainJob.from_dict(saved["job"])
    expected = reference_training(model_file, job, world_size=2)
    state = {k: v.detach().contiguous() for k, v in expected.state_dict().items()}
    assert_same_tensors(state, read_tensors(run / "weights" / "last.safetensors"))
    # validation: 3 images split 2 + 1 over the processes, areas summed with all_reduce
    expected.config = expected.config.replace(test_size=saved["model"]["test_size"])
    scores = evaluate(expected, job.data.build(job.data.val_split))
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (val,) = [record for record in logged if record["event"] == "val"]
    assert (val["mIoU"], val["mAcc"], val["aAcc"]) == (scores.mIoU, scores.mAcc, scores.aAcc)
