"""``--model`` and ``--offline`` for every command that loads a model, and their resolution.

Commands declare ``model: ModelOption = DEFAULT_MODEL`` and ``offline: OfflineOption`` and call
``model_path(model, offline)``: a registry name or a path -> a local s2f model file, downloaded
(with a progress bar) on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spike2former.errors import WeightsSpecError
from spike2former.weights import DEFAULT_MODEL, resolve_backbone, resolve_model

from .console import EXIT_USAGE, fail, reported_errors
from .download_progress import download_progress

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME|PATH",
        help="Registered model name (see `s2f models`; downloaded on first use) or the path of "
        "an s2f model file.",
        show_default=f"{DEFAULT_MODEL}, shipped with s2f",
    ),
]
OfflineOption = Annotated[
    bool,
    typer.Option(
        "--offline", help="Never download; use only cached or local files (also S2F_OFFLINE=1)."
    ),
]


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
