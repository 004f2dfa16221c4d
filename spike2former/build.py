"""One entry point to build a network from a preset name or a configuration."""

from __future__ import annotations

from typing import Any

from .config import ModelConfig
from .modeling.spike2former import Spike2Former
from .presets import get_preset


def resolve_config(spec: str | ModelConfig | dict[str, Any]) -> ModelConfig:
    """A preset name, a ``ModelConfig`` or its dict form -> ``ModelConfig``."""
    if isinstance(spec, ModelConfig):
        return spec
    if isinstance(spec, str):
        return get_preset(spec)
    if isinstance(spec, dict):
        return ModelConfig.from_dict(spec)
    raise TypeError(f"expected a preset name, ModelConfig or dict, got {type(spec).__name__}")


def build_model(spec: str | ModelConfig | dict[str, Any]) -> Spike2Former:
    """A freshly initialised Spike2Former (training mode, as ``nn.Module`` objects start)."""
    return Spike2Former(resolve_config(spec))
