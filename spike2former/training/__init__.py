"""Training and evaluation: the official recipe, a resumable loop, data parallelism.

- ``recipe``: ``TrainRecipe`` and ``recipe_for(preset)``, the official settings as data;
- ``optim``: the AdamW parameter groups and the warm-up + poly schedule;
- ``data``: training pipelines and the resumable, distributed data order;
- ``setup``: ``DataSpec`` (which dataset) and fitting a network to its classes;
- ``prepare``: ``prepare_run(RunRequest)``, a new run's starting network and job from the choices;
- ``initial``: ImageNet backbone weights, class-layer changes for fine-tuning;
- ``loop``: ``train`` and ``resume``, the loop itself;
- ``preflight``: what a run is checked for before its folder exists (data, crop, memory);
- ``memory``: the memory a run takes, measured on the network and estimated before it starts;
- ``checkpoint``: run folders and crash-safe checkpoints;
- ``resume_settings``: a run's saved settings, and those a resume is given that disagree
  (``settings_conflicts``: the comparison, for pretraining runs too);
- ``distributed``: ``torchrun`` process groups (NCCL / gloo) and their helpers;
- ``evaluate``: dataset-level mIoU with whole-image or sliding-window inference.
"""

from .checkpoint import RunFolder, RunFolderError
from .distributed import DistributedContext, init_distributed
from .evaluate import evaluate
from .initial import load_backbone, with_classes
from .loop import TrainJob, TrainResult, resume, train
from .optim import build_optimizer, build_scheduler, parameter_groups
from .prepare import PreparedRun, RunRequest, RunRequestError, prepare_run
from .recipe import RECIPES, RecipeError, TrainRecipe, recipe_for, recipe_name_for
from .resume_settings import Conflict, resume_conflicts, saved_settings, settings_conflicts
from .setup import ClassCountError, DataSpec, fit_model_to_data

__all__ = [
    "RECIPES",
    "ClassCountError",
    "Conflict",
    "DataSpec",
    "DistributedContext",
    "PreparedRun",
    "RecipeError",
    "RunFolder",
    "RunFolderError",
    "RunRequest",
    "RunRequestError",
    "TrainJob",
    "TrainRecipe",
    "TrainResult",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "fit_model_to_data",
    "init_distributed",
    "load_backbone",
    "parameter_groups",
    "prepare_run",
    "recipe_for",
    "recipe_name_for",
    "resume",
    "resume_conflicts",
    "saved_settings",
    "settings_conflicts",
    "train",
    "with_classes",
]
