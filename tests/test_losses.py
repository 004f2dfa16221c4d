"""The MaskFormer loss and Hungarian matching: parity with the official values of the golden
fixture, hand-checked small cases, gradients, and the chunked (bounded-memory) mask losses."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from spike2former.losses import MaskFormerLoss, stack_stages
from spike2former.matching import HungarianMatcher, semantic_classes
from tests.golden_fixture import FIXTURE, needs_fixture

PARITY_RTOL = 1e-5


@pytest.fixture(scope="module")
def official() -> dict[str, object]:
    tensors = load_file(str(FIXTURE / "io.safetensors"))
    reference = json.loads((FIXTURE / "loss.json").read_text())
    return {
        "class_logits": tensors["train_all_cls_scores"],
        "mask_logits": tensors["train_all_mask_preds"],
        "labels": tensors["gt_sem_seg"],
        **reference,
    }


def _random_inputs(
    stages: int, batch: int, queries: int, classes: int, size: tuple[int, int], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    height, width = size
    class_logits = torch.randn(stages, batch, queries, classes + 1, generator=gen)
    mask_logits = 3 * torch.randn(stages, batch, queries, height // 2, width // 2, generator=gen)
    labels = torch.randint(0, classes, (batch, height, width), generator=gen, dtype=torch.long)
    labels[:, :2] = 255
    return class_logits, mask_logits, labels


# --- parity with the official implementation -----------------------------------------------------


@needs_fixture
@pytest.mark.parametrize("chunk_pixels", [None, 2**22, 96 * 128 * 3], ids=["direct", "one", "3"])
def test_every_term_matches_the_official_loss(official: dict, chunk_pixels: int | None) -> None:
    loss = MaskFormerLoss(7, chunk_pixels=chunk_pixels)
    out = loss(official["class_logits"], official["mask_logits"], official["labels"])
    expected = official["losses"]
    assert list(out) == list(expected)  # same keys, in mmdet's order
    for key, value in expected.items():
        error = abs(out[key].item() - value) / abs(value)
        assert error < PARITY_RTOL, f"{key}: {out[key].item()} vs {value} (rel {error:.2g})"


@needs_fixture
@pytest.mark.parametrize("cost_chunk", [None, 4096, 100], ids=["direct", "one", "many"])
def test_matching_matches_the_official_assignment(official: dict, cost_chunk: int | None) -> None:
    loss = MaskFormerLoss(7, HungarianMatcher(chunk_pixels=cost_chunk))
    matches = loss.match(official["class_logits"], official["mask_logits"], official["labels"])
    expected = official["matching_per_stage"]
    assert len(matches) == len(expected) == 7
    for stage, (ours, theirs) in enumerate(zip(matches, expected, strict=True)):
        for image, (match, ref) in enumerate(zip(ours, theirs, strict=True)):
            where = f"stage {stage} image {image}"
            assert match.query_indices.tolist() == ref["pos_query_inds"], where
            assert match.gt_indices.tolist() == ref["assigned_gt_index"], where
            assert match.gt_labels.tolist() == ref["assigned_gt_label"], where


@needs_fixture
def test_ground_truth_classes_in_official_order(official: dict) -> None:
    for label, expected in zip(
        official["labels"], official["gt_labels_per_image_in_official_order"], strict=True
    ):
        assert semantic_classes(label, 7).tolist() == expected


# --- hand-checked cases --------------------------------------------------------------------------


def test_one_query_one_class_by_hand() -> None:
    """K = 1, one query, a 1x2 label [class 0, ignore]: every term from the formulas."""
    class_logits = torch.tensor([[[[0.3, -0.2]]]])  # [S=1, B=1, Q=1, 2]
    mask_logits = torch.tensor([[[[[1.0, -2.0]]]]])  # [1, 1, 1, 1, 2], already at label size
    labels = torch.tensor([[[0, 255]]])
    out = MaskFormerLoss(1, chunk_pixels=None)(class_logits, mask_logits, labels)

    # The only query is matched to class 0: plain cross-entropy, weight 1 / weight 1.
    expected_cls = -math.log(math.exp(0.3) / (math.exp(0.3) + math.exp(-0.2)))
    sig = [1 / (1 + math.exp(-x)) for x in (1.0, -2.0)]
    target = [1.0, 0.0]  # the ignore pixel is negative for the mask
    focal = 0.0
    for p, t in zip(sig, target, strict=True):
        bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
        pt = (1 - p) * t + p * (1 - t)
        focal += bce * (0.25 * t + 0.75 * (1 - t)) * pt**2
    expected_mask = 20 * focal / (1 * 2)
    expected_dice = 1 - (2 * sig[0] + 1) / (sum(sig) + 1 + 1)
    assert out["loss_cls"].item() == pytest.approx(expected_cls, rel=1e-6)
    assert out["loss_mask"].item() == pytest.approx(expected_mask, rel=1e-6)
    assert out["loss_dice"].item() == pytest.approx(expected_dice, rel=1e-6)


def test_perfect_prediction_gives_near_zero_losses() -> None:
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :, 4:] = 1
    masks = torch.stack([labels[0] == 0, labels[0] == 1, torch.zeros(8, 8, dtype=torch.bool)])
    mask_logits = (masks.double() * 2 - 1) * 30  # [Q=3, 8, 8]: crisp, right masks, one empty
    class_logits = torch.full((3, 3), -30.0, dtype=torch.float64)
    class_logits[0, 0] = class_logits[1, 1] = class_logits[2, 2] = 30.0  # query 2: no object
    out = MaskFormerLoss(2)(class_logits[None], mask_logits[None], labels)
    assert out["loss_dice"].item() < 1e-6
    assert out["loss_mask"].item() < 1e-6
    assert out["loss_cls"].item() < 1e-6


def test_an_image_with_only_ignore_pixels_is_all_no_object() -> None:
    class_logits, mask_logits, _ = _random_inputs(2, 1, 4, 3, (8, 8))
    class_logits.requires_grad_(True)
    mask_logits.requires_grad_(True)
    labels = torch.full((1, 8, 8), 255, dtype=torch.uint8)
    loss = MaskFormerLoss(3)
    out, matches = loss.losses_and_matches(class_logits, mask_logits, labels)
    assert all(len(match) == 0 for stage in matches for match in stage)
    no_object = torch.full((4,), 3)
    # every query has the same class weight, so the weighted mean is the plain mean
    expected = F.cross_entropy(class_logits[-1, 0], no_object)
    assert out["loss_cls"].item() == pytest.approx(expected.item(), rel=1e-6)
    for key in ("loss_mask", "loss_dice", "d0.loss_mask", "d0.loss_dice"):
        assert out[key].item() == 0.0
        assert out[key].requires_grad  # a valid graph, so a plain sum of terms backpropagates
    sum(out.values()).backward()
    assert mask_logits.grad is not None and mask_logits.grad.abs().sum() == 0
    assert class_logits.grad is not None and class_logits.grad.abs().sum() > 0


def test_mask_normalisation_counts_images_without_masks_as_one() -> None:
    """mmdet's MaskPseudoSampler counts max(matched, 1) per image."""
    class_logits, mask_logits, labels = _random_inputs(1, 2, 5, 3, (8, 8))
    labels[1] = 255
    loss = MaskFormerLoss(3, chunk_pixels=None)
    assert loss.local_mask_count(labels, num_queries=5) == 3 + 1
    assert loss.local_mask_count(labels, num_queries=2) == 2 + 1
    default = loss(class_logits, mask_logits, labels)
    explicit = loss(class_logits, mask_logits, labels, num_masks=4)
    doubled = loss(class_logits, mask_logits, labels, num_masks=8.0)
    for key in ("loss_mask", "loss_dice"):
        assert default[key].item() == explicit[key].item()
        assert doubled[key].item() == pytest.approx(default[key].item() / 2, rel=1e-6)
    assert doubled["loss_cls"].item() == default["loss_cls"].item()
    tiny = loss(class_logits, mask_logits, labels, num_masks=torch.tensor(0.25))
    clamped = loss(class_logits, mask_logits, labels, num_masks=1)
    assert tiny["loss_dice"].item() == clamped["loss_dice"].item()


def test_no_object_weight_shapes_the_class_loss() -> None:
    class_logits, mask_logits, labels = _random_inputs(1, 1, 6, 2, (8, 8))
    out, matches = MaskFormerLoss(2, no_object_weight=0.1).losses_and_matches(
        class_logits, mask_logits, labels
    )
    targets = torch.full((6,), 2)
    targets[matches[0][0].query_indices] = matches[0][0].gt_labels
    weights = torch.tensor([1.0, 1.0, 0.1])[targets]
    per_query = F.cross_entropy(class_logits[0, 0], targets, reduction="none")
    expected = (weights * per_query).sum() / weights.sum()
    assert out["loss_cls"].item() == pytest.approx(expected.item(), rel=1e-6)


# --- gradients and the bounded-memory path -------------------------------------------------------


def test_gradients_reach_both_logits() -> None:
    class_logits, mask_logits, labels = _random_inputs(3, 2, 5, 4, (16, 12))
    class_logits.requires_grad_(True)
    mask_logits.requires_grad_(True)
    out = MaskFormerLoss(4, chunk_pixels=16 * 12)(class_logits, mask_logits, labels)
    sum(out.values()).backward()
    for grad in (class_logits.grad, mask_logits.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert (class_logits.grad.abs().sum((1, 2, 3)) > 0).all()  # every stage is supervised
    assert (mask_logits.grad.abs().flatten(1).sum(1) > 0).all()


@pytest.mark.parametrize("chunk_pixels", [1, 24 * 20, 3 * 24 * 20, 2**22])
def test_chunked_mask_losses_equal_the_direct_computation(chunk_pixels: int) -> None:
    base = _random_inputs(2, 3, 6, 5, (24, 20), seed=3)
    results = []
    for chunk in (None, chunk_pixels):
        class_logits, mask_logits, labels = (t.clone() for t in base)
        class_logits = class_logits.double().requires_grad_(True)
        mask_logits = mask_logits.double().requires_grad_(True)
        out = MaskFormerLoss(5, chunk_pixels=chunk)(class_logits, mask_logits, labels)
        sum(out.values()).backward()
        results.append((out, class_logits.grad, mask_logits.grad))
    (direct, direct_cls_grad, direct_mask_grad), (chunked, cls_grad, mask_grad) = results
    for key in direct:
        torch.testing.assert_close(chunked[key], direct[key], rtol=1e-12, atol=0)
    torch.testing.assert_close(cls_grad, direct_cls_grad, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(mask_grad, direct_mask_grad, rtol=1e-12, atol=1e-15)


# --- arbitrary shapes and inputs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stages", "batch", "queries", "classes"),
    [(1, 1, 1, 1), (2, 2, 3, 6), (4, 3, 10, 2), (7, 1, 2, 9)],
)
def test_any_number_of_stages_queries_and_classes(
    stages: int, batch: int, queries: int, classes: int
) -> None:
    class_logits, mask_logits, labels = _random_inputs(stages, batch, queries, classes, (12, 8))
    loss = MaskFormerLoss(classes)
    out, matches = loss.losses_and_matches(class_logits, mask_logits, labels)
    prefixes = [""] + [f"d{i}." for i in range(stages - 1)]
    assert list(out) == [f"{p}loss_{t}" for p in prefixes for t in ("cls", "mask", "dice")]
    assert all(torch.isfinite(value) and value.dim() == 0 for value in out.values())
    for stage in matches:
        for image, match in enumerate(stage):
            present = semantic_classes(labels[image], classes)
            assert len(match) == min(queries, present.numel())
            assert match.query_indices.unique().numel() == len(match)
            assert torch.equal(match.gt_labels, present[match.gt_indices])


def test_a_single_stage_may_omit_the_stage_axis() -> None:
    class_logits, mask_logits, labels = _random_inputs(1, 2, 4, 3, (8, 8))
    loss = MaskFormerLoss(3)
    assert loss(class_logits[0], mask_logits[0], labels) == loss(class_logits, mask_logits, labels)


def test_stack_stages_puts_the_earliest_stage_first() -> None:
    stages = [
        {"class_logits": torch.full((1, 2, 3), float(i)), "mask_logits": torch.zeros(1, 2, 4, 4)}
        for i in range(3)
    ]
    outputs = {**stages[-1], "aux": stages[:-1]}
    class_logits, mask_logits = stack_stages(outputs)
    assert class_logits.shape == (3, 1, 2, 3) and mask_logits.shape == (3, 1, 2, 4, 4)
    assert class_logits[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_chunked_costs_equal_the_official_formula(chunk: int) -> None:
    """Same costs in float64, also for logits far enough out that the log guard matters."""
    gen = torch.Generator().manual_seed(3)
    class_logits = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    mask_logits = 12 * torch.randn(2, 5, 8, 8, generator=gen, dtype=torch.float64)
    mask_logits[0, 0] = -60.0  # σ below the 1e-12 guard
    mask_logits[1, 1] = 60.0  # 1 − σ below it
    gt_masks = torch.rand(3, 8, 8, generator=gen) < 0.4
    gt_labels = torch.tensor([0, 2, 1])
    official = HungarianMatcher().cost_matrices(class_logits, mask_logits, gt_labels, gt_masks)
    chunked = HungarianMatcher(chunk_pixels=chunk).cost_matrices(
        class_logits, mask_logits, gt_labels, gt_masks
    )
    assert chunked.shape == official.shape == (2, 5, 3)
    torch.testing.assert_close(chunked, official, rtol=1e-12, atol=0)


def test_cost_chunk_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_pixels must be positive"):
        HungarianMatcher(chunk_pixels=0)


def test_matcher_prefers_the_right_query() -> None:
    """Query 1 predicts class 1's mask and label, query 0 class 0's: the matching says so."""
    label = torch.tensor([[0, 0, 1, 1]])
    classes = semantic_classes(label, 2)
    mask_logits = torch.tensor([[[5.0, 5.0, -5.0, -5.0]], [[-5.0, -5.0, 5.0, 5.0]]])
    class_logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    (match,) = HungarianMatcher().match_image(class_logits[None], mask_logits[None], label, classes)
    assert match.query_indices.tolist() == [0, 1]
    assert match.gt_labels.tolist() == [0, 1]


# --- errors --------------------------------------------------------------------------------------


def test_label_values_outside_the_classes_are_reported() -> None:
    class_logits, mask_logits, labels = _random_inputs(1, 1, 2, 3, (8, 8))
    labels[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"label values \[7\].*0\.\.2 or 255"):
        MaskFormerLoss(3)(class_logits, mask_logits, labels)


@pytest.mark.parametrize(
    ("class_shape", "mask_shape", "label_shape", "message"),
    [
        ((1, 1, 2, 4), (1, 1, 3, 4, 4), (1, 8, 8), "disagree"),
        ((1, 1, 2, 5), (1, 1, 2, 4, 4), (1, 8, 8), "expected 4"),
        ((1, 1, 2, 4), (1, 1, 2, 4, 4), (2, 8, 8), "labels"),
        ((1, 2, 4), (1, 1, 2, 4, 4), (1, 8, 8), "class_logits"),
    ],
)
def test_inconsistent_shapes_are_reported(
    class_shape: tuple, mask_shape: tuple, label_shape: tuple, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MaskFormerLoss(3)(
            torch.zeros(class_shape), torch.zeros(mask_shape), torch.zeros(label_shape).long()
        )
