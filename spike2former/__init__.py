"""Spike2Former: spiking transformers for semantic segmentation, in pure PyTorch."""

from .build import build_model
from .config import BackboneConfig, HeadConfig, ModelConfig
from .firing import spike_train_mode
from .hub import create_model, list_models
from .inference.predictor import Predictor
from .model_file import load_model, save_model
from .modeling.spike2former import Spike2Former
from .presets import PRESETS

__all__ = [
    "PRESETS",
    "BackboneConfig",
    "HeadConfig",
    "ModelConfig",
    "Predictor",
    "Spike2Former",
    "build_model",
    "create_model",
    "list_models",
    "load_model",
    "save_model",
    "spike_train_mode",
]
