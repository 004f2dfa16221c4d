"""``s2f train``: train a preset or fine-tune a model file, resumably, on one or many processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from spike2former.errors import WeightsSpecError
from spike2former.presets import PRESETS
from spike2former.training import (
    ClassCountError,
    DataSpec,
    RecipeError,
    RunFolderError,
    RunRequest,
    RunRequestError,
    prepare_run,
    resume,
    resume_conflicts,
    train,
)
from spike2former.training.preflight import RunSettingsError
from spike2former.training.recipe import PIPELINES, RECIPES
from spike2former.weights import DEFAULT_MODEL

from .api_options import described
from .console import stderr
from .download_progress import download_progress
from .options import (
    DATASET_LAYOUTS,
    RUN_FOLDER_HELP,
    CheckpointIntervalOption,
    ConventionalOption,
    DeviceOption,
    EvalIntervalOption,
    IterationsOption,
    LogIntervalOption,
    OfflineOption,
    QuietOption,
    ResumeOption,
    SeedOption,
    ThreadsOption,
    TrainSplitOption,
    ValSplitOption,
    WeightDecayOption,
    WorkersOption,
    option,
)
from .processes import shared_run_dir
from .run_command import (
    check_new_run,
    check_resume,
    parse_val_split,
    setting_flags,
    training_processes,
)
from .run_progress import RunLines, print_summary
from .size_option import parse_size

DEFAULT_PROJECT = Path("runs/train")
# Label maps hold 8- or 16-bit class ids.
MAX_CLASSES = 2**16 - 1
# What the command says of the run.
_LINES = RunLines(
    label="training",
    done="Trained",
    start="Training iterations {first}..{iters}, batch {batch_size} per process, crop "
    "{crop_size}, {pipeline}",
    validation="iter {iter}: val mIoU {mIoU}, mAcc {mAcc}, aAcc {aAcc} (best {best_mIoU})",
    best="mIoU {best_miou}",
)

# Library errors that mean the options are at fault: exit code 2.
_USAGE_ERRORS = (
    RunRequestError,
    RecipeError,
    ClassCountError,
    WeightsSpecError,
    RunFolderError,
    RunSettingsError,
)


def train_command(
    ctx: typer.Context,
    preset: Annotated[
        str | None, option("--preset", f"One of {', '.join(PRESETS)}.", show_default=False)
    ] = None,
    model: Annotated[
        str | None,
        option(
            "--model",
            "Fine-tuned.",
            metavar="NAME|PATH",
            show_default=f"{DEFAULT_MODEL} (shipped with s2f) unless --preset is given",
        ),
    ] = None,
    data: Annotated[Path | None, option("--data", metavar="DIR", show_default=False)] = None,
    dataset_format: Annotated[
        Literal[DATASET_LAYOUTS] | None,  # type: ignore[valid-type]
        option("--format", show_default=False),
    ] = None,
    num_classes: Annotated[int | None, option("--num-classes", min=1, max=MAX_CLASSES)] = None,
    init_backbone: Annotated[
        str | None, option("--init-backbone", metavar="FILE|NAME", show_default=False)
    ] = None,
    recipe: Annotated[
        str | None,
        option(
            "--recipe",
            f"One of {', '.join(RECIPES)}.",
            show_default="the preset's, or the official one for the model and dataset",
        ),
    ] = None,
    iters: IterationsOption = None,
    batch_size: Annotated[
        int | None, option("--batch-size", "Per step and process.", min=1)
    ] = None,
    crop_size: Annotated[
        str | None, option("--crop-size", metavar="S|HxW", show_default=False)
    ] = None,
    lr: Annotated[float | None, option("--lr", min=0.0)] = None,
    weight_decay: WeightDecayOption = None,
    backbone_lr_mult: Annotated[float | None, option("--backbone-lr-mult", min=0.0)] = None,
    warmup_iters: Annotated[
        int | None,
        option("--warmup-iters", min=0, show_default="the recipe's, in proportion to --iters"),
    ] = None,
    poly_end: Annotated[int | None, option("--poly-end", min=1)] = None,
    clip_grad: Annotated[float | None, option("--clip-grad", min=0.0)] = None,
    pipeline: Annotated[
        str | None, option("--pipeline", f"One of {', '.join(PIPELINES)}.", show_default=False)
    ] = None,
    eval_interval: EvalIntervalOption = None,
    checkpoint_interval: CheckpointIntervalOption = None,
    test_size: Annotated[
        int | None,
        option(
            "--imgsz",
            "Validation and the saved model use it.",
            min=0,
            show_default="the model's; 0 with the random_crop pipeline",
        ),
    ] = None,
    train_split: TrainSplitOption = "train",
    val_split: ValSplitOption = "val",
    conventional: ConventionalOption = False,
    amp: Annotated[bool, option("--amp")] = False,
    recompute_backbone: Annotated[bool, option("--recompute-backbone")] = False,
    seed: SeedOption = 0,
    log_interval: LogIntervalOption = 50,
    workers: WorkersOption = 2,
    device: DeviceOption = "auto",
    threads: ThreadsOption = 0,
    out: Annotated[
        Path | None,
        option(
            "--output",
            RUN_FOLDER_HELP,
            metavar="RUN",
            show_default="runs/train/run, run2, ...",
        ),
    ] = None,
    resume_run: ResumeOption = False,
    offline: OfflineOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train Spike2Former with the official recipe; resumable, and data-parallel under torchrun."""
    overrides = {
        "iters": iters,
        "batch_size": batch_size,
        "crop_size": _crop(crop_size) if crop_size is not None else None,
        "lr": lr,
        "weight_decay": weight_decay,
        "backbone_lr_mult": backbone_lr_mult,
        "warmup_iters": warmup_iters,
        "poly_end": poly_end,
        "clip_grad": clip_grad,
        "pipeline": pipeline,
        "eval_interval": eval_interval,
        "checkpoint_interval": checkpoint_interval,
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    flags = setting_flags(ctx)
    if resume_run:
        check_resume(ctx, out, resume_conflicts, {"crop_size": _crop, "val_split": parse_val_split})
    else:
        check_new_run(data, out, {"--data DIR": data, "--format FORMAT": dataset_format})
    running = training_processes(device, threads, quiet, _LINES, flags, _USAGE_ERRORS)
    with running as (context, callbacks):
        if resume_run:
            result = resume(
                out,
                context,
                workers=workers,
                callbacks=callbacks,  # type: ignore[arg-type]
                recompute_backbone=recompute_backbone or None,
            )
        else:
            assert data is not None and dataset_format is not None
            request = RunRequest(
                data=DataSpec.of(
                    dataset_format,
                    data,
                    train_split=train_split,
                    val_split=parse_val_split(val_split),
                ),
                preset=preset,
                model=model,
                num_classes=num_classes,
                init_backbone=init_backbone,
                conventional=conventional,
                test_size=test_size,
                recipe=recipe,
                overrides=overrides,
                seed=seed,
                amp=amp,
                log_interval=log_interval,
                offline=offline or None,
            )
            prepared = prepare_run(request, download_progress)
            if context.is_main and not quiet:
                for note in prepared.notes:
                    message = described(note, flags)
                    stderr.print(f"[yellow]note:[/] {escape(message)}", highlight=False)
            result = train(
                prepared.network,
                prepared.job,
                out if out is not None else lambda: shared_run_dir(DEFAULT_PROJECT, context),
                context,
                workers=workers,
                callbacks=callbacks,
                recompute_backbone=recompute_backbone or None,
            )
    if context.is_main:
        print_summary(result, _LINES, quiet)


def _crop(text: str) -> tuple[int, int]:
    return parse_size(text, "--crop-size")
