"""Image-classification pretraining of the spiking backbones (the first half of the official
recipe: an ImageNet backbone, then the segmenter).

- ``recipe``: ``PretrainRecipe``, the published classification recipe as data;
- ``prepare``: ``prepare_pretraining(PretrainRequest)``, a new run's classifier and job;
- ``loop``: ``pretrain`` and ``resume_pretrain``;
- ``resume_settings``: a run's saved settings, and those a resume is given that disagree.
"""

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
from .prepare import (
    PreparedPretraining,
    PretrainRequest,
    PretrainRequestError,
    prepare_pretraining,
)
from .recipe import PretrainRecipe
from .resume_settings import pretrain_resume_conflicts, saved_pretrain_settings

__all__ = [
    "BackboneClassifier",
    "ClassificationSet",
    "ImageFolderSplit",
    "PreparedPretraining",
    "PretrainJob",
    "PretrainRecipe",
    "PretrainRequest",
    "PretrainRequestError",
    "PretrainResult",
    "class_names",
    "evaluate_accuracy",
    "load_classifier",
    "prepare_pretraining",
    "pretrain",
    "pretrain_resume_conflicts",
    "resume_pretrain",
    "save_classifier",
    "saved_pretrain_settings",
    "scan_split",
]
