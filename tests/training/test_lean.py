"""The lean training step computes the official losses and gradients (``training.lean``)."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spike2former import Spike2Former, build_model, load_model
from spike2former.convert import convert_checkpoint
from spike2former.mask_loss import ChunkedMaskLossSums, MaskLossTerms
from spike2former.modeling.neuron import SpikingNeuron, spike
from spike2former.modeling.saved_spikes import compact_saved_spikes
from spike2former.training.lean import (
    OFFICIAL,
    LeanTraining,
    build_criterion,
    prepare_model,
    step_losses,
)
from tests.helpers import randomize_, small_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "official_tiny_v3"
_spec = importlib.util.spec_from_file_location(
    "official_training", ROOT / "benchmarks" / "official_training.py"
)
official_training = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = official_training
_spec.loader.exec_module(official_training)

LEAN_VARIANTS = {
    "all": LeanTraining(),
    "compact-only": dataclasses.replace(OFFICIAL, compact_spikes=True),
    "reassociate-only": dataclasses.replace(OFFICIAL, reassociate=True),
    "chunked-loss-only": dataclasses.replace(OFFICIAL, loss_chunk_pixels=3 * 64 * 64),
    "chunked-costs-only": dataclasses.replace(OFFICIAL, cost_chunk_pixels=100),
    "blocked-depthwise-only": dataclasses.replace(OFFICIAL, blocked_depthwise_grad=True),
    "recompute-only": dataclasses.replace(OFFICIAL, recompute_backbone=True),
    "all-and-recompute": LeanTraining(recompute_backbone=True),
}


def _labels(batch: int, height: int, width: int, classes: int, seed: int) -> torch.Tensor:
    """Rectangles of several classes on an ignored background."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.full((batch, height, width), 255, dtype=torch.long)
    for image in range(batch):
        for cls in torch.randperm(classes, generator=gen)[: min(classes, 4)].tolist():
            top = int(torch.randint(0, height // 2, (1,), generator=gen))
            left = int(torch.randint(0, width // 2, (1,), generator=gen))
            labels[image, top : top + height // 3, left : left + width // 3] = cls
    return labels


def _step(
    model: Spike2Former, images: torch.Tensor, labels: torch.Tensor, lean: LeanTraining
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Losses and parameter gradients of one training step of a copy of ``model``."""
    model = prepare_model(copy.deepcopy(model).train(), lean)
    criterion = build_criterion(model, 2.0, lean)
    if lean == OFFICIAL:
        with official_training.official_neurons():
            losses = step_losses(model, criterion, images, labels, lean)
            sum(losses.values()).backward()
    else:
        losses = step_losses(model, criterion, images, labels, lean)
        sum(losses.values()).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return {k: v.detach() for k, v in losses.items()}, grads


def _assert_same_step(
    expected: tuple[dict, dict], actual: tuple[dict, dict], rtol: float = 1e-10
) -> None:
    (ref_losses, ref_grads), (losses, grads) = expected, actual
    assert losses.keys() == ref_losses.keys()
    for key, value in ref_losses.items():
        torch.testing.assert_close(losses[key], value, rtol=rtol, atol=0, msg=key)
    # Parameters whose gradient is zero in exact arithmetic (a conv bias under a BatchNorm)
    # carry rounding noise only: compare every gradient against the largest one as well.
    scale = max(g.abs().max().item() for g in ref_grads.values() if g is not None)
    assert scale > 0
    for name, ref in ref_grads.items():
        grad = grads[name]
        assert (grad is None) == (ref is None), name
        if ref is not None:
            torch.testing.assert_close(grad, ref, rtol=rtol, atol=rtol * scale, msg=name)


@pytest.fixture(scope="module")
def tiny_model() -> Spike2Former:
    torch.manual_seed(0)
    return randomize_(build_model("tiny"), seed=1).double()


@pytest.mark.parametrize("variant", LEAN_VARIANTS, ids=list(LEAN_VARIANTS))
def test_float64_step_equals_the_official_computation_on_tiny(
    tiny_model: Spike2Former, variant: str
) -> None:
    images = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(2)).double()
    labels = _labels(2, 64, 80, tiny_model.config.head.num_classes, seed=3)
    reference = _step(tiny_model, images, labels, OFFICIAL)
    _assert_same_step(reference, _step(tiny_model, images, labels, LEAN_VARIANTS[variant]))


@pytest.mark.parametrize("version", ["sdtv2", "sdtv3"])
def test_float64_recomputed_backbone_equals_the_official_computation(version: str) -> None:
    # SDT-V2's BNAndPad reads the running statistics its BatchNorm has just updated: the
    # recomputation must start from the statistics the first run started from
    config = small_config(backbone={"version": version}, head={"num_queries": 6})
    model = randomize_(build_model(config), seed=4).double()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5)).double()
    labels = _labels(2, 64, 64, config.head.num_classes, seed=6)
    _assert_same_step(
        _step(model, images, labels, OFFICIAL),
        _step(model, images, labels, LeanTraining(recompute_backbone=True)),
    )


def test_float64_step_with_repeated_time_steps() -> None:
    config = small_config(backbone={"time_steps": 2}, head={"num_queries": 6})
    model = randomize_(build_model(config), seed=4).double()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5)).double()
    labels = _labels(2, 64, 64, config.head.num_classes, seed=6)
    _assert_same_step(
        _step(model, images, labels, OFFICIAL), _step(model, images, labels, LeanTraining())
    )


def test_float32_losses_agree_within_rounding(tiny_model: Spike2Former) -> None:
    model = copy.deepcopy(tiny_model).float()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    labels = _labels(2, 64, 64, model.config.head.num_classes, seed=8)
    reference, _ = _step(model, images, labels, OFFICIAL)
    lean, _ = _step(model, images, labels, LeanTraining())
    for key, value in reference.items():
        torch.testing.assert_close(lean[key], value, rtol=1e-4, atol=1e-6, msg=key)


@pytest.fixture(scope="module")
def fixture_model(tmp_path_factory: pytest.TempPathFactory) -> Spike2Former:
    destination = tmp_path_factory.mktemp("lean") / "official_tiny_v3.safetensors"
    convert_checkpoint(FIXTURE / "weights.safetensors", destination)
    return load_model(destination)


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "io.safetensors"))


@pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"fixture not found at {FIXTURE}")
class TestOfficialFixture:
    def test_float64_step_equals_the_official_computation(
        self, fixture_model: Spike2Former, golden: dict[str, torch.Tensor]
    ) -> None:
        model = copy.deepcopy(fixture_model).double()
        images = golden["input"].double()
        labels = _labels(images.shape[0], *images.shape[-2:], 7, seed=9)
        reference = _step(model, images, labels, OFFICIAL)
        _assert_same_step(reference, _step(model, images, labels, LeanTraining()))
        recomputing = LeanTraining(recompute_backbone=True)
        _assert_same_step(reference, _step(model, images, labels, recomputing))

    def test_lean_stages_reproduce_the_official_training_outputs(
        self, fixture_model: Spike2Former, golden: dict[str, torch.Tensor]
    ) -> None:
        model = prepare_model(copy.deepcopy(fixture_model).train(), LeanTraining())
        with torch.no_grad():
            class_logits, mask_logits = model(golden["input"], for_loss=True)
        expected_masks = golden["train_all_mask_preds"]
        torch.testing.assert_close(class_logits, golden["train_all_cls_scores"], rtol=0, atol=1e-4)
        for stage in range(expected_masks.shape[0]):
            for image in range(expected_masks.shape[1]):
                torch.testing.assert_close(
                    mask_logits.detached(image, stage),
                    expected_masks[stage, image],
                    rtol=0,
                    atol=1e-4,
                )


# --- compact saved spikes ------------------------------------------------------------------------


def test_neuron_keeps_one_byte_per_element_for_backward() -> None:
    x = (torch.randn(3, 5) * 4).requires_grad_()
    out = SpikingNeuron(4)(x)
    (codes,) = out.grad_fn.saved_tensors
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert torch.equal(codes & 15, (out * 4).to(torch.uint8))
    assert torch.equal(codes >= 16, (x >= 0) & (x <= 4))


def test_nan_input_gets_no_gradient() -> None:
    x = torch.tensor([float("nan"), 1.0], requires_grad=True)
    spike(x, 4).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 0.25]))


def test_more_levels_than_a_code_holds_is_refused() -> None:
    with pytest.raises(ValueError, match="levels above 15"):
        spike(torch.ones(2, requires_grad=True), 16)


def _codes_saved(build) -> int:
    """How many saved tensors were kept as codes while ``build()`` ran."""
    with compact_saved_spikes() as registry:
        build()
    return registry.saved_as_codes


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_layers_reading_spikes_save_the_codes_and_get_the_same_gradients(scale: float) -> None:
    torch.manual_seed(0)
    x = (torch.randn(2, 3, 6, 7, dtype=torch.float64) * 5).requires_grad_()
    neuron, conv = SpikingNeuron(8, scale), torch.nn.Conv2d(3, 4, 3).double()
    other = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)

    def forward() -> torch.Tensor:
        spikes = neuron(x)
        # a convolution, a matmul through a transposed view, and the neuron's own save
        return (
            conv(spikes).square().sum() + (spikes.transpose(-1, -2) @ other.transpose(-1, -2)).sum()
        )

    expected = torch.autograd.grad(forward(), (x, conv.weight, other))
    outputs = []
    assert _codes_saved(lambda: outputs.append(forward())) == 2
    actual = torch.autograd.grad(outputs[0], (x, conv.weight, other))
    for a, e in zip(actual, expected, strict=True):
        assert torch.equal(a, e)


def test_spikes_modified_in_place_are_saved_as_they_are() -> None:
    x = (torch.randn(4, 4) * 5).requires_grad_()
    weight = torch.randn(4, 4, requires_grad=True)
    holder = []

    def forward() -> None:
        spikes = SpikingNeuron(8)(x).clone()  # a copy is not a neuron output
        holder.append(spikes @ weight)
        spikes2 = SpikingNeuron(8)(x)
        spikes2.add_(1.0)  # no longer the neuron's values
        holder.append(spikes2 @ weight)

    assert _codes_saved(forward) == 0


def test_chunked_mask_loss_gradient_is_the_derivative() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 6, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    labels = torch.randint(0, 3, (2, 12, 14), generator=gen)
    images, classes = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 2, 0, 1, 2])
    terms = MaskLossTerms(0.25, 2.0, 1.0)
    for chunk in (1, 2 * 12 * 14, 2**22):
        assert torch.autograd.gradcheck(
            lambda lg, c=chunk: ChunkedMaskLossSums.apply(lg, labels, images, classes, terms, c),
            (logits,),
        )


def _saved_bytes_and_statistics(
    model: Spike2Former, images: torch.Tensor, labels: torch.Tensor, lean: LeanTraining
) -> tuple[int, dict[str, torch.Tensor]]:
    """Bytes autograd keeps after one forward and the BatchNorm buffers after the backward."""
    model = prepare_model(copy.deepcopy(model).train(), lean)
    criterion = build_criterion(model, 2.0, lean)
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        losses = step_losses(model, criterion, images, labels, lean)
    sum(losses.values()).backward()
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    return sum(kept.values()), buffers


def test_recomputed_backbone_keeps_less_and_counts_batch_statistics_once(
    tiny_model: Spike2Former,
) -> None:
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7)).double()
    labels = _labels(2, 64, 64, tiny_model.config.head.num_classes, seed=8)
    plain = LeanTraining(compact_spikes=False)
    kept, statistics = _saved_bytes_and_statistics(tiny_model, images, labels, plain)
    recompute = dataclasses.replace(plain, recompute_backbone=True)
    kept_recomputing, statistics_recomputing = _saved_bytes_and_statistics(
        tiny_model, images, labels, recompute
    )
    assert kept_recomputing < 0.8 * kept
    assert statistics.keys() == statistics_recomputing.keys() and statistics
    for name, value in statistics.items():
        assert torch.equal(statistics_recomputing[name], value), name
    # the running statistics did move: the comparison above is not between two untouched states
    assert any(
        not torch.equal(value, tiny_model.state_dict()[name]) for name, value in statistics.items()
    )
