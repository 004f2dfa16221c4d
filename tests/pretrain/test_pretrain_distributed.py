"""Two gloo processes under torchrun pretrain exactly as one process does on the same global
batch, and their validation top-1 / top-5 equal one process's."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from spike2former.presets import get_preset
from spike2former.pretrain import BackboneClassifier, PretrainJob, load_classifier
from spike2former.pretrain.backbone_file import save_classifier
from spike2former.pretrain.loop import _datasets, evaluate_accuracy
from spike2former.pretrain.recipe import build_optimizer, build_scheduler
from spike2former.training.data import IterationSampler
from spike2former.training.distributed import DistributedContext
from tests.pretrain.helpers import pretrain_args, write_image_folder
from tests.training.helpers import (
    assert_same_tensors,
    ddp_gradients,
    read_tensors,
    run_torchrun,
)

ITERS = 3


def _loss(
    model: torch.nn.Module, smoothing: float, batch: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    images, labels = batch
    return F.cross_entropy(model(images), labels, label_smoothing=smoothing)


def _reference(start: Path, job: PretrainJob, world_size: int) -> torch.nn.Module:
    """``job`` on one process as ``world_size`` DDP processes of batch 1 run it: each image
    normalised with its own BatchNorm statistics from the same buffers, rank 0's buffers kept,
    the gradients averaged (see ``tests.training.helpers.ddp_reference``)."""
    model = load_classifier(start).train()
    train_set, _ = _datasets(job, model.class_names)
    recipe = job.recipe
    lr = recipe.peak_lr(recipe.batch_size * world_size)
    optimizer = build_optimizer(model, recipe, lr)
    scheduler = build_scheduler(optimizer, recipe, lr)
    orders = [
        iter(IterationSampler(len(train_set), 1, DistributedContext(rank, world_size), job.seed))
        for rank in range(world_size)
    ]
    for _ in range(recipe.iters):
        items = [train_set[next(order)] for order in orders]
        batches = [(image[None], label[None]) for image, label, _ in items]
        ddp_gradients(model, batches, partial(_loss, model, recipe.label_smoothing))
        optimizer.step()
        scheduler.step()
    return model


def test_two_gloo_processes_match_one_process(tmp_path: Path, one_thread: None) -> None:
    data = write_image_folder(tmp_path / "data", train=2, val=3)
    run = tmp_path / "ddp"
    args = pretrain_args(data, run, ITERS, "--batch-size", "1", "--eval-interval", "3", "-q")
    result = run_torchrun(2, args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(run)  # rank 0 alone prints
    saved = json.loads((run / "config.json").read_text())
    assert saved["processes"] == 2
    job = PretrainJob.from_dict(saved["job"])

    # the run's starting weights are its iteration-0 checkpoint, gone by now: rebuild them
    torch.manual_seed(job.seed)
    start = BackboneClassifier(get_preset("tiny"), tuple(saved["classes"]))
    start_file = save_classifier(start, tmp_path / "start.safetensors")
    expected = _reference(start_file, job, world_size=2)
    expected_file = save_classifier(expected, tmp_path / "expected.safetensors")
    assert_same_tensors(
        read_tensors(expected_file), read_tensors(run / "weights" / "last.safetensors")
    )
    # validation: 9 images split 5 + 4 over the processes, counts summed
    _, val_set = _datasets(job, expected.class_names)
    top1, top5 = evaluate_accuracy(expected, val_set, 1)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (val,) = [record for record in logged if record["event"] == "val"]
    assert (val["top1"], val["top5"]) == (top1, top5)
