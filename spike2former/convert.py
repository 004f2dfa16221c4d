"""Official Spike2Former checkpoints -> s2f model files.

The whole architecture is read off the key names and tensor shapes; the weights keep their
official keys. ``.pth`` files are opened with ``torch.load(weights_only=True)``: objects of the
training framework that surround the weights (mmengine message hubs, numpy scalars) are replaced by
inert placeholders that run no code, and a file that references anything else is refused.
"""

from __future__ import annotations

import math
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from .config import BackboneConfig, HeadConfig, ModelConfig
from .config_checks import LIMITS
from .errors import CheckpointError
from .model_file import build_for_weights, load_weights, save_model
from .state_layout import tensor_layout

# Modules whose objects may appear around the weights in an mmengine checkpoint (message hub,
# meta data) or an ImageNet backbone checkpoint (the training arguments, an argparse.Namespace).
# They are never imported: each such global is mapped to ``_Inert``.
_FRAMEWORK_MODULES = ("mmengine", "mmcv", "mmseg", "mmdet", "numpy", "argparse")


class _Inert:
    """Placeholder for a framework object: accepts any construction and state, does nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


def read_state_dict(
    path: str | os.PathLike[str], containers: tuple[str, ...] = ("state_dict",)
) -> dict[str, Tensor]:
    """The weights of an official checkpoint (``.pth`` dict with ``state_dict``, a bare state
    dict, or ``.safetensors`` with official key names), keys with any ``module.`` prefix removed.

    ``containers``: keys under which a ``.pth`` dict may hold the weights, tried in order
    (ImageNet classification checkpoints use ``model``)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            state: object = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        state = _load_pickled(path)
    for container in containers:
        if isinstance(state, dict) and isinstance(state.get(container), dict):
            state = state[container]
            break
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: no state dict inside (expected a dict of tensors)")
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is not a tensor; not a state dict")
        tensors[str(key).removeprefix("module.")] = value
    return tensors


def _load_pickled(path: Path) -> object:
    is_zip = zipfile.is_zipfile(path)
    placeholders = []
    if is_zip:
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure here means a damaged archive
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
        for name in needed:
            if name.split(".")[0] not in _FRAMEWORK_MODULES:
                raise _refusal(path, name)
            placeholders.append((_Inert, name))
    try:
        with torch.serialization.safe_globals(placeholders), warnings.catch_warnings():
            # Raised for pickles not written by torch.save (protocol > 2); the error says enough.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        match = re.search(r"GLOBAL ([\w.]+)", str(exc))
        name = match.group(1) if match else None
        if name is None and not is_zip:
            name = _first_unsafe_global(path)
        if name:
            raise _refusal(path, name) from None
        raise _not_a_checkpoint(path, exc, is_zip) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint, truncated or corrupt ({_first_line(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the weights-only unpickler fails on junk in many ways
        raise _not_a_checkpoint(path, exc, is_zip) from None


def _not_a_checkpoint(path: Path, exc: BaseException, is_zip: bool) -> CheckpointError:
    """The refusal of a file torch cannot unpickle. A file that is neither a zip archive nor
    starts like a pickle (an image, text, random bytes) is said to be so: the unpickler's own
    words ("Unsupported operand 80") would only puzzle."""
    with open(path, "rb") as file:
        starts_like_pickle = file.read(1) == pickle.PROTO
    if not is_zip and not starts_like_pickle:
        return CheckpointError(
            f"{path}: not a PyTorch checkpoint (neither the zip archive nor the pickle that "
            "torch.save writes)"
        )
    return CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})")


def _first_unsafe_global(path: Path) -> str | None:
    """The first global other than torch's own, ``OrderedDict`` and the framework modules that
    the pickles in ``path`` reference, to name in the refusal. torch's own error names it only for
    pickle protocols below 4: it stops at the first opcode it does not know."""
    with open(path, "rb") as file:
        try:
            while True:  # a legacy torch file is several pickles in a row
                memo: dict[object, object] = {}
                strings: list[str] = []  # every string pushed so far, memo fetches included
                pushed: object = None  # what the previous opcode pushed
                for op, arg, _ in pickletools.genops(file):
                    name = None
                    if op.name == "GLOBAL":
                        name = str(arg).replace(" ", ".")
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        name = f"{strings[-2]}.{strings[-1]}"
                    if name and not _is_weights_global(name):
                        return name
                    if op.name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                        memo[len(memo) if arg is None else arg] = pushed
                        continue
                    pushed = memo.get(arg) if op.name in ("GET", "BINGET", "LONG_BINGET") else arg
                    if isinstance(pushed, str):
                        strings.append(pushed)
        except Exception:  # noqa: BLE001 - the end of the pickles, or no pickle at all
            return None


def _is_weights_global(name: str) -> bool:
    """Globals a state dict legitimately references (tensor rebuilding) or that get placeholders."""
    module = name.split(".")[0]
    return module == "torch" or name == "collections.OrderedDict" or module in _FRAMEWORK_MODULES


def _refusal(path: Path, name: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: refusing to load: unpickling it would call {name}, which could run arbitrary "
        "code. If you trust the file, re-save only its weights with "
        "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pth')"
    )


def _first_line(exc: BaseException) -> str:
    # torch's weights-only failures open with advice to retry with weights_only=False; the
    # actual cause follows this marker.
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]


def infer_config(
    state: dict[str, Tensor],
    time_steps: int = 1,
    class_names: tuple[str, ...] | None = None,
    source: str = "checkpoint",
) -> ModelConfig:
    """Read the architecture of an official checkpoint off its keys and shapes.

    Attention head counts, spike levels and the mask-embedding scale leave no trace in the
    weights; they keep the official values (8 heads, D = 4 / 8, alpha = 4). ``time_steps`` (T) is
    not stored either and must be given for the T = 4 COCO-Stuff models.
    """

    def size(key: str, dim: int = 0) -> int:
        if key not in state:
            hint = ", ".join(sorted(state)[:3])
            raise CheckpointError(
                f"{source}: not a Spike2Former checkpoint: key {key!r} not found "
                f"(the file has {len(state)} keys, e.g. {hint})"
            )
        shape = state[key].shape
        if not -len(shape) <= dim < len(shape) or shape[dim] < 1:
            raise CheckpointError(
                f"{source}: not a Spike2Former checkpoint: {key!r} has shape {list(shape)}"
            )
        return shape[dim]

    def count(prefix: str) -> int:
        pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
        return len({m.group(1) for k in state if (m := pattern.match(k))})

    if "backbone.block3.0.attn.q_conv.0.body.0.weight" in state:
        version = "sdtv2"
    elif "backbone.block3.0.attn.q_conv.0.weight" in state:
        version = "sdtv3"
    else:
        size("backbone.block3.0.attn.q_conv.0.weight")
        raise AssertionError("unreachable")
    half = size("backbone.downsample1_1.encode_conv.weight")
    embed_dims = (
        size("backbone.downsample1_2.encode_conv.weight"),
        size("backbone.downsample2.encode_conv.weight"),
        size("backbone.downsample3.encode_conv.weight"),
        size("backbone.downsample4.encode_conv.weight"),
    )
    if half * 2 != embed_dims[0]:
        raise CheckpointError(f"{source}: stem width {half} is not half of {embed_dims[0]}")
    mlp_ratio = size("backbone.ConvBlock1_1.0.conv1.weight") // half
    backbone = BackboneConfig(
        version=version,
        embed_dims=embed_dims,
        stage3_depth=count("backbone.block3"),
        stage4_depth=count("backbone.block4"),
        mlp_ratio=mlp_ratio,
        time_steps=time_steps,
    )

    queries, channels = (
        size("decode_head.query_feat.weight"),
        size("decode_head.query_feat.weight", 1),
    )
    encoder = "decode_head.pixel_decoder.encoder.layers"
    decoder = "decode_head.transformer_decoder.layers"
    groups, kernel = _dcn_layout(size(f"{encoder}.0.dcn.mask.0.weight"), channels, source)
    head = HeadConfig(
        num_classes=size("decode_head.cls_embed.weight") - 1,
        channels=channels,
        num_queries=queries,
        encoder_layers=count(encoder),
        encoder_ffn_channels=size(f"{encoder}.0.ffn.fc1_conv.weight"),
        dcn_groups=groups,
        dcn_kernel_size=kernel,
        dcn_dw_kernel_size=size(f"{encoder}.0.dcn.dw_conv.0.weight", -1),
        decoder_layers=count(decoder),
        decoder_ffn_channels=size(f"{decoder}.0.ffn.fc1.weight"),
    )
    try:
        return ModelConfig(backbone=backbone, head=head, class_names=class_names)
    except ValueError as exc:
        raise CheckpointError(f"{source}: inconsistent architecture ({exc})") from None


def _dcn_layout(modulation_channels: int, channels: int, source: str) -> tuple[int, int]:
    """Split the G*k*k modulation channels into (groups G, kernel size k).

    Only the product is stored. Candidates are odd k (up to the largest kernel a configuration
    allows) with G dividing the channel count; the official 3x3 kernel wins when it fits,
    otherwise the smallest kernel.
    """
    largest = LIMITS["head.dcn_kernel_size"][1]
    candidates = [
        (modulation_channels // (k * k), k)
        for k in range(1, min(math.isqrt(modulation_channels), largest) + 1, 2)
        if modulation_channels % (k * k) == 0 and channels % (modulation_channels // (k * k)) == 0
    ]
    if not candidates:
        raise CheckpointError(
            f"{source}: DCN modulation has {modulation_channels} channels, which is not "
            f"groups x k x k for any odd k and groups dividing {channels}"
        )
    for groups, kernel in candidates:
        if kernel == 3:
            return groups, kernel
    return candidates[0]


def convert_checkpoint(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    time_steps: int = 1,
    class_names: tuple[str, ...] | None = None,
) -> ModelConfig:
    """Convert an official checkpoint into an s2f model file; returns the inferred configuration."""
    state = read_state_dict(source)
    config = infer_config(state, time_steps, class_names, source=str(source))
    model = build_for_weights(config, tensor_layout(state), str(source))
    load_weights(model, state, str(source))
    save_model(model, destination)
    return config
