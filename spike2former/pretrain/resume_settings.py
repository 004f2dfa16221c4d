"""The settings a pretraining run was started with, and which of those given again to a resume
disagree: ``training.resume_settings``' comparison over a pretraining run's ``config.json``.

Settings are named as the library names them: the ``PretrainRecipe`` fields and the other
fields of ``PretrainJob`` (``root``, ``train_split``, ``val_split``, ``seed``, ``log_interval``,
``preset``, ``conventional``), as ``PretrainRequest`` takes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import CheckpointError
from ..training.checkpoint import RunFolder
from ..training.resume_settings import Conflict, settings_conflicts
from .loop import PretrainJob


def saved_pretrain_settings(run: RunFolder) -> dict[str, Any]:
    """Every setting of the pretraining run in ``run``, by name, as its ``config.json`` records
    it; ``CheckpointError`` where that holds no pretraining job."""
    config = run.read_config()
    try:
        job = PretrainJob.from_dict(config["job"])
    except (KeyError, TypeError, ValueError) as exc:  # ConfigError included
        raise CheckpointError(f"{run.config}: no pretraining run configuration ({exc})") from None
    settings = {name: value for name, value in job.to_dict().items() if name != "recipe"}
    settings.update(dataclasses.asdict(job.recipe))
    return settings


def pretrain_resume_conflicts(run: RunFolder, given: Mapping[str, Any]) -> list[Conflict]:
    """The ``given`` settings that differ from those of the pretraining run in ``run``, in the
    order given (``root`` compared as the path it names). Raises ``KeyError`` for a name that
    is no setting."""
    return settings_conflicts(saved_pretrain_settings(run), given)
