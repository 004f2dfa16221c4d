"""``s2f eval``: aAcc, mIoU, mAcc and per-class IoU/Acc of a model on a dataset split."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
import torch
from rich.markup import escape
from rich.table import Table

from spike2former.atomic import write_atomically
from spike2former.datasets import DatasetError
from spike2former.metrics import SegmentationScores
from spike2former.model_file import load_model
from spike2former.training import DataSpec, evaluate, init_distributed
from spike2former.training.distributed import DistributedError, shutdown
from spike2former.training.evaluate import default_stride
from spike2former.weights import DEFAULT_MODEL

from .console import EXIT_USAGE, fail, progress_bar, reported_errors, stderr, stdout
from .model_option import model_path
from .options import (
    DataOption,
    DatasetFormatOption,
    DeviceOption,
    ImgszOption,
    ModelOption,
    OfflineOption,
    QuietOption,
    ThreadsOption,
    option,
)
from .size_option import parse_size


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
    json_output: Annotated[bool, option("--json", "The scores.")] = False,
    output: Annotated[
        Path | None,
        option(
            "--output",
            "A folder for each image's predicted label map, as NAME.png.",
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
    if not data.is_dir():
        raise fail(f"--data {data}: no such directory", EXIT_USAGE)
    if threads:
        torch.set_num_threads(threads)

    with reported_errors():
        try:
            context = init_distributed(device)
        except DistributedError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
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
            size = network.config.test_size if imgsz is None else imgsz
            if mode == "slide" and window_size is None:
                if not size:
                    raise fail(
                        "the model is evaluated at the images' own size: give --window for "
                        "--mode slide",
                        EXIT_USAGE,
                    )
                window_size = (size, size)
            if mode == "slide" and step is None:
                step = default_stride(window_size)  # type: ignore[arg-type]
            save = _prediction_writer(output) if output else None
            live = not quiet and context.is_main and stderr.is_terminal
            progress = progress_bar(live)
            shard = len(range(context.rank, len(dataset), context.world_size))
            with progress:
                task = progress.add_task("evaluating", total=shard)
                scores = evaluate(
                    network,
                    dataset,
                    context=context,
                    test_size=size,
                    mode=mode,  # type: ignore[arg-type]
                    crop_size=window_size,
                    stride=step,
                    on_prediction=save,
                    on_image=lambda: progress.advance(task),
                )
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
        if window_size and step:
            detail = f" (window {window_size[0]}x{window_size[1]}, stride {step[0]}x{step[1]})"
        stderr.print(
            f"{len(dataset)} images of {escape(str(data))} ({split}), {mode} inference{detail}",
            highlight=False,
        )


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


def _prediction_writer(folder: Path):  # noqa: ANN202 - a closure
    def write(name: str, labels: np.ndarray) -> None:
        ok, encoded = cv2.imencode(".png", labels)
        if not ok:
            raise DatasetError(f"cannot encode the prediction of {name} as PNG")
        data = encoded.tobytes()
        write_atomically(folder / f"{name}.png", lambda tmp: Path(tmp).write_bytes(data))

    return write


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
