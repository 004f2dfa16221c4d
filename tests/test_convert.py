"""Official checkpoints -> s2f model files, at the library level (``spike2former.convert``)."""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from spike2former import ModelConfig, Spike2Former, load_model, save_model
from spike2former.atomic import write_atomically
from spike2former.convert import convert_checkpoint, infer_config, read_state_dict
from spike2former.errors import CheckpointError
from spike2former.model_file import read_model_config
from tests.helpers import (
    BAD_INPUTS,
    CHECKPOINT_FORMATS,
    MALICIOUS_FORMATS,
    assert_same_outputs,
    make_model,
    official_state,
    run_model,
    sample_images,
    save_checkpoint,
    small_config,
    write_malicious,
)

# Small architectures, none of them a preset, that together give every field the converter reads
# off the weights at least two values (checked by test_grid_varies_every_inferred_field).
WIDE = {"embed_dims": (16, 32, 48, 64), "stage3_depth": 2, "stage4_depth": 3, "mlp_ratio": 4}
GRID: dict[str, ModelConfig] = {
    "sdtv2-narrow": small_config({"version": "sdtv2"}),
    "sdtv3-narrow-groups16": small_config(
        {"version": "sdtv3"}, {"dcn_groups": 16, "num_classes": 2, "decoder_ffn_channels": 16}
    ),
    "sdtv2-wide-groups16": small_config(
        {"version": "sdtv2", **WIDE},
        {
            "num_classes": 3,
            "channels": 48,
            "num_queries": 5,
            "encoder_layers": 2,
            "encoder_ffn_channels": 64,
            "dcn_groups": 16,
            "dcn_dw_kernel_size": 5,
            "decoder_layers": 3,
            "decoder_ffn_channels": 24,
        },
    ),
    "sdtv3-wide": small_config(
        {"version": "sdtv3", **WIDE},
        {
            "num_classes": 7,
            "channels": 48,
            "num_queries": 6,
            "encoder_layers": 2,
            "encoder_ffn_channels": 40,
            "dcn_groups": 8,
            "dcn_dw_kernel_size": 5,
            "decoder_layers": 2,
            "decoder_ffn_channels": 56,
        },
    ),
    "sdtv2-T4": small_config({"version": "sdtv2", "time_steps": 4}),
    # 4 groups x 5x5 = 100 modulation channels: no 3x3 split exists, so k = 5 is the only fit.
    "sdtv3-dcn5x5": small_config({"version": "sdtv3"}, {"dcn_kernel_size": 5}),
    "sdtv3-wide-T4": small_config({"version": "sdtv3", **WIDE, "time_steps": 4}),
}

# Each architecture in one of the three checkpoint layouts, in turn, so that every layout meets
# both backbones; test_checkpoint_layouts_are_equivalent covers the rest of the product.
GRID_CASES = [
    pytest.param(name, fmt, id=f"{name}-{fmt}")
    for name, fmt in zip(GRID, CHECKPOINT_FORMATS * len(GRID), strict=False)
]


INFERRED_FIELDS = {
    "backbone": (
        "version",
        "embed_dims",
        "stage3_depth",
        "stage4_depth",
        "mlp_ratio",
        "time_steps",
    ),
    "head": (
        "num_classes",
        "channels",
        "num_queries",
        "encoder_layers",
        "encoder_ffn_channels",
        "dcn_groups",
        "dcn_kernel_size",
        "dcn_dw_kernel_size",
        "decoder_layers",
        "decoder_ffn_channels",
    ),
}


def assert_same_config(actual: ModelConfig, expected: ModelConfig) -> None:
    assert dataclasses.asdict(actual) == dataclasses.asdict(expected)
    assert actual == expected


def assert_reproduces(model: Spike2Former, path: Path) -> None:
    """The model file at ``path`` computes exactly what ``model`` computes."""
    images = sample_images()
    assert_same_outputs(run_model(model, images), run_model(load_model(path), images))


def test_grid_varies_every_inferred_field() -> None:
    for part, fields in INFERRED_FIELDS.items():
        for name in fields:
            values = {getattr(getattr(config, part), name) for config in GRID.values()}
            assert len(values) >= 2, f"{part}.{name} takes only the value {values}"
    dims = [config.backbone.embed_dims for config in GRID.values()]
    for i in range(4):
        assert len({d[i] for d in dims}) >= 2, f"embed_dims[{i}] never varies"
    pairs = {(fmt, GRID[name].backbone.version) for name, fmt in (c.values for c in GRID_CASES)}
    assert pairs == {(fmt, v) for fmt in CHECKPOINT_FORMATS for v in ("sdtv2", "sdtv3")}


def checkpoint_name(fmt: str) -> str:
    return "official.safetensors" if fmt == "safetensors" else f"official-{fmt}.pth"


@pytest.mark.parametrize(("name", "fmt"), GRID_CASES)
def test_convert_recovers_unseen_architectures_exactly(tmp_path: Path, name: str, fmt: str) -> None:
    config = GRID[name]
    original = make_model(config, seed=len(name))
    source = save_checkpoint(official_state(original), tmp_path / checkpoint_name(fmt), fmt)
    destination = tmp_path / "out" / "model.s2f.safetensors"

    returned = convert_checkpoint(source, destination, time_steps=config.backbone.time_steps)

    assert_same_config(returned, config)
    assert_same_config(read_model_config(destination), config)
    loaded = load_model(destination)
    assert not loaded.training
    assert_same_config(loaded.config, config)
    assert_reproduces(original, destination)
    assert sorted(os.listdir(destination.parent)) == [destination.name]


@pytest.mark.parametrize("name", ["sdtv2-wide-groups16", "sdtv3-wide-T4"])
def test_checkpoint_layouts_are_equivalent(tmp_path: Path, name: str) -> None:
    """The three layouts of the same weights give the same model file contents."""
    config = GRID[name]
    state = official_state(make_model(config, seed=3))
    for fmt in CHECKPOINT_FORMATS:
        source = save_checkpoint(state, tmp_path / checkpoint_name(fmt), fmt)
        destination = tmp_path / f"{fmt}.s2f.safetensors"
        returned = convert_checkpoint(source, destination, config.backbone.time_steps)
        assert_same_config(returned, config)
        assert_same_config(read_model_config(destination), config)
        stored = load_file(str(destination))
        assert sorted(stored) == sorted(state)
        for key, value in state.items():
            assert stored[key].dtype == value.dtype and torch.equal(stored[key], value), key


def test_outputs_depend_on_the_weights() -> None:
    """Guards the comparison above: other weights must give other outputs."""
    config = GRID["sdtv3-wide"]
    images = sample_images()
    first = run_model(make_model(config, 1), images)
    second = run_model(make_model(config, 2), images)
    for key in ("class_logits", "mask_logits"):
        assert first[key].abs().sum() > 0, key  # type: ignore[union-attr]
        assert not torch.equal(first[key], second[key]), key  # type: ignore[arg-type]


def test_time_steps_are_not_in_the_weights(tmp_path: Path) -> None:
    config = GRID["sdtv2-T4"]
    source = save_checkpoint(official_state(make_model(config)), tmp_path / "c.pth", "pth-bare")
    assert convert_checkpoint(source, tmp_path / "t1.safetensors").backbone.time_steps == 1
    assert convert_checkpoint(source, tmp_path / "t4.safetensors", 4).backbone.time_steps == 4
    assert read_model_config(tmp_path / "t1.safetensors").backbone.time_steps == 1
    assert read_model_config(tmp_path / "t4.safetensors").backbone.time_steps == 4


def test_data_parallel_prefix_is_removed(tmp_path: Path) -> None:
    model = make_model(small_config())
    state = {f"module.{k}": v for k, v in official_state(model).items()}
    source = save_checkpoint(state, tmp_path / "ddp.pth", "pth-wrapped")
    assert set(read_state_dict(source)) == set(model.state_dict())
    convert_checkpoint(source, tmp_path / "m.safetensors")
    assert_reproduces(model, tmp_path / "m.safetensors")


def test_class_names_are_stored(checkpoint: Path, tmp_path: Path) -> None:
    names = ("sky", "road", "tree", "car", "person")
    config = convert_checkpoint(checkpoint, tmp_path / "m.safetensors", class_names=names)
    assert config.class_names == names
    assert read_model_config(tmp_path / "m.safetensors").class_names == names


def test_wrong_number_of_class_names(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="inconsistent architecture.*3 class names"):
        convert_checkpoint(checkpoint, tmp_path / "m.safetensors", class_names=("a", "b", "c"))
    assert os.listdir(tmp_path) == [checkpoint.parent.name]


# --- DCN groups vs kernel size: only groups * k * k is stored ------------------------------------


def test_official_layout_32_groups_3x3() -> None:
    config = small_config(head={"channels": 64, "dcn_groups": 32})
    state = official_state(make_model(config))
    mask = "decode_head.pixel_decoder.encoder.layers.0.dcn.mask.0.weight"
    assert state[mask].shape[0] == 288
    head = infer_config(state).head
    assert (head.dcn_groups, head.dcn_kernel_size) == (32, 3)


@pytest.mark.parametrize(
    ("channels", "modulation", "expected"),
    [
        (64, 288, (32, 3)),
        (72, 72, (8, 3)),  # 72 groups x 1x1 fits too: the official 3x3 wins
        (32, 100, (4, 5)),
        (200, 200, (200, 1)),  # no 3x3 split: 200 x 1x1 and 8 x 5x5 fit, the smaller kernel wins
    ],
)
def test_dcn_layout_prefers_3x3(channels: int, modulation: int, expected: tuple[int, int]) -> None:
    state = official_state(make_model(small_config()))
    state["decode_head.query_feat.weight"] = torch.empty(4, channels)
    state["decode_head.pixel_decoder.encoder.layers.0.dcn.mask.0.weight"] = torch.empty(
        modulation, channels, 1, 1
    )
    head = infer_config(state).head
    assert head.channels == channels
    assert (head.dcn_groups, head.dcn_kernel_size) == expected


def test_dcn_layout_that_fits_nothing() -> None:
    state = official_state(make_model(small_config()))
    state["decode_head.pixel_decoder.encoder.layers.0.dcn.mask.0.weight"] = torch.empty(7, 32, 1, 1)
    with pytest.raises(CheckpointError, match="DCN modulation has 7 channels"):
        infer_config(state, source="ckpt.pth")


# --- framework objects around the weights --------------------------------------------------------

HISTORY_BUFFER = """
import numpy as np


class HistoryBuffer:
    def __init__(self, values=(), counts=()):
        self._log_history = np.array(values, dtype=np.float64)
        self._count_history = np.array(counts, dtype=np.int64)
        self.max_length = 1000000
"""


def test_mmengine_checkpoint_without_mmengine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = tmp_path / "site"
    module_dir = packages / "mmengine" / "logging"
    module_dir.mkdir(parents=True)
    (packages / "mmengine" / "__init__.py").write_text("")
    (module_dir / "__init__.py").write_text("")
    (module_dir / "history_buffer.py").write_text(HISTORY_BUFFER)
    monkeypatch.syspath_prepend(str(packages))
    history_buffer = importlib.import_module("mmengine.logging.history_buffer")

    model = make_model(small_config())
    source = tmp_path / "iter_80000.pth"
    torch.save(
        {
            "meta": {"epoch": np.int64(3), "iter": np.int64(80000), "lr": np.float32(6e-5)},
            "state_dict": official_state(model),
            "message_hub": {
                "log_scalars": {"train/loss": history_buffer.HistoryBuffer([2.5, 1.5], [1, 1])},
                "runtime_info": {"dataset_meta": {"palette": np.zeros((3, 3), np.uint8)}},
            },
        },
        source,
    )
    framework_globals = torch.serialization.get_unsafe_globals_in_checkpoint(str(source))
    assert "mmengine.logging.history_buffer.HistoryBuffer" in framework_globals
    for name in [n for n in sys.modules if n == "mmengine" or n.startswith("mmengine.")]:
        del sys.modules[name]
    shutil.rmtree(packages)
    importlib.invalidate_caches()
    with pytest.raises(ImportError):
        importlib.import_module("mmengine")

    config = convert_checkpoint(source, tmp_path / "m.safetensors")

    assert "mmengine" not in sys.modules
    assert_same_config(config, small_config())
    assert_reproduces(model, tmp_path / "m.safetensors")


# --- hostile files ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", MALICIOUS_FORMATS)
@pytest.mark.parametrize("entry", ["read_state_dict", "convert_checkpoint"])
def test_code_in_pickles_is_refused(tmp_path: Path, fmt: str, entry: str) -> None:
    marker = tmp_path / "pwned"
    source = write_malicious(tmp_path / "evil.pth", fmt, marker)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CheckpointError) as info:
        if entry == "read_state_dict":
            read_state_dict(source)
        else:
            convert_checkpoint(source, out_dir / "m.safetensors")
    message = str(info.value)
    assert message.startswith(f"{source}: refusing to load")
    assert f"{os.system.__module__}.system" in message
    assert not marker.exists()
    assert os.listdir(out_dir) == []


# --- damaged or foreign files -------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs(tmp_path: Path, case: str) -> None:
    build, fragments = BAD_INPUTS[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = build(inputs)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    destination = out_dir / "model.s2f.safetensors"

    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(source, destination)

    message = str(info.value)
    assert message.startswith(f"{source}: ")
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    assert not destination.exists()
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize(
    "content",
    [b"", b"hello world\n", b'{"state_dict": {}}', bytes(range(256)) * 4],
    ids=["empty", "hello", "json", "binary"],
)
def test_junk_pth_files(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "junk.pth"
    source.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(source)
    message = str(info.value)
    assert message.startswith(f"{source}: not a")
    assert "weights_only" not in message  # no advice to unpickle unsafely


def test_unwritable_destination(checkpoint: Path, tmp_path: Path) -> None:
    directory = tmp_path / "model.s2f.safetensors"
    directory.mkdir()
    with pytest.raises(CheckpointError, match="cannot write"):
        convert_checkpoint(checkpoint, directory)
    assert directory.is_dir() and os.listdir(directory) == []
    assert sorted(os.listdir(tmp_path)) == sorted([checkpoint.parent.name, directory.name])


def test_write_atomically_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")

    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, fail)
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == [target.name]


# --- s2f model files ----------------------------------------------------------------------------


def test_save_and_load_model(tmp_path: Path) -> None:
    config = small_config(class_names=("sky", "road", "tree", "car", "person"))
    model = make_model(config, seed=7)
    path = save_model(model, tmp_path / "nested" / "m.safetensors")
    assert path == tmp_path / "nested" / "m.safetensors"
    assert os.listdir(path.parent) == [path.name]

    loaded = load_model(path)
    assert_same_config(read_model_config(path), config)
    assert_same_config(loaded.config, config)
    assert loaded.config.class_names == ("sky", "road", "tree", "car", "person")
    assert not loaded.training
    expected, actual = model.state_dict(), loaded.state_dict()
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and torch.equal(actual[key], value), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_load_model_needs_a_converted_file(tmp_path: Path, suffix: str) -> None:
    state = official_state(make_model(small_config()))
    path = tmp_path / f"official{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    for call in (load_model, read_model_config):
        with pytest.raises(CheckpointError) as info:
            call(path)
        assert str(info.value).startswith(f"{path}: ")
        assert "`s2f convert`" in str(info.value)


def test_load_model_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such model file"):
        load_model(tmp_path / "absent.safetensors")
