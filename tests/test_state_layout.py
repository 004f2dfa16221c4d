"""A configuration's tensors known without allocating them (``spike2former.state_layout``)."""

from __future__ import annotations

import pytest

from spike2former import ModelConfig, build_model
from spike2former.config_checks import MAX_CLASSES, MAX_TEST_SIZE
from spike2former.errors import CheckpointError
from spike2former.presets import PRESETS
from spike2former.state_layout import (
    COPIES_WHILE_LOADING,
    check_fits_in_memory,
    check_layout,
    layout_bytes,
    state_layout,
    tensor_layout,
)
from tests.helpers import small_config


@pytest.mark.parametrize(
    "config",
    [PRESETS["tiny"], small_config({"version": "sdtv2"}), small_config(spiking=False)],
    ids=["tiny", "sdtv2", "conventional"],
)
def test_layout_is_the_built_networks(config: ModelConfig) -> None:
    network = build_model(config)
    assert state_layout(network.config) == tensor_layout(network.state_dict())
    assert layout_bytes(state_layout(network.config)) == sum(
        v.numel() * v.element_size() for v in network.state_dict().values()
    )


def test_every_official_size_fits_the_bounds() -> None:
    """Spike2Former-L (200 queries, 9 decoder layers), thousands of classes, native test size."""
    small_config(head={"num_queries": 200, "decoder_layers": 9}, test_size=MAX_TEST_SIZE)
    small_config(head={"num_classes": MAX_CLASSES}, test_size=0)
    layout = state_layout(PRESETS["sdtv3b-ade20k"])
    assert 150e6 < layout_bytes(layout) < 160e6  # 38 M float32 parameters plus BN statistics


def test_memory_check() -> None:
    layout = state_layout(small_config())
    needed = COPIES_WHILE_LOADING * layout_bytes(layout)
    check_fits_in_memory(layout, "m.safetensors", available=needed)
    with pytest.raises(CheckpointError, match=r"^m\.safetensors: .* of memory available$"):
        check_fits_in_memory(layout, "m.safetensors", available=needed - 1)


def test_layout_mismatches_are_listed() -> None:
    expected = {"a": ((2, 3), "float32"), "b": ((4,), "int64"), "c": ((1,), "float32")}
    found = {"a": ((3, 2), "float64"), "b": ((4,), "bool"), "d": ((1,), "float32")}
    with pytest.raises(CheckpointError) as info:
        check_layout(expected, found, "f")
    assert str(info.value) == (
        "f: weights do not fit the model; missing keys: c; unexpected keys: d; "
        "shape mismatches: a: file [3, 2] vs model [2, 3]; dtype mismatches: b: file bool vs "
        "model int64"
    )
    check_layout(expected, {**expected, "a": ((2, 3), "bfloat16"), "b": ((4,), "int32")}, "f")
