"""``s2f pretrain``: image-classification pretraining of a preset's spiking backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spike2former.errors import ConfigError
from spike2former.presets import PRESETS
from spike2former.pretrain import (
    PretrainRequest,
    PretrainRequestError,
    prepare_pretraining,
    pretrain,
    pretrain_resume_conflicts,
    resume_pretrain,
)
from spike2former.pretrain.recipe import MAX_CROP, MIN_CROP
from spike2former.training import RunFolderError

from .console import EXIT_USAGE, fail
from .options import (
    RUN_FOLDER_HELP,
    CheckpointIntervalOption,
    ConventionalOption,
    DeviceOption,
    EvalIntervalOption,
    IterationsOption,
    LogIntervalOption,
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

DEFAULT_PROJECT = Path("runs/pretrain")
# What the command says of the run.
_LINES = RunLines(
    label="pretraining",
    done="Pretrained",
    start="Pretraining iterations {first}..{iters}, batch {batch_size} per process, crops "
    "{crop_size}x{crop_size}",
    validation="iter {iter}: val top-1 {top1} %, top-5 {top5} % (best top-1 {best_top1} %)",
    best="top-1 {best_top1} %",
)
# Options that set a recipe field.
_RECIPE_FIELDS = (
    "iters", "batch_size", "crop_size", "lr", "weight_decay", "warmup_iters", "eval_interval",
    "checkpoint_interval",
)  # fmt: skip
# Library errors that mean the options are at fault: exit code 2.
_USAGE_ERRORS = (PretrainRequestError, ConfigError, RunFolderError)


def pretrain_command(
    ctx: typer.Context,
    preset: Annotated[
        str | None,
        option(
            "--preset", f"Its backbone, with a classification head. One of {', '.join(PRESETS)}."
        ),
    ] = None,
    data: Annotated[
        Path | None, option("--data", "ROOT/SPLIT/CLASS/*.jpg (ImageFolder).", metavar="DIR")
    ] = None,
    iters: IterationsOption = None,
    batch_size: Annotated[int | None, option("--batch-size", min=1, show_default="128")] = None,
    crop_size: Annotated[
        str | None,
        option(
            "--crop-size",
            f"Square, {MIN_CROP} to {MAX_CROP}; validation crops the same.",
            metavar="S",
            show_default="224",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        option("--lr", min=0.0, show_default="6e-4 x total batch / 256"),
    ] = None,
    weight_decay: WeightDecayOption = None,
    warmup_iters: Annotated[
        int | None, option("--warmup-iters", min=0, show_default="5 % of --iters")
    ] = None,
    eval_interval: EvalIntervalOption = None,
    checkpoint_interval: CheckpointIntervalOption = None,
    train_split: TrainSplitOption = "train",
    val_split: ValSplitOption = "val",
    conventional: ConventionalOption = False,
    seed: SeedOption = 0,
    log_interval: LogIntervalOption = 50,
    workers: WorkersOption = 2,
    device: DeviceOption = "auto",
    threads: ThreadsOption = 0,
    output: Annotated[
        Path | None,
        option(
            "--output",
            RUN_FOLDER_HELP,
            metavar="RUN",
            show_default="runs/pretrain/run, run2, ...",
        ),
    ] = None,
    resume_run: ResumeOption = False,
    quiet: QuietOption = False,
) -> None:
    """Pretrain a backbone on image classification with the SDT recipe.

    The run's weights/best.safetensors is what `s2f train --init-backbone` takes.
    """
    flags = setting_flags(ctx)
    if resume_run:
        parsers = {"crop_size": _side, "val_split": parse_val_split}
        check_resume(ctx, output, pretrain_resume_conflicts, parsers)
    else:
        check_new_run(data, output, {"--preset NAME": preset, "--data DIR": data})
    running = training_processes(device, threads, quiet, _LINES, flags, _USAGE_ERRORS)
    with running as (context, progress):
        if resume_run:
            result = resume_pretrain(output, context, workers=workers, callbacks=progress)  # type: ignore[arg-type]
        else:
            assert preset is not None and data is not None
            overrides = {name: ctx.params[name] for name in _RECIPE_FIELDS}
            if crop_size is not None:
                overrides["crop_size"] = _side(crop_size)
            request = PretrainRequest(
                preset=preset,
                root=data,
                train_split=train_split,
                val_split=parse_val_split(val_split),
                overrides={k: v for k, v in overrides.items() if v is not None},
                conventional=conventional,
                seed=seed,
                log_interval=log_interval,
            )
            prepared = prepare_pretraining(request)
            result = pretrain(
                prepared.model,
                prepared.job,
                output or (lambda: shared_run_dir(DEFAULT_PROJECT, context)),
                context,
                workers=workers,
                callbacks=progress,
            )
    if context.is_main:
        print_summary(result, _LINES, quiet)


def _side(text: str) -> int:
    """``--crop-size``: one side, or HxW with equal sides (the recipe checks its bounds)."""
    height, width = parse_size(text, "--crop-size")
    if height != width:
        raise fail(f"--crop-size {text}: pretraining crops are square; give one side", EXIT_USAGE)
    return height
