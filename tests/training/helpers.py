"""Builders for the training tests: a small ``folder`` dataset of shapes, a small network saved as
a model file, the command line that trains it quickly (one thread, no workers), the ``torchrun``
command line that starts it on several processes, and the one-process reference those processes
must reproduce."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from safetensors import safe_open

from spike2former import Spike2Former, build_model, load_model, save_model
from spike2former.presets import get_preset
from spike2former.training import TrainJob, build_optimizer, build_scheduler
from spike2former.training.data import IterationSampler, train_pipeline
from spike2former.training.distributed import DistributedContext
from spike2former.training.lean import build_criterion, prepare_model, step_losses
from spike2former.training.loop import LEAN
from tests.helpers import small_config

T = TypeVar("T")
CLASSES = ("background", "box", "disc")
COLOURS = ((30, 30, 30), (200, 40, 40), (40, 40, 200))
REPO = Path(__file__).resolve().parents[2]


def shapes_sample(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB ``[size, size, 3]`` with a box (class 1) and a disc (class 2) on a dark background
    (class 0), a little noise, and the matching label map."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)
    top, left = rng.integers(0, size // 2, 2)
    height, width = rng.integers(size // 4, size // 2, 2)
    label[top : top + height, left : left + width] = 1
    cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
    radius = int(rng.integers(size // 8, size // 4))
    yy, xx = np.mgrid[:size, :size]
    label[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = 2
    image = np.asarray(COLOURS, np.int64)[label] + rng.integers(-20, 20, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_shapes_dataset(
    root: Path, train: int = 6, val: int = 2, size: int = 48, classes: bool = True
) -> Path:
    """``root/images/{train,val}/NNN.png``, ``root/annotations/...`` and ``classes.txt``."""
    for split, count, offset in (("train", train, 0), ("val", val, 1000)):
        for index in range(count):
            image, label = shapes_sample(index + offset, size)
            for folder, array in (("images", image[..., ::-1]), ("annotations", label)):
                path = root / folder / split / f"{index:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(path), np.ascontiguousarray(array))
    if classes:
        (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def write_small_model(path: Path, num_classes: int = 3, seed: int = 0) -> Path:
    """A freshly initialised small network (``small_config``) as an s2f model file."""
    torch.manual_seed(seed)
    return save_model(build_model(small_config(head={"num_classes": num_classes})), path)


def write_small_run_files(root: Path, train: int) -> dict[str, Path]:
    """Under ``root``, what a quick run trains on: ``data``, a shapes dataset of ``train``
    32-pixel training images and one validation image, and ``model``, the small network."""
    return {
        "data": write_shapes_dataset(root / "data", train=train, val=1, size=32),
        "model": write_small_model(root / "small.safetensors"),
    }


def write_preset_model(path: Path, preset: str, num_classes: int = 3, seed: int = 0) -> Path:
    """A freshly initialised network of ``preset`` with ``num_classes`` classes as a model file
    (``--model`` then starts from known weights, which the test can start its reference from)."""
    torch.manual_seed(seed)
    config = get_preset(preset)
    config = config.replace(head=dataclasses.replace(config.head, num_classes=num_classes))
    return save_model(build_model(config), path)


def quick_args(
    model: Path, data: Path, out: Path, iters: int = 6, batch_size: int = 2, *extra: str
) -> list[str]:
    """``s2f train`` arguments for a few fast, deterministic iterations of the small network
    (``extra`` options come last, so they win)."""
    return [
        "train",
        "--model", str(model),
        "--data", str(data),
        "--format", "folder",
        "--iters", str(iters),
        "--batch-size", str(batch_size),
        "--crop-size", "32",
        "--pipeline", "random_crop",
        "--warmup-iters", "2" if iters > 2 else "0",
        "--poly-end", str(iters),
        "--eval-interval", "4",
        "--checkpoint-interval", "2",
        "--log-interval", "2",
        "--workers", "0",
        "--threads", "1",
        "--output", str(out),
        "-q",
        *extra,
    ]  # fmt: skip


def cli_env() -> dict[str, str]:
    """Environment for ``python -m s2f_cli`` subprocesses: one thread, the repository importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", S2F_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def torchrun(*launch: str) -> list[str]:
    """``torchrun`` with the options ``launch``, as this interpreter's module (the same torch)."""
    return [sys.executable, "-m", "torch.distributed.run", *launch]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (for a rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cli(args: list[str]) -> subprocess.Popen[str]:
    """``python -m s2f_cli ARGS`` started in the background (to be interrupted or killed)."""
    return subprocess.Popen(
        [sys.executable, "-m", "s2f_cli", *args],
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s2f_cli", *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def assert_same_tensors(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == actual.keys()
    different = [key for key in expected if not torch.equal(expected[key], actual[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def ddp_reference(model_file: Path, job: TrainJob, world_size: int) -> Spike2Former:
    """``job`` on one process, as ``world_size`` DDP processes of batch 1 would train it.

    DDP averages the processes' gradients; the loss divides the mask terms by the mask count
    averaged over the processes; BatchNorm is *not* synchronised: each process normalises its own
    image with its own statistics, and DDP then overwrites every process's running statistics
    with rank 0's at the next forward. So this runs the images one after the other from the same
    buffers, keeps rank 0's updated buffers and adds the gradients divided by ``world_size``. One
    process running all images as one batch would normalise over them all and differ (the
    official per-GPU BN, not a bug). On one thread, as the processes, the equality is exact.
    """
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
        batches = [(image[None], label) for (image, _, _), label in zip(items, labels, strict=True)]
        ddp_gradients(model, batches, partial(_segmentation_loss, model, criterion, num_masks))
        torch.nn.utils.clip_grad_norm_(params, recipe.clip_grad)  # type: ignore[arg-type]
        optimizer.step()
        scheduler.step()
    return model


def _segmentation_loss(
    model: Spike2Former,
    criterion: torch.nn.Module,
    num_masks: float,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    losses = step_losses(model, criterion, *batch, LEAN, num_masks=num_masks)
    return torch.stack(list(losses.values())).sum()


def ddp_gradients(
    model: torch.nn.Module, batches: list[T], loss_of: Callable[[T], torch.Tensor]
) -> None:
    """Gradients and BatchNorm statistics as ``len(batches)`` DDP processes leave them, each
    with the loss ``loss_of(batch)`` of its own batch: every loss computed from the same
    buffers, rank 0's updated buffers kept, the gradients averaged."""
    world_size = len(batches)
    params = list(model.parameters())
    start_buffers = {name: b.clone() for name, b in model.named_buffers()}
    summed = [torch.zeros_like(p) for p in params]
    for rank, batch in enumerate(batches):
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(start_buffers[name])
        for param in params:
            param.grad = None
        loss_of(batch).backward()
        summed = [s + p.grad / world_size for s, p in zip(summed, params, strict=True)]
        if rank == 0:
            rank0_buffers = {name: b.clone() for name, b in model.named_buffers()}
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(rank0_buffers[name])
    for param, grad in zip(params, summed, strict=True):
        param.grad = grad


def kill_when(process: subprocess.Popen[str], path: Path, timeout: float = 120) -> None:
    """``kill -9`` ``process`` as soon as ``path`` exists, and check it died of it."""
    deadline = time.monotonic() + timeout
    while not path.exists() and process.poll() is None:
        assert time.monotonic() < deadline, f"no {path.name} within {timeout:.0f} s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def kill_and_resume(
    args: Callable[[Path], list[str]],
    resume: list[str],
    full_run: Path,
    killed_run: Path,
    iters: int,
) -> subprocess.CompletedProcess[str]:
    """Start ``args(full_run)`` and ``args(killed_run)`` together, ``kill -9`` the second once it
    has written the weights of its checkpoint at iteration 2 (short of ``iters``), wherever it
    then is, and run ``resume``. Both runs must then end, with the same last and best weights;
    returns the resumed one."""
    full = start_cli(args(full_run))
    victim = start_cli(args(killed_run))
    kill_when(victim, killed_run / "checkpoint" / "iter_00000002.safetensors")
    assert not (killed_run / "checkpoint" / f"iter_{iters:08d}.safetensors").exists()
    resumed = run_cli(resume)
    assert resumed.returncode == 0, resumed.stderr
    _, errors = full.communicate(timeout=120)
    assert full.returncode == 0, errors
    for name in ("last", "best"):
        assert_same_tensors(
            read_tensors(full_run / "weights" / f"{name}.safetensors"),
            read_tensors(killed_run / "weights" / f"{name}.safetensors"),
        )
    return resumed


def run_torchrun(processes: int, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node PROCESSES -m s2f_cli ARGS``, output captured."""
    return subprocess.run(
        torchrun("--standalone", "--nproc_per_node", str(processes), "-m", "s2f_cli", *args),
        env=cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state as a model file stores it (detached, contiguous)."""
    return {key: value.detach().contiguous() for key, value in model.state_dict().items()}
