"""Model configuration as frozen, JSON-serialisable dataclasses.

A model file stores ``ModelConfig.to_dict()`` in its metadata, so a network can be rebuilt from the
file alone. Every field corresponds to something visible in an official checkpoint's key names or
shapes, except the few constants the official code hard-codes (attention heads, T, spike levels),
which keep their official defaults.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .config_checks import validate
from .errors import ConfigError

BackboneVersion = Literal["sdtv2", "sdtv3"]


@dataclass(frozen=True)
class BackboneConfig:
    """Spiking MetaFormer backbone (SDT-V2 / Meta-SpikeFormer or SDT-V3 / E-SpikeFormer).

    ``embed_dims`` follows the official argument: the four output maps have
    ``embed_dims[0] // 2``, ``embed_dims[0]``, ``embed_dims[1]`` and ``embed_dims[3]`` channels at
    strides 2, 4, 8 and 16; ``embed_dims[2]`` is the width of the stride-16 transformer stage.
    """

    version: BackboneVersion = "sdtv3"
    embed_dims: tuple[int, int, int, int] = (64, 128, 256, 360)
    stage3_depth: int = 6
    stage4_depth: int = 2
    num_heads: int = 8
    mlp_ratio: int = 4
    time_steps: int = 1
    spike_levels: int | None = None

    @property
    def levels(self) -> int:
        """D of the backbone neurons: 4 for SDT-V3 (Multispike_norm), 8 for SDT-V2 (Q_IFNode)."""
        if self.spike_levels is not None:
            return self.spike_levels
        return 4 if self.version == "sdtv3" else 8

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        """Channels of the four feature maps handed to the head (strides 2, 4, 8, 16)."""
        d = self.embed_dims
        return (d[0] // 2, d[0], d[1], d[3])


@dataclass(frozen=True)
class HeadConfig:
    """MaskFormer-style head: pixel decoder, transformer decoder and spike-driven mask embedding."""

    num_classes: int = 150
    channels: int = 256
    num_queries: int = 100
    encoder_layers: int = 6
    encoder_ffn_channels: int = 1024
    dcn_groups: int = 32
    dcn_kernel_size: int = 3
    dcn_dw_kernel_size: int = 5
    decoder_layers: int = 6
    decoder_ffn_channels: int = 2048
    decoder_heads: int = 8
    spike_levels: int = 8
    mask_embed_scale: float = 4.0

    @property
    def num_levels(self) -> int:
        """Memories the decoder visits round-robin (strides 16, 8, 4); fixed by the design."""
        return 3


@dataclass(frozen=True)
class ModelConfig:
    """A whole Spike2Former network."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    class_names: tuple[str, ...] | None = None
    # Colours (R, G, B) of the classes in label maps and overlays; None: the dataset's official
    # palette when the class names are a known dataset's, else generated colours.
    palette: tuple[tuple[int, int, int], ...] | None = None
    test_size: int = 512
    # False builds the same network as a conventional one: every neuron becomes its real-valued
    # counterpart clamp(x, 0, D) / D (no rounding), for spiking-versus-conventional comparisons.
    spiking: bool = True

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The inverse of ``to_dict``; missing fields take their defaults, unknown ones and
        values of the wrong type are refused (``ConfigError`` naming the field)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a model configuration is an object, got {type(data).__name__}")
        _refuse_unknown(cls, data)
        backbone = dict(_part(data, "backbone"))
        if isinstance(backbone.get("embed_dims"), list):
            backbone["embed_dims"] = tuple(backbone["embed_dims"])
        names = data.get("class_names")
        palette = data.get("palette")
        return cls(
            backbone=_build(BackboneConfig, backbone),
            head=_build(HeadConfig, dict(_part(data, "head"))),
            class_names=tuple(names) if isinstance(names, list) else names,
            palette=(
                tuple(tuple(c) if isinstance(c, list) else c for c in palette)
                if isinstance(palette, list)
                else palette
            ),
            test_size=data.get("test_size", 512),
            spiking=data.get("spiking", True),
        )

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _part(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be an object, got {type(value).__name__}")
    return value


def _refuse_unknown(kind: type, values: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(str(name) for name in set(values) - known)
    if unknown:
        shown = ", ".join(name[:40] for name in unknown[:5])
        raise ConfigError(f"unknown {kind.__name__} fields: {shown}")


def _build(kind: type, values: dict[str, Any]) -> Any:
    _refuse_unknown(kind, values)
    return kind(**values)
