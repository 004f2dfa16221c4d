"""What ``--model`` and ``--offline`` name, resolved: ``model_path(model, offline)`` turns a
registry name or a path into a local s2f model file, downloaded (with a progress bar) on first
use."""

from __future__ import annotations

from pathlib import Path

from spike2former.errors import WeightsSpecError
from spike2former.weights import resolve_model

from .api_options import option_errors
from .download_progress import download_progress


def model_path(spec: str, offline: bool = False) -> Path:
    """Resolve ``--model``; errors become one red line (exit 2 for a bad name, 1 otherwise)."""
    with option_errors(usage=(WeightsSpecError,)), download_progress(spec) as progress:
        return resolve_model(spec, offline or None, progress=progress)
