"""Named configurations of the released Spike2Former models, plus a small CPU-friendly one.

Values follow the official configs (``configs/Spike2Former/*``). Deliberate difference: the VOC
presets have the real 21 Pascal VOC classes, while the official VOC configs keep ``num_classes=150``
copied from ADE20K (151 class logits); ``s2f convert`` infers the class count from the checkpoint,
so official VOC checkpoints still load with their 151 logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import BackboneConfig, HeadConfig, ModelConfig
from .named import lookup

_SDTV3 = BackboneConfig(version="sdtv3")
_SDTV2 = BackboneConfig(version="sdtv2")

PRESETS: dict[str, ModelConfig] = {
    "sdtv3b-ade20k": ModelConfig(_SDTV3, HeadConfig(num_classes=150)),
    "sdtv3b-cityscapes": ModelConfig(_SDTV3, HeadConfig(num_classes=19), test_size=1024),
    "sdtv3b-voc": ModelConfig(_SDTV3, HeadConfig(num_classes=21)),
    "sdtv2-ade20k": ModelConfig(_SDTV2, HeadConfig(num_classes=150)),
    "sdtv2-cityscapes": ModelConfig(
        _SDTV2, HeadConfig(num_classes=19, encoder_ffn_channels=2048), test_size=1024
    ),
    "sdtv2-voc": ModelConfig(_SDTV2, HeadConfig(num_classes=21)),
    "sdtv2-cocostuff10k": ModelConfig(
        BackboneConfig(version="sdtv2", time_steps=4), HeadConfig(num_classes=171)
    ),
    "sdtv2-cocostuff164k": ModelConfig(
        BackboneConfig(version="sdtv2", time_steps=4), HeadConfig(num_classes=171)
    ),
    # Same building blocks at a laptop-CPU size (about 1.1 M parameters).
    "tiny": ModelConfig(
        BackboneConfig(
            version="sdtv3", embed_dims=(16, 32, 64, 96), stage3_depth=2, stage4_depth=1
        ),
        HeadConfig(
            num_classes=150,
            channels=64,
            num_queries=20,
            encoder_layers=2,
            encoder_ffn_channels=128,
            dcn_groups=8,
            decoder_layers=3,
            decoder_ffn_channels=256,
        ),
    ),
}


def get_preset(name: str) -> ModelConfig:
    """The configuration called ``name``; raises ``KeyError`` listing the known names."""
    return lookup(PRESETS, name, "preset")


def preset_with(name: str, overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """Preset ``name`` with some fields replaced, so that a released network can be described as
    the preset it was trained from plus its differences.

    ``overrides`` is part of a ``ModelConfig.to_dict()``, such as
    ``{"head": {"num_queries": 200}, "test_size": 1024}``. Raises ``KeyError`` for an unknown
    preset and ``ConfigError`` naming a field that does not exist or does not fit.
    """
    merged = get_preset(name).to_dict()
    for key, value in (overrides or {}).items():
        part = merged.get(key)
        nested = isinstance(part, dict) and isinstance(value, dict)
        merged[key] = {**part, **value} if nested else value
    return ModelConfig.from_dict(merged)
