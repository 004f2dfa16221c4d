"""Dataset-level semantic-segmentation metrics, computed like mmseg's ``IoUMetric``.

Per-class pixel counts are summed over the whole evaluation set first and turned into ratios
only at the end (a dataset-level mIoU, not a mean of per-image IoUs):
intersection = pixels predicted c and labelled c, union = predicted c + labelled c − intersection,
ignoring pixels labelled ``ignore_index``. Then, in percent,
``aAcc`` = Σ intersection / Σ label area, ``IoU_c`` = intersection / union,
``Acc_c`` = intersection / label area, ``mIoU`` / ``mAcc`` = means over the classes whose value is
defined. A class with zero union has an undefined (NaN) IoU and one with zero label area an
undefined Acc; they are left out of the means (mmseg's ``np.nanmean``). A class that is predicted
but never labelled therefore counts with IoU 0. mmseg rounds its summary to two decimals for
display; the values here are not rounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import S2FError

AREA_NAMES = ("intersection", "union", "predicted", "label")


class MetricInputError(S2FError):
    """A prediction or label map does not fit the metric (shape, or values outside the classes)."""


@dataclass(frozen=True)
class SegmentationScores:
    """Percentages; per-class lists hold ``nan`` where the value is undefined."""

    aAcc: float
    mIoU: float
    mAcc: float
    per_class_iou: list[float]
    per_class_acc: list[float]
    class_names: tuple[str, ...]

    def as_dict(self) -> dict[str, float]:
        """Flat mapping for logs: the three summaries, then ``IoU.<class>`` and ``Acc.<class>``."""
        out = {"aAcc": self.aAcc, "mIoU": self.mIoU, "mAcc": self.mAcc}
        for name, iou, acc in zip(
            self.class_names, self.per_class_iou, self.per_class_acc, strict=True
        ):
            out[f"IoU.{name}"] = iou
            out[f"Acc.{name}"] = acc
        return out


class IoUMetric:
    """Accumulates per-class areas over (prediction, label) pairs and scores them.

    ``areas`` is an int64 tensor ``[4, K]``: intersection, union, predicted and label area per
    class (``AREA_NAMES``). Counts simply add up across processes, so under data parallelism
    ``torch.distributed.all_reduce(metric.areas)`` (a sum, on a device the backend supports)
    before ``compute()`` gives the dataset-level result; ``merge`` does the same for two metrics
    in one process.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names or (str(c) for c in range(num_classes)))
        self.areas = torch.zeros(4, num_classes, dtype=torch.long, device=device)

    def reset(self) -> None:
        self.areas.zero_()

    def update(self, predictions: Tensor, labels: Tensor) -> None:
        """Add predicted class maps and label maps of the same shape (``[H, W]`` or ``[B, H, W]``).

        Pixels labelled ``ignore_index`` are skipped; any other label, and any prediction,
        must be a class id.
        """
        if predictions.shape != labels.shape:
            raise MetricInputError(
                f"prediction shape {list(predictions.shape)} differs from label shape "
                f"{list(labels.shape)}; resize predictions to the label size first"
            )
        if predictions.is_floating_point() or labels.is_floating_point():
            raise MetricInputError("predictions and labels must be integer class maps")
        labels = labels.to(self.areas.device).long().flatten()
        predictions = predictions.to(self.areas.device).long().flatten()
        valid = labels != self.ignore_index
        labels, predictions = labels[valid], predictions[valid]
        self._check_range(labels, "label")
        self._check_range(predictions, "prediction")
        k = self.num_classes
        predicted = torch.bincount(predictions, minlength=k)
        labelled = torch.bincount(labels, minlength=k)
        intersection = torch.bincount(labels[labels == predictions], minlength=k)
        union = predicted + labelled - intersection
        self.areas += torch.stack([intersection, union, predicted, labelled])

    def merge(self, other: IoUMetric) -> None:
        """Add another metric's counts (same classes) to this one."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.areas += other.areas.to(self.areas.device)

    def compute(self) -> SegmentationScores:
        """Scores of everything added so far (NaN summaries when nothing valid was seen)."""
        intersection, union, _, labelled = self.areas.double().cpu()
        iou = _ratio(intersection, union)
        acc = _ratio(intersection, labelled)
        return SegmentationScores(
            aAcc=100 * _safe_div(intersection.sum().item(), labelled.sum().item()),
            mIoU=100 * _nanmean(iou),
            mAcc=100 * _nanmean(acc),
            per_class_iou=[100 * v for v in iou],
            per_class_acc=[100 * v for v in acc],
            class_names=self.class_names,
        )

    def _check_range(self, values: Tensor, what: str) -> None:
        bad = values[(values < 0) | (values >= self.num_classes)]
        if bad.numel():
            shown = bad.unique()[:10].tolist()
            raise MetricInputError(
                f"{what} values {shown} are outside the {self.num_classes} classes "
                f"(0..{self.num_classes - 1}, ignore {self.ignore_index}); check num_classes "
                "and the dataset's label conversion (reduce_zero_label, train ids)"
            )


def _ratio(numerator: Tensor, denominator: Tensor) -> list[float]:
    return [_safe_div(n, d) for n, d in zip(numerator.tolist(), denominator.tolist(), strict=True)]


def _safe_div(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _nanmean(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan
