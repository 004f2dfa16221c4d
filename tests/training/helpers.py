"""Builders for the training tests: a small ``folder`` dataset of shapes, a small network saved as
a model file, and the command line that trains it quickly (one thread, no workers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open

from spike2former import build_model, save_model
from tests.helpers import small_config

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
        "--out", str(out),
        "-q",
        *extra,
    ]  # fmt: skip


def cli_env() -> dict[str, str]:
    """Environment for ``python -m s2f_cli`` subprocesses: one thread, the repository importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", S2F_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


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
