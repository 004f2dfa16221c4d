"""Image-classification pretraining of the spiking backbones (the first half of the official
recipe: an ImageNet backbone, then the segmenter)."""

from .backbone_file import load_classifier, save_classifier
from .classifier import BackboneClassifier
from .folder import ClassificationSet, ImageFolderSplit, scan_split
from .loop import (
    PretrainJob,
    PretrainResult,
    class_names,
    evaluate_accuracy,
    pretrain,
    resume_pretrain,
)
from .recipe import PretrainRecipe

__all__ = [
    "BackboneClassifier",
    "ClassificationSet",
    "ImageFolderSplit",
    "PretrainJob",
    "PretrainRecipe",
    "PretrainResult",
    "class_names",
    "evaluate_accuracy",
    "load_classifier",
    "pretrain",
    "resume_pretrain",
    "save_classifier",
    "scan_split",
]
