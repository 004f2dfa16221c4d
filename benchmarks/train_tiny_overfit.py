"""Overfit the ``tiny`` preset on a small synthetic dataset on the CPU: can the recipe, the loss and
the loop drive a spiking network to a high mIoU?

    python benchmarks/train_tiny_overfit.py --iters 1000 --output /tmp/overfit

Builds ``--images`` images of ``--size`` pixels with a background and four kinds of shapes
(box, disc, stripe, triangle; 5 classes) as a ``folder`` dataset whose validation split holds the
same images, trains ``tiny`` (5-class head) from scratch with the tiny recipe's optimiser and the
``random_crop`` pipeline (flip and photometric distortion, no rescaling), and prints one JSON line:
iterations, minutes, images/s and the validation mIoU over time. Equivalent command::

    s2f train --preset tiny --num-classes 5 --data DATA --format folder --pipeline random_crop \
        --crop-size SIZE --batch-size 4 --iters N --warmup-iters 50 --poly-end N --val-split val
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from machine import machine

from spike2former import build_model
from spike2former.training import DataSpec, TrainJob, fit_model_to_data, recipe_for, train

CLASSES = ("background", "box", "disc", "stripe", "triangle")


def shapes_image(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB image and label map: textured background and one shape of each kind, in a random
    colour per shape (so colour alone does not give the class away)."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    top, left = rng.integers(0, size // 2, 2)
    height, width = rng.integers(size // 5, size // 2, 2)
    label[top : top + height, left : left + width] = 1
    cy, cx = rng.integers(size // 5, 4 * size // 5, 2)
    label[(yy - cy) ** 2 + (xx - cx) ** 2 < int(rng.integers(size // 10, size // 5)) ** 2] = 2
    row = int(rng.integers(0, size - size // 8))
    label[row : row + size // 10, :] = np.where(
        label[row : row + size // 10, :] == 0, 3, label[row : row + size // 10, :]
    )
    ty, tx = rng.integers(size // 4, 3 * size // 4, 2)
    side = int(rng.integers(size // 6, size // 3))
    triangle = (yy >= ty) & (yy < ty + side) & (np.abs(xx - tx) <= (yy - ty) // 2)
    label[triangle] = 4
    image = rng.integers(20, 60, (size, size, 3))
    for cls in range(1, len(CLASSES)):
        image[label == cls] = rng.integers(60, 255, 3)
    image += rng.integers(-15, 15, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_dataset(root: Path, count: int, size: int) -> Path:
    for split in ("train", "val"):
        for index in range(count):
            image, label = shapes_image(index, size)
            for folder, array in (("images", image[..., ::-1]), ("annotations", label)):
                path = root / folder / split / f"{index:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), np.ascontiguousarray(array))
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--eval-interval", type=int, default=250)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    parser.add_argument("--output", type=Path, default=Path("/tmp/s2f_overfit"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    shutil.rmtree(args.output, ignore_errors=True)
    data = DataSpec.of("folder", write_dataset(args.output / "data", args.images, args.size))
    torch.manual_seed(0)
    model, _ = fit_model_to_data(build_model("tiny"), data, len(CLASSES), test_size=0)
    recipe = recipe_for("tiny").replace(
        iters=args.iters,
        poly_end=args.iters,
        warmup_iters=args.warmup,
        lr=args.lr,
        batch_size=args.batch,
        crop_size=(args.size, args.size),
        pipeline="random_crop",
        eval_interval=args.eval_interval,
        checkpoint_interval=args.iters,
    )
    job = TrainJob(recipe, data, log_interval=50)
    start = time.perf_counter()
    result = train(model, job, args.output / "run", workers=args.workers)
    minutes = (time.perf_counter() - start) / 60
    records = [json.loads(line) for line in (args.output / "run" / "metrics.jsonl").open()]
    val = [(r["iter"], round(r["mIoU"], 2)) for r in records if r["event"] == "val"]
    speeds = [r["images_per_s"] for r in records if r["event"] == "train"]
    print(
        json.dumps(
            {
                "preset": "tiny",
                "images": args.images,
                "size": args.size,
                "iterations": args.iters,
                "batch": args.batch,
                "minutes": round(minutes, 2),
                "images_per_s": round(float(np.median(speeds)), 2),
                "mIoU_by_iteration": val,
                "final_mIoU": val[-1][1] if val else None,
                "best_mIoU": result.best_miou,
                **machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
