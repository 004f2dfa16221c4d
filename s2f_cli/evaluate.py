"""``s2f eval``: aAcc, mIoU, mAcc and per-class IoU/Acc of a model on a dataset split."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
from rich.markup import escape
from rich.table import Table

from spike2former.atomic import temporary_name, write_atomically
from spike2former.datasets import DatasetError, SegmentationDataset
from spike2former.errors import OutputError
from spike2former.inference.memory import DEFAULT_MAX_MEMORY, MemoryLimitError
from spike2former.metrics import SegmentationScores
from spike2former.model_file import load_model
from spike2former.modeling.spike2former import Spike2Former
from spike2former.training import DataSpec, evaluate
from spike2former.training.distributed import (
    DistributedContext,
    DistributedError,
    refused_together,
    shutdown,
)
from spike2former.training.evaluate import EvalPlan, check_memory
from spike2former.weights import DEFAULT_MODEL

from .api_options import described
from .console import EXIT_USAGE, fail, progress_bar, reported_errors, stderr, stdout
from .inference_options import memory_cap
from .model_option import model_path
from .options import (
    DataOption,
    DatasetFormatOption,
    DeviceOption,
    ImgszOption,
    MaxMemoryOption,
    ModelOption,
    OfflineOption,
    QuietOption,
    ThreadsOption,
    option,
)
from .processes import process_group
from .size_option import parse_size
from .targets import check_output_folder
from .threads_option import use_threads


def evaluate_command(
    data: DataOption,
    dataset_format: DatasetFormatOption,
    model: ModelOption = DEFAULT_MODEL,
    split: Annotated[str, option("--split")] = "val",
    mode: Annotated[Literal["whole", "slide"], option("--mode")] = "whole",
    window: Annotated[
        str | None, option("--window", metavar="S|HxW", show_default="the test size")
    ] = None,
    stride: Annotated[
        str | None, option("--stride", metavar="S|HxW", show_default="2/3 of the window")
    ] = None,
    imgsz: ImgszOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = 0,
    max_memory: MaxMemoryOption = DEFAULT_MAX_MEMORY / 2**30,
    json_output: Annotated[bool, option("--json", "The scores.")] = False,
    output: Annotated[
        Path | None,
        option(
            "--output",
            "A folder for each image's predicted label map, as NAME.png (written once every "
            "image is scored).",
            metavar="DIR",
            show_default=False,
        ),
    ] = None,
    offline: OfflineOption = False,
    quiet: QuietOption = False,
) -> None:
    """Score a model on a dataset split like mmseg's IoUMetric (percentages)."""
    if mode == "whole" and (window or stride):
        raise fail("--window and --stride apply to --mode slide", EXIT_USAGE)
    window_size = parse_size(window, "--window") if window else None
    step = parse_size(stride, "--stride") if stride else None
    if split in ("", ".", "..") or Path(split).name != split:
        raise fail(f"--split takes the name of a split (val, test, ...), not {split!r}", EXIT_USAGE)
    if not data.is_dir():
        raise fail(f"--data {data}: no such directory", EXIT_USAGE)
    if output is not None:
        check_output_folder(output, "-o", "the label maps")
    use_threads(threads)

    context = process_group(device)
    try:
        with reported_errors():
            network = load_model(model_path(model, offline), context.device)
            classes = network.config.head.num_classes
            spec = DataSpec.of(dataset_format, data, val_split=split, num_classes=classes)
            names = spec.class_names()
            if names is not None and len(names) > classes:
                raise fail(
                    f"the dataset has {len(names)} classes but the model {classes}", EXIT_USAGE
                )
            dataset = spec.build(split)
            plan = EvalPlan.of(network.config, imgsz, mode, window_size, step)
            if mode == "slide":
                _check_slide(plan, window_given=window_size is not None)
            if output is not None:
                _refuse_overwriting_inputs(dataset, output)
            _check_memory(network, dataset, plan, context, memory_cap(max_memory))
            predictions = _Predictions(output) if output is not None else None
            live = not quiet and context.is_main and stderr.is_terminal
            progress = progress_bar(live)
            shard = len(range(context.rank, len(dataset), context.world_size))
            try:
                with progress:
                    task = progress.add_task("evaluating", total=shard)
                    scores = evaluate(
                        network,
                        dataset,
                        context=context,
                        test_size=plan.test_size,
                        mode=plan.mode,
                        crop_size=plan.crop_size,
                        stride=plan.stride,
                        on_prediction=predictions.write if predictions else None,
                        on_image=lambda: progress.advance(task),
                    )
                if predictions is not None:
                    predictions.finish()
            finally:
                if predictions is not None:
                    predictions.discard()
    finally:
        shutdown(context)
    if not context.is_main:
        return
    if json_output:
        stdout.print(json.dumps(scores_as_json(scores)), highlight=False, markup=False)
        return
    stdout.print(_table(scores))
    if not quiet:
        detail = ""
        if plan.mode == "slide":
            (height, width), (down, across) = plan.crop_size, plan.stride
            detail = f" (window {height}x{width}, stride {down}x{across})"
        stderr.print(
            f"{len(dataset)} images of {escape(str(data))} ({split}), {mode} inference{detail}",
            highlight=False,
        )


# The most windows one pixel may fall in: mmseg's default stride (2/3 of the window) gives 4;
# more than this is hours of work that scores the same pixels again and again.
MAX_WINDOWS_PER_PIXEL = 64


def _check_slide(plan: EvalPlan, window_given: bool) -> None:
    """A window to slide (by default a square of the test size), and a stride no longer than
    the window (a longer one would leave the pixels between windows unscored) nor so short that
    each pixel is scored in more than ``MAX_WINDOWS_PER_PIXEL`` windows."""
    if not window_given and not plan.test_size:
        raise fail(
            "the model is evaluated at the images' own size: give --window for --mode slide",
            EXIT_USAGE,
        )
    (down, across), (height, width) = plan.stride, plan.crop_size
    if down > height or across > width:
        raise fail(
            f"--stride {down}x{across} is longer than the window {height}x{width}: "
            "the pixels between windows would not be scored; give at most the window",
            EXIT_USAGE,
        )
    overlap = math.ceil(height / down) * math.ceil(width / across)
    if overlap > MAX_WINDOWS_PER_PIXEL:
        shortest = math.ceil(height / 8), math.ceil(width / 8)
        raise fail(
            f"--stride {down}x{across} scores each pixel in up to {overlap} windows of "
            f"{height}x{width} ({overlap} times the work of whole images); give at least "
            f"{shortest[0]}x{shortest[1]}, an eighth of the window",
            EXIT_USAGE,
        )


def _check_memory(
    network: Spike2Former,
    dataset: SegmentationDataset,
    plan: EvalPlan,
    context: DistributedContext,
    max_memory: float | None,
) -> None:
    """Refuse, before any image is scored, a dataset with an image too large for the memory
    (every process stops when one refuses)."""
    try:
        with refused_together(context):
            check_memory(network, dataset, plan, context=context, max_memory=max_memory)
    except MemoryLimitError as exc:
        smaller = "--imgsz or --window" if plan.mode == "slide" else "--imgsz"
        advice = f"; evaluate at a smaller {smaller}"
        if exc.capped_by_user:
            advice += ", or raise --max-memory"
        raise fail(f"{described(exc, {'crop_size': '--window'})}{advice}", EXIT_USAGE) from None
    except DistributedError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def _refuse_overwriting_inputs(dataset: SegmentationDataset, folder: Path) -> None:
    inputs = {path.resolve() for sample in dataset.files for path in (sample.image, sample.label)}
    for sample in dataset.files:
        if (folder / f"{sample.name}.png").resolve() in inputs:
            raise fail(
                f"{folder}: writing the label maps here would overwrite the dataset's "
                f"{sample.name}.png; choose another -o",
                EXIT_USAGE,
            )


class _Predictions:
    """The predicted label maps, written into a hidden folder beside ``target`` while the images
    are scored and moved into ``target`` once all are: a run that fails or is interrupted leaves
    none of them."""

    def __init__(self, target: Path) -> None:
        self.target = target
        existing = next(p for p in [target, *target.absolute().parents] if p.is_dir())
        where = {**temporary_name(target), "dir": str(existing)}
        try:
            self.staging: Path | None = Path(tempfile.mkdtemp(**where))
        except OSError as exc:
            raise OutputError(f"{target}: cannot write the label maps ({exc})") from None

    def write(self, name: str, labels: np.ndarray) -> None:
        ok, encoded = cv2.imencode(".png", labels)
        if not ok:
            raise DatasetError(f"cannot encode the prediction of {name} as PNG")
        data = encoded.tobytes()
        assert self.staging is not None
        write_atomically(self.staging / f"{name}.png", lambda tmp: Path(tmp).write_bytes(data))

    def finish(self) -> None:
        """Move every label map into ``target`` (replacing files of the same names)."""
        assert self.staging is not None
        try:
            for path in sorted(self.staging.rglob("*.png")):
                destination = self.target / path.relative_to(self.staging)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, destination)
        except OSError as exc:
            raise OutputError(f"{self.target}: cannot write the label maps ({exc})") from None

    def discard(self) -> None:
        """Remove the hidden folder and whatever is left in it."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


def scores_as_json(scores: SegmentationScores) -> dict[str, object]:
    """``{"mIoU", "mAcc", "aAcc", "per_class": {name: {"IoU", "Acc"}}}`` in percent; undefined
    values (a class absent from labels and predictions) are null."""
    return {
        "mIoU": _number(scores.mIoU),
        "mAcc": _number(scores.mAcc),
        "aAcc": _number(scores.aAcc),
        "per_class": {
            name: {"IoU": _number(iou), "Acc": _number(acc)}
            for name, iou, acc in zip(
                scores.class_names, scores.per_class_iou, scores.per_class_acc, strict=True
            )
        },
    }


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _table(scores: SegmentationScores) -> Table:
    table = Table(title="Per-class results (%)", title_justify="left")
    table.add_column("Class")
    table.add_column("IoU", justify="right")
    table.add_column("Acc", justify="right")
    for name, iou, acc in zip(
        scores.class_names, scores.per_class_iou, scores.per_class_acc, strict=True
    ):
        table.add_row(escape(name), _cell(iou), _cell(acc))
    table.add_section()
    table.add_row("[bold]aAcc[/]", _cell(scores.aAcc), "")
    table.add_row("[bold]mIoU[/]", _cell(scores.mIoU), "")
    table.add_row("[bold]mAcc[/]", "", _cell(scores.mAcc))
    return table


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"
