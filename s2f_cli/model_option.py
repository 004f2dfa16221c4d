"""``--model`` and ``--offline`` for every command that loads a model, and their resolution.

Commands declare ``model: ModelOption`` and ``offline: OfflineOption`` and call
``model_path(model, offline)``: a registry name or a path -> a local s2f model file, downloaded
(with a progress bar) on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from spike2former.errors import S2FError, WeightsSpecError
from spike2former.inference.devices import PRECISIONS, resolve_device
from spike2former.model_file import load_model
from spike2former.modeling.spike2former import Spike2Former
from spike2former.weights import resolve_backbone, resolve_model

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
        show_default=False,
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


def load_for_inference(
    spec: str | None, offline: bool, device: str, precision: str, threads: int
) -> Spike2Former:
    """Check ``--model``, ``--device``, ``--precision`` and ``--threads`` (bad values exit 2),
    then load the model (failures exit 1)."""
    if spec is None:
        raise fail(
            "no model given: pass --model NAME|PATH (`s2f models` lists registered names; "
            "`s2f convert` turns official checkpoints into model files)",
            EXIT_USAGE,
        )
    try:
        resolve_device(device)
    except S2FError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if precision not in PRECISIONS:
        raise fail(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}", EXIT_USAGE)
    if threads:
        torch.set_num_threads(threads)
    path = model_path(spec, offline)
    with reported_errors():
        return load_model(path)
