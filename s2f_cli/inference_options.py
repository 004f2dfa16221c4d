"""Options and start-up shared by the commands that run a model on images (segment,
firing-rates): their declarations, their checks and the model loading."""

from __future__ import annotations

import os
from typing import Annotated

import cv2
import torch
import typer

from spike2former.errors import S2FError
from spike2former.inference.devices import PRECISIONS, resolve_device
from spike2former.model_file import load_model
from spike2former.modeling.spike2former import Spike2Former

from .console import EXIT_USAGE, fail, reported_errors
from .model_option import model_path

RecursiveOption = Annotated[
    bool, typer.Option("--recursive", "-r", help="Look into sub-directories.")
]
ImgszOption = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Short side fed to the network; 0 keeps the native size.",
        show_default="the model's test size",
    ),
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
PrecisionOption = Annotated[str, typer.Option(help="fp32, fp16, bf16 or fp64.")]
MaxMemoryOption = Annotated[
    float,
    typer.Option(
        min=0,
        metavar="GB",
        help="Host memory one forward pass may take; larger inputs are refused with a line "
        "saying so. 0: whatever is free.",
    ),
]
ThreadsOption = Annotated[
    int, typer.Option(min=0, help="CPU threads for torch; 0 keeps its default.")
]


def silence_opencv() -> None:
    """OpenCV and FFmpeg print their own warnings about damaged files straight to stderr; the
    commands report each bad input in one line themselves. (FFmpeg reads its level when the first
    video is opened.)"""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def load_for_inference(
    spec: str, offline: bool, device: str, precision: str, threads: int
) -> Spike2Former:
    """Check ``--model``, ``--device``, ``--precision`` and ``--threads`` (bad values exit 2),
    then load the model (failures exit 1)."""
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
