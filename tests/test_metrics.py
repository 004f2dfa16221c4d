"""Dataset-level IoU metric against hand-computed confusion matrices, with mmseg's NaN rules."""

from __future__ import annotations

import math

import pytest
import torch

from spike2former.metrics import IoUMetric, MetricInputError


def test_one_image_by_hand() -> None:
    # label / prediction, 3 classes, one ignore pixel (predicted 2, must not count)
    labels = torch.tensor([[0, 0, 1], [1, 2, 255]])
    predictions = torch.tensor([[0, 1, 1], [1, 0, 2]])
    metric = IoUMetric(3)
    metric.update(predictions, labels)
    # confusion (label rows, prediction columns) over the 5 valid pixels:
    #   0: [1, 1, 0]   1: [0, 2, 0]   2: [1, 0, 0]
    intersection, union, predicted, labelled = metric.areas.tolist()
    assert intersection == [1, 2, 0]
    assert predicted == [2, 3, 0]
    assert labelled == [2, 2, 1]
    assert union == [3, 3, 1]
    scores = metric.compute()
    assert scores.aAcc == pytest.approx(100 * 3 / 5)
    assert scores.per_class_iou == pytest.approx([100 / 3, 200 / 3, 0.0])
    assert scores.per_class_acc == pytest.approx([50.0, 100.0, 0.0])
    assert scores.mIoU == pytest.approx(100 / 3)
    assert scores.mAcc == pytest.approx(50.0)


def test_counts_accumulate_over_the_dataset_not_per_image() -> None:
    metric = IoUMetric(2)
    metric.update(torch.tensor([[0, 0, 0, 0]]), torch.tensor([[0, 0, 0, 1]]))
    metric.update(torch.tensor([[1]]), torch.tensor([[1]]))
    # class 0: I 3, U 4; class 1: I 1, U 2  (per-image means would give other numbers)
    scores = metric.compute()
    assert scores.per_class_iou == pytest.approx([75.0, 50.0])
    assert scores.mIoU == pytest.approx(62.5)
    assert scores.aAcc == pytest.approx(80.0)


def test_absent_classes_follow_mmseg_nan_rules() -> None:
    # class 2 never labelled nor predicted: IoU and Acc NaN, left out of the means.
    # class 3 predicted but never labelled: IoU 0 (counts), Acc NaN (left out).
    labels = torch.tensor([0, 0, 1, 1])
    predictions = torch.tensor([0, 3, 1, 1])
    metric = IoUMetric(4, class_names=["a", "b", "c", "d"])
    metric.update(predictions, labels)
    scores = metric.compute()
    iou, acc = scores.per_class_iou, scores.per_class_acc
    assert iou[:2] == pytest.approx([50.0, 100.0]) and math.isnan(iou[2]) and iou[3] == 0.0
    assert acc[:2] == pytest.approx([50.0, 100.0]) and math.isnan(acc[2]) and math.isnan(acc[3])
    assert scores.mIoU == pytest.approx(50.0)  # (50 + 100 + 0) / 3
    assert scores.mAcc == pytest.approx(75.0)  # (50 + 100) / 2
    flat = scores.as_dict()
    assert flat["IoU.b"] == pytest.approx(100.0) and math.isnan(flat["Acc.d"])


def test_batched_updates_equal_single_ones_and_merge_adds_counts() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (3, 7, 9), generator=gen)
    labels[labels == 4] = 255
    predictions = torch.randint(0, 4, (3, 7, 9), generator=gen)
    batched = IoUMetric(4)
    batched.update(predictions, labels)
    first, second = IoUMetric(4), IoUMetric(4)
    first.update(predictions[0], labels[0])
    for p, t in zip(predictions[1:], labels[1:], strict=True):
        second.update(p, t)
    first.merge(second)
    assert torch.equal(first.areas, batched.areas)
    assert first.compute() == batched.compute()


def test_reset_and_empty_results() -> None:
    metric = IoUMetric(2)
    metric.update(torch.tensor([1]), torch.tensor([1]))
    metric.reset()
    assert metric.areas.sum() == 0
    metric.update(torch.tensor([1, 0]), torch.tensor([255, 255]))  # nothing valid
    scores = metric.compute()
    assert math.isnan(scores.aAcc) and math.isnan(scores.mIoU) and math.isnan(scores.mAcc)


def test_labels_outside_the_classes_are_an_error() -> None:
    metric = IoUMetric(3)
    with pytest.raises(MetricInputError, match=r"label values \[3, 7\].*0\.\.2"):
        metric.update(torch.tensor([0, 0, 0]), torch.tensor([3, 7, 255]))
    with pytest.raises(MetricInputError, match="prediction values"):
        metric.update(torch.tensor([5]), torch.tensor([0]))
    with pytest.raises(MetricInputError, match="differs from label shape"):
        metric.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    assert metric.areas.sum() == 0  # a rejected pair adds nothing
