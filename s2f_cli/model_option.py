"""What ``--model`` and ``--offline`` name, resolved: ``model_path(model, offline)`` turns a
registry name or a path into a local s2f model file, downloaded (with a progress bar) on first
use."""

from __future__ import annotations

from pathlib import Path

from spike2former.errors import WeightsSpecError
from spike2former.weights import resolve_backbone, resolve_model

from .console import EXIT_USAGE, fail, reported_errors
from .download_progress import download_progress


def model_path(spec: str, offline: bool = False) -> Path:
    """Resolve ``--model``; errors become one red line (exit 2 for a bad name, 1 otherwise)."""
    with reported_errors(), download_progress(spec) as progress:
        try:
            return resolve_model(spec, offline or None, progress=progress)
        except WeightsSpecError as exc:
            raise fail(str(exc), EXIT_USAGE) from None


def backbone_path(spec: str, offline: bool = False) -> Path:
    """Resolve ``--init-backbone`` the same way (a registered backbone name or a path)."""
    with reported_errors(), download_progress(spec) as progress:
        try:
            return resolve_backbone(spec, offline or None, progress=progress)
        except WeightsSpecError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
