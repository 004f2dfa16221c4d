"""Where a fashion-scenes segmenter goes wrong: finding the objects, or naming them.

    python benchmarks/fashion_errors.py MODEL SCENES [--split test] [--threads 2]

Runs MODEL (a model file or a registered name) on a split of a scene set built by
``fashion_scenes.py`` and prints one JSON object that separates the two kinds of error mIoU
mixes together:

- ``mIoU``: the usual score, from the pixel confusion matrix (what ``s2f eval`` prints: the
  network runs unfused, as there, since the fused one of ``s2f segment`` rounds differently and
  moves a few pixels near class boundaries);
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

With ``--backbone FILE`` (an ``s2f pretrain`` backbone file, e.g. the one the segmenter started
from) it also asks that classifier to name the same objects, each cut out of its scene as a
square around its box with the object filling 90 % of the side (the framing that named the
validation scenes' objects best; the products it was trained on fill 45-90 %):
``backbone_object_accuracy`` and per class. Naming that the backbone gets right and the
segmenter gets wrong is lost in the segmentation head, not missing from the features.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from spike2former import Predictor, load_model
from spike2former.datasets.io import read_image, read_label
from spike2former.errors import S2FError
from spike2former.metrics import IoUMetric, MetricInputError
from spike2former.pretrain.augment import EvalTransform
from spike2former.pretrain.backbone_file import load_classifier
from spike2former.weights import resolve_model


def _objects(scenes: Path, split: str) -> dict[str, list[dict[str, int]]]:
    by_scene: dict[str, list[dict[str, int]]] = {}
    with (scenes / "objects.csv").open(newline="") as file:
        for row in csv.DictReader(file):
            if row["split"] == split:
                fields = ("class_id", "x", "y", "width", "height")
                by_scene.setdefault(row["scene"], []).append({k: int(row[k]) for k in fields})
    return by_scene


# Side of the square cut around an object's box, as a multiple of the box's longer side.
CROP_FRAMING = 1 / 0.9


def _object_crops(image: np.ndarray, objects: list[dict[str, int]]) -> list[np.ndarray]:
    """The square around each object's box (edges mirrored where it leaves the scene)."""
    sides = [max(round(max(o["width"], o["height"]) * CROP_FRAMING), 1) for o in objects]
    margin = max(sides)
    padded = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="reflect")
    crops = []
    for obj, side in zip(objects, sides, strict=True):
        top = obj["y"] + obj["height"] // 2 - side // 2 + margin
        left = obj["x"] + obj["width"] // 2 - side // 2 + margin
        crops.append(padded[top : top + side, left : left + side])
    return crops


class ObjectNamer:
    """A pretrained backbone's classifier naming cut-out objects in the scenes' class ids."""

    def __init__(self, path: Path, class_names: tuple[str, ...], crop: int) -> None:
        self.model = load_classifier(path).eval()
        own = {name.replace("/", "-"): index for index, name in enumerate(self.model.class_names)}
        unknown = [name for name in class_names[1:] if name.replace("/", "-") not in own]
        if unknown:
            raise S2FError(f"{path}: the classifier has no class {unknown[0]!r}")
        by_own = {own[n.replace("/", "-")]: cls for cls, n in enumerate(class_names) if cls > 0}
        self.to_scene = [by_own.get(index, -1) for index in range(len(self.model.class_names))]
        self.transform = EvalTransform(crop)

    @torch.no_grad()
    def name(self, image: np.ndarray, objects: list[dict[str, int]]) -> list[int]:
        if not objects:
            return []
        rng = np.random.default_rng(0)
        crops = [self.transform(crop, rng) for crop in _object_crops(image, objects)]
        best = self.model(torch.stack(crops)).argmax(1).tolist()
        return [self.to_scene[index] for index in best]


def _accuracy(
    pairs: Sequence[tuple[int, int | None]], names: tuple[str, ...]
) -> tuple[float, dict[str, float]]:
    """Share of ``(true, guess)`` pairs named right, overall and per class (percentages)."""
    per_class = {}
    for cls in range(1, len(names)):
        guesses = [guess for true, guess in pairs if true == cls]
        if guesses:
            per_class[names[cls]] = round(100 * sum(g == cls for g in guesses) / len(guesses), 2)
    overall = round(100 * sum(t == g for t, g in pairs) / max(len(pairs), 1), 2)
    return overall, per_class


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
    parser.add_argument("--backbone", type=Path, help="an s2f pretrain backbone file")
    parser.add_argument("--backbone-crop", type=int, default=64, help="its pretraining crop")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        predictor = Predictor(load_model(resolve_model(args.model)), optimize=False)
        namer = (
            ObjectNamer(args.backbone, predictor.class_names, args.backbone_crop)
            if args.backbone
            else None
        )
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
    backbone_votes: list[tuple[int, int]] = []
    for path in images:
        label = read_label(args.scenes / "annotations" / args.split / f"{path.stem}.png")
        image = read_image(path)
        [prediction] = predictor.predict([image])
        predicted = prediction.labels.astype(np.int64)
        truth = label.astype(np.int64)
        right_names = np.where((truth > 0) & (predicted > 0), truth, predicted)
        try:
            scored.update(torch.from_numpy(predicted), torch.from_numpy(truth))
            renamed.update(torch.from_numpy(right_names), torch.from_numpy(truth))
        except MetricInputError as error:
            sys.exit(f"error: {path.stem}: {error}")
        confusion += np.bincount(truth.ravel() * classes + predicted.ravel(), None, classes**2)
        in_scene = objects.get(path.stem, [])
        scene_votes = _majority_classes(predicted, truth, in_scene)
        votes += scene_votes
        if namer is not None:  # the objects the segmenter's score counts: those still visible
            seen = [o for o, (_, g) in zip(in_scene, scene_votes, strict=True) if g is not None]
            named = namer.name(image, seen)
            backbone_votes += [(o["class_id"], g) for o, g in zip(seen, named, strict=True)]
    confusion = confusion.reshape(classes, classes)

    found = confusion[1:, 1:].sum()  # product pixels predicted as some product
    false_products, missed = confusion[0, 1:].sum(), confusion[1:, 0].sum()
    counted = [(true, guess) for true, guess in votes if guess is not None]
    names = tuple(predictor.class_names)
    object_accuracy, per_class = _accuracy(counted, names)
    report = {
        "model": args.model,
        "scenes": len(images),
        "objects": len(counted),
        "mIoU": round(scored.compute().mIoU, 2),
        "foreground_iou": round(100 * found / max(found + false_products + missed, 1), 2),
        "class_accuracy_on_found": round(100 * np.trace(confusion[1:, 1:]) / max(found, 1), 2),
        "mIoU_right_classes": round(renamed.compute().mIoU, 2),
        "object_accuracy": object_accuracy,
        "object_found": round(100 * sum(g != 0 for _, g in counted) / max(len(counted), 1), 2),
        "object_accuracy_per_class": per_class,
        "class_names": list(predictor.class_names),
        "confusion": confusion.tolist(),
    }
    if namer is not None:
        accuracy, by_class = _accuracy(backbone_votes, names)
        report["backbone_object_accuracy"] = accuracy
        report["backbone_object_accuracy_per_class"] = by_class
    print(json.dumps(report))


if __name__ == "__main__":
    main()
