"""Builders shared by the library and CLI tests: small configurations, official-style checkpoints
(random weights, official key names) and the damaged or hostile files the converter must refuse."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from spike2former import (
    BackboneConfig,
    HeadConfig,
    ModelConfig,
    Spike2Former,
    build_model,
    save_model,
)

# One small network; the grids in the tests override single fields of it.
SMALL_BACKBONE = BackboneConfig(
    version="sdtv3", embed_dims=(8, 16, 32, 40), stage3_depth=1, stage4_depth=1, mlp_ratio=2
)
SMALL_HEAD = HeadConfig(
    num_classes=5,
    channels=32,
    num_queries=4,
    encoder_layers=1,
    encoder_ffn_channels=24,
    dcn_groups=4,
    dcn_dw_kernel_size=3,
    decoder_layers=1,
    decoder_ffn_channels=40,
)

# How an official checkpoint may be stored: safetensors, a bare pickled state dict, or the
# mmengine layout (a dict with ``state_dict`` and ``meta``).
CHECKPOINT_FORMATS = ("safetensors", "pth-bare", "pth-wrapped")


def small_config(
    backbone: dict[str, object] | None = None,
    head: dict[str, object] | None = None,
    **model: object,
) -> ModelConfig:
    """``SMALL_BACKBONE`` / ``SMALL_HEAD`` with the given fields replaced."""
    return ModelConfig(
        backbone=dataclasses.replace(SMALL_BACKBONE, **(backbone or {})),
        head=dataclasses.replace(SMALL_HEAD, **(head or {})),
        **model,
    )


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every floating parameter and buffer random values, large enough for spikes to fire
    everywhere (freshly initialised networks output all-zero masks, which would compare equal
    whatever the weights)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value
            continue
        if key.endswith("running_var"):
            new = torch.rand(value.shape, generator=gen) + 0.5
        elif value.dim() >= 2:
            new = torch.randn(value.shape, generator=gen) * (2.0 / math.sqrt(value[0].numel()))
        elif key.endswith("weight"):
            new = torch.rand(value.shape, generator=gen) + 0.5
        else:
            new = torch.randn(value.shape, generator=gen) * 0.5
        state[key] = new.to(value.dtype)
    model.load_state_dict(state)
    return model


def make_model(config: ModelConfig, seed: int = 0) -> Spike2Former:
    """A float32 network with random weights, in evaluation mode."""
    return randomize_(build_model(config), seed).eval()


def official_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """What an official checkpoint holds: the state dict, contiguous, on the CPU."""
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(state: dict[str, Tensor], path: Path, fmt: str) -> Path:
    """Write ``state`` the way official checkpoints are distributed (see ``CHECKPOINT_FORMATS``)."""
    if fmt == "safetensors":
        save_file(state, str(path))
    elif fmt == "pth-bare":
        torch.save(state, path)
    elif fmt == "pth-wrapped":
        meta = {"epoch": 3, "iter": 160000, "env_info": "sys.platform: linux", "seed": 0}
        torch.save({"state_dict": state, "meta": meta}, path)
    else:
        raise ValueError(fmt)
    return path


def write_official_checkpoint(
    path: Path, config: ModelConfig | None = None, fmt: str = "pth-wrapped", seed: int = 0
) -> Path:
    """An official-style checkpoint of a small random network at ``path``."""
    model = make_model(config or small_config(), seed)
    return save_checkpoint(official_state(model), path, fmt)


def run_model(model: Spike2Former, images: Tensor) -> dict[str, object]:
    """All stages' outputs of ``model`` in float64 (on a copy; ``model`` is left alone)."""
    net = build_model(model.config).double().eval()
    net.load_state_dict(model.state_dict())
    with torch.no_grad():
        return net(images.double(), return_aux=True)


def sample_images(seed: int = 0) -> Tensor:
    """A small float64 batch [1, 3, 64, 96] (not square, so that an H/W swap shows)."""
    return torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(seed)).double()


def assert_same_outputs(expected: dict[str, object], actual: dict[str, object]) -> None:
    """Bit-identical class and mask logits at every decoder stage."""
    assert len(expected["aux"]) == len(actual["aux"])  # type: ignore[arg-type]
    stages = [*expected["aux"], expected]  # type: ignore[misc]
    others = [*actual["aux"], actual]  # type: ignore[misc]
    for i, (want, got) in enumerate(zip(stages, others, strict=True)):
        for key in ("class_logits", "mask_logits"):
            assert got[key].shape == want[key].shape, (i, key)
            assert torch.equal(got[key], want[key]), f"stage {i} {key} differs"


# --- hostile and damaged inputs ---------------------------------------------------------------


class RunsCommand:
    """Unpickling this object runs a shell command (``os.system``)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


# torch.save (zip and legacy layouts, default pickle protocol 2 and protocol 4) and plain pickles
MALICIOUS_FORMATS = (
    "torch-zip",
    "torch-legacy",
    "torch-legacy-protocol-4",
    "raw-pickle-0",
    "raw-pickle-default",
    "raw-pickle-5",
)


def write_malicious(path: Path, fmt: str, marker: Path) -> Path:
    """A .pth that would create ``marker`` if unpickled with ``weights_only=False``."""
    payload = RunsCommand(f"touch {marker}")
    checkpoint = {"state_dict": {"backbone.w": torch.zeros(1)}, "meta": payload}
    if fmt == "torch-zip":
        torch.save(checkpoint, path)
    elif fmt == "torch-legacy":
        torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    elif fmt == "torch-legacy-protocol-4":
        torch.save(checkpoint, path, pickle_protocol=4, _use_new_zipfile_serialization=False)
    elif fmt == "raw-pickle-default":
        path.write_bytes(pickle.dumps(payload))
    elif fmt.startswith("raw-pickle-"):
        path.write_bytes(pickle.dumps(payload, protocol=int(fmt.rsplit("-", 1)[1])))
    else:
        raise ValueError(fmt)
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_state(edit: Callable[[dict[str, Tensor]], None]) -> Callable[[Path], Path]:
    def make(directory: Path) -> Path:
        state = official_state(make_model(small_config()))
        edit(state)
        return save_checkpoint(state, directory / "edited.pth", "pth-wrapped")

    return make


MISSING_KEY = "decode_head.pixel_decoder.encoder.layers.0.dcn.input_proj.pwconv1.1.running_mean"
EXTRA_KEY = "decode_head.extra_head.weight"
RESHAPED_KEY = "decode_head.transformer_decoder.layers.0.ffn.fc2.weight"
DCN_MASK_KEY = "decode_head.pixel_decoder.encoder.layers.0.dcn.mask.0.weight"


def _remove_key(state: dict[str, Tensor]) -> None:
    del state[MISSING_KEY]


def _add_key(state: dict[str, Tensor]) -> None:
    state[EXTRA_KEY] = torch.zeros(3, 3)


def _reshape_key(state: dict[str, Tensor]) -> None:
    state[RESHAPED_KEY] = state[RESHAPED_KEY].reshape(-1)


def _missing(directory: Path) -> Path:
    return directory / "missing.pth"


def _text(directory: Path) -> Path:
    path = directory / "notes.pth"
    path.write_text("this is not a checkpoint\n")
    return path


def _image(directory: Path) -> Path:
    path = directory / "photo.pth"  # a PNG under a checkpoint's name
    path.write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    return path


def _truncated_pth(directory: Path) -> Path:
    path = write_official_checkpoint(directory / "truncated.pth")
    assert zipfile.is_zipfile(path)
    _truncate(path)
    return path


def _truncated_safetensors(directory: Path) -> Path:
    path = write_official_checkpoint(directory / "truncated.safetensors", fmt="safetensors")
    _truncate(path)
    return path


def _other_model(directory: Path) -> Path:
    state = {
        "conv1.weight": torch.zeros(64, 3, 7, 7),
        "bn1.weight": torch.ones(64),
        "fc.weight": torch.zeros(1000, 512),
    }
    return save_checkpoint(state, directory / "resnet.pth", "pth-bare")


def _empty_dict(directory: Path) -> Path:
    path = directory / "empty.pth"
    torch.save({}, path)
    return path


def _not_tensors(directory: Path) -> Path:
    path = directory / "scalars.pth"
    torch.save({"state_dict": {"backbone.x": 1.5}}, path)
    return path


def _random_bytes(directory: Path) -> Path:
    path = directory / "noise.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _empty_file(directory: Path) -> Path:
    path = directory / "empty.pth"
    path.touch()
    return path


def _plain_zip(directory: Path) -> Path:
    path = directory / "archive.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a checkpoint")
    return path


# Official-looking checkpoints whose shapes describe absurd networks: a tensor with a zero-sized
# dimension holds no data, so its other dimensions cost nothing in the file.
def _huge_width(state: dict[str, Tensor]) -> None:
    state["backbone.downsample4.encode_conv.weight"] = torch.zeros(10**6, 0, 3, 3)


def _many_blocks(state: dict[str, Tensor]) -> None:
    empty = torch.zeros(0)  # one storage for all: quick to save and load
    for index in range(1, 10**4):
        state[f"backbone.block3.{index}.attn.q_conv.0.weight"] = empty


def _many_classes(state: dict[str, Tensor]) -> None:
    state["decode_head.cls_embed.weight"] = torch.zeros(10**6 + 1, 0)


def _huge_modulation(state: dict[str, Tensor]) -> None:
    state[DCN_MASK_KEY] = torch.zeros(10**18, 0)


def _scalar_queries(state: dict[str, Tensor]) -> None:
    state["decode_head.query_feat.weight"] = torch.tensor(1.0)


def _bool_weights(state: dict[str, Tensor]) -> None:
    state[RESHAPED_KEY] = state[RESHAPED_KEY] > 0


def _too_big_for_memory(state: dict[str, Tensor]) -> None:
    """Widths within every bound, but a network of terabytes."""
    width, stem = 16384, 8192
    for key, shape in (
        ("downsample1_1", (stem, 0, 7, 7)),
        ("downsample1_2", (width, 0, 3, 3)),
        ("downsample2", (width, 0, 3, 3)),
        ("downsample3", (width, 0, 3, 3)),
        ("downsample4", (width, 0, 3, 3)),
    ):
        state[f"backbone.{key}.encode_conv.weight"] = torch.zeros(shape)
    state["backbone.ConvBlock1_1.0.conv1.weight"] = torch.zeros(stem * 64, 0, 3, 3)


# name -> (builder(directory) -> path, fragments the error message must contain; the path of
# the file is always required as well)
BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "missing-file": (_missing, ("no such file",)),
    "text-file": (_text, ("not a PyTorch checkpoint", "neither the zip archive nor the pickle")),
    "image-file": (_image, ("not a PyTorch checkpoint", "neither the zip archive nor the pickle")),
    "truncated-pth": (_truncated_pth, ("truncated or corrupt",)),
    "truncated-safetensors": (_truncated_safetensors, ("not a readable safetensors file",)),
    "other-model": (_other_model, ("not a Spike2Former checkpoint",)),
    "empty-dict": (_empty_dict, ("no state dict",)),
    "not-tensors": (_not_tensors, ("'backbone.x' is not a tensor",)),
    "missing-key": (_edit_state(_remove_key), ("missing keys", MISSING_KEY)),
    "unexpected-key": (_edit_state(_add_key), ("unexpected keys", EXTRA_KEY)),
    "reshaped-tensor": (_edit_state(_reshape_key), ("shape mismatches", RESHAPED_KEY)),
    "random-bytes": (_random_bytes, ("not a",)),
    "empty-file": (_empty_file, ("not a",)),
    "plain-zip": (_plain_zip, ("not a readable PyTorch checkpoint",)),
    "huge-width": (_edit_state(_huge_width), ("backbone.embed_dims[3]", "1000000")),
    "many-blocks": (_edit_state(_many_blocks), ("backbone.stage3_depth", "10000")),
    "many-classes": (_edit_state(_many_classes), ("head.num_classes", "1000000")),
    "huge-dcn-modulation": (_edit_state(_huge_modulation), ("DCN modulation",)),
    "scalar-for-matrix": (_edit_state(_scalar_queries), ("decode_head.query_feat.weight", "[]")),
    "bool-weights": (_edit_state(_bool_weights), ("dtype mismatches", RESHAPED_KEY, "bool")),
    "too-big-for-memory": (_edit_state(_too_big_for_memory), ("of memory available",)),
}


# --- hostile and damaged s2f model files ---------------------------------------------------------


def write_model_file(path: Path, config: ModelConfig | None = None) -> Path:
    """An s2f model file of a small random network."""
    return save_model(make_model(config or small_config()), path)


def edit_model_file(
    path: Path,
    config: Callable[[dict[str, Any]], None] | None = None,
    state: Callable[[dict[str, Tensor]], None] | None = None,
    metadata: Callable[[dict[str, str]], None] | None = None,
) -> Path:
    """Rewrite the model file ``path`` with its configuration, tensors or raw metadata edited
    (what anyone with a few lines of Python can do to a file they hand out)."""
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    if config is not None:
        data = json.loads(meta["config"])
        config(data)
        meta["config"] = json.dumps(data)
    if state is not None:
        state(tensors)
    if metadata is not None:
        metadata(meta)
    save_file(tensors, str(path), metadata=meta)
    return path


def edit_header(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Rewrite the safetensors header of ``path``, the data left as it is."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    edit(header)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + length :])
    return path


def set_field(name: str, value: object) -> Callable[[dict[str, Any]], None]:
    """An edit of a configuration dict that sets the dotted field ``name`` to ``value``."""

    def edit(config: dict[str, Any]) -> None:
        *parents, last = name.split(".")
        target = config
        for parent in parents:
            target = target[parent]
        target[last] = value

    return edit


def _model_file(
    config: Callable[[dict[str, Any]], None] | None = None,
    state: Callable[[dict[str, Tensor]], None] | None = None,
    metadata: Callable[[dict[str, str]], None] | None = None,
) -> Callable[[Path], Path]:
    def make(directory: Path) -> Path:
        path = write_model_file(directory / "model.safetensors")
        return edit_model_file(path, config, state, metadata)

    return make


def _raw_model_file(edit: Callable[[Path], None]) -> Callable[[Path], Path]:
    def make(directory: Path) -> Path:
        path = write_model_file(directory / "model.safetensors")
        edit(path)
        return path

    return make


def _huge_header_shape(header: dict[str, Any]) -> None:
    header[RESHAPED_KEY]["shape"] = [10**6, 10**6]  # the data offsets keep the real size


def _claimed_header_length(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes((1 << 40).to_bytes(8, "little") + raw[8:])


def _pickle_as_model(directory: Path) -> Path:
    """A pickle that would run ``touch pwned`` in ``directory`` if unpickled unsafely."""
    return write_malicious(directory / "model.safetensors", "torch-zip", directory / "pwned")


def _bytes_file(data: bytes) -> Callable[[Path], Path]:
    def make(directory: Path) -> Path:
        path = directory / "model.safetensors"
        path.write_bytes(data)
        return path

    return make


def _with_state(key: str, value: Tensor) -> Callable[[dict[str, Tensor]], None]:
    def edit(state: dict[str, Tensor]) -> None:
        state[key] = value

    return edit


def _as_dtype(key: str, dtype: torch.dtype) -> Callable[[dict[str, Tensor]], None]:
    def edit(state: dict[str, Tensor]) -> None:
        state[key] = state[key].to(dtype)

    return edit


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    def edit(values: dict[str, Any]) -> None:
        del values[key]

    return edit


_CLASS_KEY = "decode_head.cls_embed.weight"
# Every bound of the configuration respected, but a network of terabytes.
_TOO_BIG = {"embed_dims": [16384] * 4, "mlp_ratio": 64, "stage3_depth": 1, "stage4_depth": 1}

# Model files whose metadata or header is hostile: name -> (builder(directory) -> path of
# ``model.safetensors`` in it, fragments the error must contain besides the path). Each is
# refused before any tensor or module is allocated.
BAD_MODEL_METADATA: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "num-classes-1e6": (_model_file(set_field("head.num_classes", 10**6)), ("head.num_classes",)),
    "embed-dim-1e6": (
        _model_file(set_field("backbone.embed_dims", [16, 32, 10**6, 40])),
        ("backbone.embed_dims[2]",),
    ),
    "depth-1e4": (_model_file(set_field("backbone.stage3_depth", 10**4)), ("stage3_depth",)),
    "decoder-layers-1e5": (
        _model_file(set_field("head.decoder_layers", 10**5)),
        ("head.decoder_layers",),
    ),
    "test-size-1e6": (_model_file(set_field("test_size", 10**6)), ("test_size",)),
    "test-size-negative": (_model_file(set_field("test_size", -512)), ("test_size",)),
    "zero-queries": (_model_file(set_field("head.num_queries", 0)), ("head.num_queries",)),
    "text-for-integer": (_model_file(set_field("head.channels", "32")), ("head.channels",)),
    "float-for-integer": (_model_file(set_field("head.num_queries", 4.5)), ("num_queries",)),
    "bool-for-integer": (_model_file(set_field("backbone.time_steps", True)), ("time_steps",)),
    "nan-scale": (
        _model_file(set_field("head.mask_embed_scale", float("nan"))),
        ("head.mask_embed_scale",),
    ),
    "integer-of-5000-digits": (
        _model_file(
            metadata=lambda m: m.update(
                config=m["config"].replace('"num_queries": 4', '"num_queries": ' + "9" * 5000)
            )
        ),
        ("invalid configuration",),
    ),
    "unknown-field": (_model_file(set_field("weights_url", "http://x")), ("unknown",)),
    "head-not-an-object": (_model_file(set_field("head", [1, 2])), ("head must be an object",)),
    "class-names-count": (
        _model_file(set_field("class_names", ["sky", "road"])),
        ("2 class names given for 5 classes",),
    ),
    "class-name-not-text": (
        _model_file(set_field("class_names", [1, 2, 3, 4, 5])),
        ("class_names[0]",),
    ),
    "palette-count": (
        _model_file(set_field("palette", [[0, 0, 0]])),
        ("1 palette colours for 5 classes",),
    ),
    "palette-value": (
        _model_file(set_field("palette", [[0, 0, 0]] * 4 + [[0, 0, 300]])),
        ("palette colours", "300"),
    ),
    "config-not-json": (
        _model_file(metadata=lambda m: m.update(config="{not json")),
        ("invalid configuration",),
    ),
    "config-nested-1e5-deep": (
        _model_file(metadata=lambda m: m.update(config="[" * 10**5 + "]" * 10**5)),
        ("invalid configuration",),
    ),
    "format-version-2": (
        _model_file(metadata=lambda m: m.update(format_version="2")),
        ("format version",),
    ),
    "no-format-version": (_model_file(metadata=_without("format_version")), ("format version",)),
    "too-big-for-memory": (
        _model_file(lambda c: c["backbone"].update(_TOO_BIG)),
        ("of memory available",),
    ),
    "header-shape-vs-classes": (
        _model_file(set_field("head.num_classes", 6)),
        ("shape mismatches", _CLASS_KEY),
    ),
    "header-dtype": (
        _model_file(state=_as_dtype(RESHAPED_KEY, torch.int32)),
        ("dtype mismatches", RESHAPED_KEY, "int32"),
    ),
    "header-missing-key": (_model_file(state=_without(MISSING_KEY)), ("missing keys",)),
    "header-extra-key": (
        _model_file(state=_with_state(EXTRA_KEY, torch.zeros(3))),
        ("unexpected keys", EXTRA_KEY),
    ),
    "header-huge-shape": (
        _raw_model_file(lambda p: edit_header(p, _huge_header_shape)),
        ("not a readable safetensors model file",),
    ),
    "header-length-1tb": (
        _raw_model_file(_claimed_header_length),
        ("not a readable safetensors model file",),
    ),
}

# Files that are no model file at all, under a model file's name.
NOT_MODEL_FILES: dict[str, Callable[[Path], Path]] = {
    "empty": _bytes_file(b""),
    "text": _bytes_file(b"weights = [1, 2, 3]\n"),
    "random-bytes": _bytes_file(np.random.default_rng(1).bytes(4096)),
    "truncated": _raw_model_file(_truncate),
    "torch-zip": lambda d: write_official_checkpoint(d / "model.safetensors"),
    "pickle-that-runs-code": _pickle_as_model,
    "official-safetensors": lambda d: write_official_checkpoint(
        d / "model.safetensors", fmt="safetensors"
    ),
}


# --- images and videos for the inference tests ------------------------------------------------


def random_rgb(height: int = 40, width: int = 56, seed: int = 0) -> np.ndarray:
    """An ``HxWx3`` uint8 RGB image of noise (not square, so that an H/W swap shows)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_image(path: Path, rgb: np.ndarray, mode: str | None = None, **save: object) -> Path:
    """Write ``rgb`` with Pillow in the format of the path's suffix; ``mode`` converts first
    (``L``, ``RGBA``, ``P``, ``I;16``); ``save`` goes to ``Image.save`` (``exif=...``, ...)."""
    image = Image.fromarray(rgb)
    if mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    elif mode == "RGBA":
        image = Image.fromarray(np.dstack([rgb, rgb[..., :1]]))
    elif mode is not None:
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save)
    return path


def write_video(
    path: Path, frames: int = 7, fourcc: str = "mp4v", size: tuple[int, int] = (40, 56)
) -> Path:
    """A video of ``frames`` noise frames of ``size`` (height, width) at 10 fps."""
    height, width = size
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for index in range(frames):
        writer.write(random_rgb(height, width, seed=100 + index))
    writer.release()
    return path


def count_frames(path: Path) -> int:
    """Frames OpenCV decodes from a video file (read to the end, not the header's count)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count
