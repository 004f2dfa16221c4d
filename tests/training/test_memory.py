"""The training memory estimate: its measured step leaves the network as it was, grows with the
batch's pixels, and the pipelines' largest resize the crop is checked against."""

from __future__ import annotations

import torch

from spike2former import build_model
from spike2former.inference.memory import LiveTensors
from spike2former.training.data import train_pipeline
from spike2former.training.evaluate import whole_scores
from spike2former.training.lean import LeanTraining
from spike2former.training.memory import (
    Images,
    activation_bytes_per_pixel,
    estimate,
    probe_size,
)
from tests.helpers import small_config


def test_the_measured_step_is_undone() -> None:
    torch.manual_seed(0)
    model = build_model(small_config(head={"num_classes": 3})).train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    rng = torch.get_rng_state()
    per_pixel = activation_bytes_per_pixel(
        model, (64, 64), cls_cost=2.0, lean=LeanTraining(), device=torch.device("cpu")
    )
    assert per_pixel > 0
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert model.training and torch.equal(torch.get_rng_state(), rng)


def test_the_estimate_grows_with_the_batch_and_the_workers() -> None:
    model = build_model(small_config(head={"num_classes": 3})).train()
    need = estimate(
        model, (64, 64), Images(crop=64 * 64, train_image=128 * 128),
        cls_cost=2.0, lean=LeanTraining(), device=torch.device("cpu"),
    )  # fmt: skip
    assert need.host(4, 0) > need.host(2, 0) > need.host(1, 0) > need.fixed
    assert need.host(2, 4) > need.host(2, 2) > need.host(2, 0)


def test_the_validation_estimate_covers_a_measured_validation_pass() -> None:
    """The estimate for scoring one image (fitted to three small passes, then taken to the
    image's size) is at least what a pass at that size really keeps alive, and the model is left
    in training mode."""
    torch.manual_seed(0)
    model = build_model(small_config(head={"num_classes": 3})).train()
    side = 320
    images = Images(crop=64 * 64, train_image=64 * 64, val_image=side**2, val_input=side**2)
    need = estimate(
        model, (64, 64), images, cls_cost=2.0, lean=LeanTraining(), device=torch.device("cpu")
    )
    assert model.training
    model.eval()
    with torch.inference_mode(), LiveTensors() as live:
        whole_scores(model, torch.randn(1, 3, side, side))
    # resident bytes are 1.6 x live + 750 per pixel (RESIDENT_PER_LIVE), the image comes on top
    assert live.peak <= need.validation <= 2 * live.peak + 1024 * side**2


def test_large_crops_are_measured_on_a_smaller_one_of_their_shape() -> None:
    assert probe_size((128, 256)) == (128, 256)
    assert probe_size((1024, 2048)) == (192, 352)
    assert probe_size((4096, 4096)) == (256, 256)


def test_the_largest_size_each_pipeline_gives_an_image() -> None:
    largest = {
        name: train_pipeline(name, (512, 512)).largest_size(100, 200)
        for name in ("random_crop", "shortest_edge_a", "shortest_edge_c", "random_resize")
    }
    assert largest == {
        "random_crop": (100, 200),  # no resizing
        "shortest_edge_a": (1280, 2560),  # short side 1280 at most, long side capped at 2560
        "shortest_edge_c": (2048, 4096),
        "random_resize": (1024, 2048),  # (2048, 512) x 2
    }
