"""Start-up shared by the commands that run a model on images (segment, firing-rates): the checks
of their device, precision and threads, the model loading, and the runner (a ``Predictor`` or a
``FiringRun``) refused at an ``--imgsz`` no image fits."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import cv2

from spike2former.errors import S2FError
from spike2former.inference.devices import PRECISIONS, resolve_device
from spike2former.inference.memory import MemoryLimitError
from spike2former.model_file import load_model
from spike2former.modeling.spike2former import Spike2Former

from .console import EXIT_USAGE, fail, reported_errors, stderr
from .model_option import model_path
from .threads_option import use_threads


def silence_opencv() -> None:
    """OpenCV and FFmpeg print their own warnings about damaged files straight to stderr; the
    commands report each bad input in one line themselves. (FFmpeg reads its level when the first
    video is opened.)"""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def memory_cap(gigabytes: float) -> float | None:
    """``--max-memory`` in bytes; 0 lifts the cap (the free memory still bounds a pass)."""
    return gigabytes * 2**30 or None


@dataclass(frozen=True)
class InferenceOptions:
    """The options, as given, that say which model runs on images, where and at which size."""

    model: str
    offline: bool
    device: str
    precision: str
    threads: int
    imgsz: int | None
    max_memory: float  # GB, as --max-memory


def _load(given: InferenceOptions) -> Spike2Former:
    """Check ``--model``, ``--device``, ``--precision`` and ``--threads`` (bad values exit 2),
    then load the model (failures exit 1)."""
    try:
        resolve_device(given.device)
    except S2FError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if given.precision not in PRECISIONS:
        choices = ", ".join(PRECISIONS)
        raise fail(f"unknown precision {given.precision!r}; use {choices}", EXIT_USAGE)
    use_threads(given.threads)
    path = model_path(given.model, given.offline)
    with reported_errors():
        return load_model(path)


class ImageRunner(Protocol):
    """What starting needs of a runner; the constructor takes the model, then ``device``,
    ``precision``, ``imgsz`` and ``max_memory`` by keyword."""

    imgsz: int
    precision_note: str | None

    def check_fits(self, height: int, width: int) -> None: ...


Runner = TypeVar("Runner", bound=ImageRunner)


def start_runner(
    make: Callable[..., Runner],
    given: InferenceOptions,
    quiet: bool,
    too_large: Callable[[MemoryLimitError], str] = str,
    **settings: object,
) -> Runner:
    """Load the model into ``make(model, ..., **settings)``; an ``--imgsz`` at which even the
    smallest image it makes (a square) would not fit in memory is a usage error, explained by
    ``too_large``. Warns of a precision the device cannot run."""
    network = _load(given)
    with reported_errors():
        runner = make(
            network,
            device=given.device,
            precision=given.precision,
            imgsz=given.imgsz,
            max_memory=memory_cap(given.max_memory),
            **settings,
        )
        if runner.imgsz > 0:
            try:
                runner.check_fits(runner.imgsz, runner.imgsz)
            except MemoryLimitError as exc:
                message = f"--imgsz {runner.imgsz} does not fit: {too_large(exc)}"
                raise fail(message, EXIT_USAGE) from None
    if runner.precision_note and not quiet:
        stderr.print(f"[yellow]warning:[/] {runner.precision_note}", highlight=False)
    return runner
