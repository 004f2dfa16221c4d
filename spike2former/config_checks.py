"""Which configurations a network can be built from: every field's type and range.

A model file's metadata is data from anywhere, so a damaged or hostile file must not be able to
describe absurd layers. The ranges below are generous (every official model sits far inside
them, user models may have up to ``MAX_CLASSES`` classes); what a whole network within them
needs is checked against the memory there is before a model file is loaded
(``state_layout.check_fits_in_memory``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import ModelConfig

MAX_WIDTH = 16384  # channels of any layer; the official models use at most 2048
MAX_LAYERS = 128  # blocks of a stage, encoder or decoder layers; the official ones use at most 9
MAX_CLASSES = 10_000
MAX_CLASS_NAME = 256  # characters
MAX_TEST_SIZE = 8192  # short side in pixels; the official models use 512 and 1024

# Inclusive ranges of the integer fields, by their dotted names.
LIMITS: dict[str, tuple[int, int]] = {
    "backbone.embed_dims": (2, MAX_WIDTH),
    "backbone.stage3_depth": (0, MAX_LAYERS),
    "backbone.stage4_depth": (0, MAX_LAYERS),
    "backbone.num_heads": (1, 256),
    "backbone.mlp_ratio": (1, 64),
    "backbone.time_steps": (1, 64),
    "backbone.spike_levels": (1, 255),
    "head.num_classes": (1, MAX_CLASSES),
    "head.channels": (2, MAX_WIDTH),
    "head.num_queries": (1, 4096),
    "head.encoder_layers": (0, MAX_LAYERS),
    "head.encoder_ffn_channels": (1, 4 * MAX_WIDTH),
    "head.dcn_groups": (1, MAX_WIDTH),
    "head.dcn_kernel_size": (1, 31),
    "head.dcn_dw_kernel_size": (1, 31),
    "head.decoder_layers": (0, MAX_LAYERS),
    "head.decoder_ffn_channels": (1, 4 * MAX_WIDTH),
    "head.decoder_heads": (1, 256),
    "head.spike_levels": (1, 255),
    "test_size": (0, MAX_TEST_SIZE),  # 0: images at their native size
}
MASK_EMBED_SCALE = (0.0, 1024.0)  # exclusive below, inclusive above; the official alpha is 4


def validate(config: ModelConfig) -> None:
    """Reject configurations the network cannot (or should not) be built with; the
    ``ConfigError`` names the field."""
    _check_types_and_ranges(config)
    _check_consistency(config)


def _check_types_and_ranges(config: ModelConfig) -> None:
    b, h = config.backbone, config.head
    if b.version not in ("sdtv2", "sdtv3"):
        raise ConfigError(f"backbone.version must be 'sdtv2' or 'sdtv3', got {_show(b.version)}")
    dims = _sequence("backbone.embed_dims", b.embed_dims)
    if len(dims) != 4:
        raise ConfigError(f"backbone.embed_dims must be four integers, got {_show(dims)}")
    for index, dim in enumerate(dims):
        _integer(f"backbone.embed_dims[{index}]", dim, LIMITS["backbone.embed_dims"])
    for name, limits in LIMITS.items():
        part, _, field = name.rpartition(".")
        value = getattr(getattr(config, part) if part else config, field)
        if name == "backbone.embed_dims" or (name == "backbone.spike_levels" and value is None):
            continue  # checked above; None: the version's default
        _integer(name, value, limits)
    low, high = MASK_EMBED_SCALE
    scale = h.mask_embed_scale
    if not _is_number(scale) or not low < scale <= high:  # also refuses NaN and infinity
        raise ConfigError(
            f"head.mask_embed_scale must be a number above {low:g} and at most {high:g}, "
            f"got {_show(scale)}"
        )
    if not isinstance(config.spiking, bool):
        raise ConfigError(f"spiking must be true or false, got {_show(config.spiking)}")


def _check_consistency(config: ModelConfig) -> None:
    b, h = config.backbone, config.head
    if b.embed_dims[0] % 2:
        raise ConfigError(f"backbone.embed_dims[0] must be even, got {b.embed_dims[0]}")
    for dim in b.embed_dims[2:]:
        if dim % b.num_heads:
            raise ConfigError(f"backbone width {dim} is not divisible by {b.num_heads} heads")
    if h.channels % 2 or h.channels % h.decoder_heads:
        raise ConfigError(f"head.channels={h.channels} must be even and divisible by decoder_heads")
    if h.channels % h.dcn_groups:
        raise ConfigError(
            f"head.channels={h.channels} is not divisible by dcn_groups={h.dcn_groups}"
        )
    if h.dcn_kernel_size % 2 == 0 or h.dcn_dw_kernel_size % 2 == 0:
        raise ConfigError("DCN kernel sizes must be odd")
    if config.class_names is not None:
        names = _sequence("class_names", config.class_names)
        if len(names) != h.num_classes:
            raise ConfigError(f"{len(names)} class names given for {h.num_classes} classes")
        for index, name in enumerate(names):
            if not isinstance(name, str) or len(name) > MAX_CLASS_NAME:
                raise ConfigError(
                    f"class_names[{index}] must be a string of at most {MAX_CLASS_NAME} "
                    f"characters, got {_show(name)}"
                )
    if config.palette is not None:
        palette = _sequence("palette", config.palette)
        if len(palette) != h.num_classes:
            raise ConfigError(f"{len(palette)} palette colours for {h.num_classes} classes")
        for colour in palette:
            if (
                not isinstance(colour, Sequence)
                or isinstance(colour, str)
                or len(colour) != 3
                or not all(_is_integer(v) and 0 <= v <= 255 for v in colour)
            ):
                raise ConfigError(
                    f"palette colours are three integers in 0..255, got {_show(colour)}"
                )


def _integer(name: str, value: Any, limits: tuple[int, int]) -> None:
    low, high = limits
    if not _is_integer(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {_show(value)}")


def _sequence(name: str, value: Any) -> Sequence[Any]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ConfigError(f"{name} must be a list, got {_show(value)}")
    return value


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """``value`` for an error message, cut short (a hostile file may hold a huge number)."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python converts to text
        return "a huge integer"
    return text if len(text) <= 60 else text[:57] + "..."
