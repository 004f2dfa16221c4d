"""Start-up shared by the commands that run a model on images (segment, firing-rates): the checks
of their device, precision and threads, and the model loading."""

from __future__ import annotations

import os

import cv2

from spike2former.errors import S2FError
from spike2former.inference.devices import PRECISIONS, resolve_device
from spike2former.model_file import load_model
from spike2former.modeling.spike2former import Spike2Former

from .console import EXIT_USAGE, fail, reported_errors
from .model_option import model_path
from .threads_option import use_threads


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
    use_threads(threads)
    path = model_path(spec, offline)
    with reported_errors():
        return load_model(path)
