"""Where a fashion-scenes segmenter goes wrong: finding the objects, or naming them.

    python benchmarks/fashion_errors.py MODEL SCENES [--split test] [--threads 2]

Runs MODEL (a model file or a registered name) on a split of a scene set built by
``fashion_scenes.py`` and prints one JSON object that separates the two kinds of error mIoU
mixes together:

- ``mIoU``: the usual score, from the pixel confusion matrix (what ``s2f eval`` prints);
- ``foreground_iou``: class-agnostic IoU of "some product" against background (shapes);
- ``class_accuracy_on_found``: of the product pixels predicted as some product, the share
  given the right class (naming);
- ``mIoU_right_classes``: mIoU once every product pixel predicted as a product is given its
  true class, i.e. with the naming errors removed and the shape errors kept: the score that
  perfect naming would reach with these shapes;
- ``object_accuracy``: share of the split's objects (``objects.csv``) whose visible pixels get
  their true class by majority, and per class; ``object_found``: share whose majority is some
  product at all;
- ``confusion``: the pixel confusion matrix (rows true class, columns predicted).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from spike2former import Predictor, load_model
from spike2former.datasets.io import read_image, read_label
from spike2former.errors import S2FError
from spike2former.metrics import IoUMetric, MetricInputError
from spike2former.weights import resolve_model


def _objects(scenes: Path, split: str) -> dict[str, list[dict[str, int]]]:
    by_scene: dict[str, list[dict[str, int]]] = {}
    with (scenes / "objects.csv").open(newline="") as file:
        for row in csv.DictReader(file):
            if row["split"] == split:
                fields = ("class_id", "x", "y", "width", "height")
                by_scene.setdefault(row["scene"], []).append({k: int(row[k]) for k in fields})
    return by_scene


def _majority_classes(
    predicted: np.ndarray, label: np.ndarray, objects: list[dict[str, int]]
) -> list[tuple[int, int | None]]:
    """``(true class, majority predicted class)`` of each object's visible pixels (those of its
    class inside its box; ``None`` when none is visible)."""
    height, width = label.shape
    result = []
    for obj in objects:
        top, left = max(obj["y"], 0), max(obj["x"], 0)
        bottom, right = min(obj["y"] + obj["height"], height), min(obj["x"] + obj["width"], width)
        visible = label[top:bottom, left:right] == obj["class_id"]
        votes = predicted[top:bottom, left:right][visible]
        majority = int(np.bincount(votes).argmax()) if votes.size else None
        result.append((obj["class_id"], majority))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("scenes", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        predictor = Predictor(load_model(resolve_model(args.model)))
    except S2FError as error:
        sys.exit(f"error: {error}")
    classes = predictor.num_classes
    images = sorted((args.scenes / "images" / args.split).glob("*.jpg"))
    if not images:
        sys.exit(f"error: no scenes in {args.scenes / 'images' / args.split}")
    objects = _objects(args.scenes, args.split)
    confusion = np.zeros(classes**2, np.int64)  # true * classes + predicted
    scored, renamed = IoUMetric(classes), IoUMetric(classes)  # as predicted; names corrected
    votes: list[tuple[int, int | None]] = []
    for path in images:
        label = read_label(args.scenes / "annotations" / args.split / f"{path.stem}.png")
        [prediction] = predictor.predict([read_image(path)])
        predicted = prediction.labels.astype(np.int64)
        truth = label.astype(np.int64)
        right_names = np.where((truth > 0) & (predicted > 0), truth, predicted)
        try:
            scored.update(torch.from_numpy(predicted), torch.from_numpy(truth))
            renamed.update(torch.from_numpy(right_names), torch.from_numpy(truth))
        except MetricInputError as error:
            sys.exit(f"error: {path.stem}: {error}")
        confusion += np.bincount(truth.ravel() * classes + predicted.ravel(), None, classes**2)
        votes += _majority_classes(predicted, truth, objects.get(path.stem, []))
    confusion = confusion.reshape(classes, classes)

    found = confusion[1:, 1:].sum()  # product pixels predicted as some product
    false_products, missed = confusion[0, 1:].sum(), confusion[1:, 0].sum()
    counted = [(true, guess) for true, guess in votes if guess is not None]
    per_class = {}
    for cls in range(1, classes):
        guesses = [guess for true, guess in counted if true == cls]
        if guesses:
            per_class[predictor.class_names[cls]] = round(
                100 * sum(g == cls for g in guesses) / len(guesses), 2
            )
    report = {
        "model": args.model,
        "scenes": len(images),
        "objects": len(counted),
        "mIoU": round(scored.compute().mIoU, 2),
        "foreground_iou": round(100 * found / max(found + false_products + missed, 1), 2),
        "class_accuracy_on_found": round(100 * np.trace(confusion[1:, 1:]) / max(found, 1), 2),
        "mIoU_right_classes": round(renamed.compute().mIoU, 2),
        "object_accuracy": round(100 * sum(t == g for t, g in counted) / max(len(counted), 1), 2),
        "object_found": round(100 * sum(g != 0 for _, g in counted) / max(len(counted), 1), 2),
        "object_accuracy_per_class": per_class,
        "class_names": list(predictor.class_names),
        "confusion": confusion.tolist(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
