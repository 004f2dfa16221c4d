"""``s2f pretrain``: image-classification pretraining of a preset's spiking backbone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spike2former.errors import ConfigError
from spike2former.presets import PRESETS, get_preset
from spike2former.pretrain import (
    BackboneClassifier,
    PretrainJob,
    PretrainRecipe,
    class_names,
    pretrain,
    resume_pretrain,
)
from spike2former.pretrain.loop import BackboneRunFolder
from spike2former.pretrain.recipe import MAX_CROP, MIN_CROP
from spike2former.training import RunFolderError
from spike2former.training.distributed import (
    shutdown,
)

from .api_options import as_text, described
from .console import EXIT_USAGE, fail, reported_errors, stderr, stdout
from .option_source import given_options, option_flags
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
from .processes import process_group, shared_run_dir
from .size_option import parse_size
from .threads_option import use_threads

DEFAULT_PROJECT = Path("runs/pretrain")
# Options that say how to run, not what to train: a resume may give them.
_RUN_ONLY = frozenset({"output", "resume_run", "workers", "device", "threads", "quiet"})
# Options stored in the job under another name.
_JOB_FIELDS = {"data": "root"}
# Options that set a recipe field.
_RECIPE_FIELDS = (
    "iters", "batch_size", "crop_size", "lr", "weight_decay", "warmup_iters", "eval_interval",
    "checkpoint_interval",
)  # fmt: skip


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
    """Pretrain a spiking backbone on image classification (the SDT recipe); the run's
    weights/best.safetensors goes to `s2f train --init-backbone`."""
    if resume_run:
        _check_resume(ctx, output)
    else:
        if preset is None or data is None:
            raise fail("--preset NAME and --data DIR are required for a new run", EXIT_USAGE)
        if preset not in PRESETS:
            raise fail(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", EXIT_USAGE)
        if not data.is_dir():
            raise fail(f"--data {data}: no such directory", EXIT_USAGE)
        if (
            output is not None
            and output.exists()
            and (not output.is_dir() or any(output.iterdir()))
        ):
            raise fail(f"{output} already exists; pass --resume to continue that run", EXIT_USAGE)
    use_threads(threads)
    context = process_group(device)
    try:
        progress = _Progress(quiet or not context.is_main)
        with reported_errors(), progress:
            try:
                if resume_run:
                    result = resume_pretrain(output, context, workers=workers, callbacks=progress)  # type: ignore[arg-type]
                else:
                    assert preset is not None and data is not None
                    changes = {name: ctx.params[name] for name in _RECIPE_FIELDS}
                    if crop_size is not None:
                        changes["crop_size"] = _square(crop_size)
                    try:
                        recipe = dataclasses.replace(
                            PretrainRecipe(), **{k: v for k, v in changes.items() if v is not None}
                        )
                    except ConfigError as exc:
                        raise fail(str(exc), EXIT_USAGE) from None
                    job = PretrainJob(
                        recipe=recipe,
                        root=str(data.expanduser().resolve()),
                        train_split=train_split,
                        val_split=_val_split(val_split),
                        seed=seed,
                        log_interval=log_interval,
                        preset=preset,
                        conventional=conventional,
                    )
                    config = get_preset(preset).replace(spiking=not conventional)
                    torch.manual_seed(seed)
                    model = BackboneClassifier(config, class_names(job))
                    result = pretrain(
                        model,
                        job,
                        output or (lambda: shared_run_dir(DEFAULT_PROJECT, context)),
                        context,
                        workers=workers,
                        callbacks=progress,
                    )
            except RunFolderError as exc:
                raise fail(described(exc), EXIT_USAGE) from None
    finally:
        shutdown(context)
    if context.is_main:
        if not quiet:
            best = (
                f"; best top-1 {result.best_top1:.2f} % at iteration {result.best_iteration}"
                if result.best_top1 is not None
                else ""
            )
            stderr.print(
                f"Pretrained to iteration {result.iteration}{best}. Run saved to "
                f"[bold]{escape(str(result.run_dir))}[/]",
                highlight=False,
            )
        stdout.print(str(result.run_dir), highlight=False, markup=False)


def _square(text: str) -> int:
    """``--crop-size``: one side, or HxW with equal sides, within the recipe's bounds."""
    height, width = parse_size(text, "--crop-size")
    if height != width or not MIN_CROP <= height <= MAX_CROP:
        raise fail(
            f"--crop-size {text}: pretraining crops are square, {MIN_CROP} to {MAX_CROP} pixels",
            EXIT_USAGE,
        )
    return height


def _check_resume(ctx: typer.Context, output: Path | None) -> None:
    """Refuse a resume without ``--output``, or with options that disagree with the run's saved
    settings (options equal to them are welcome), naming them."""
    if output is None:
        raise fail("--resume continues the run given with --output RUN", EXIT_USAGE)
    try:
        job = PretrainJob.from_dict(BackboneRunFolder(output).read_config()["job"])
    except Exception:  # noqa: BLE001 - no readable run: resume_pretrain says what is wrong
        return
    saved = {**dataclasses.asdict(job), **dataclasses.asdict(job.recipe)}
    flags = option_flags(ctx)
    conflicts = []
    for name in given_options(ctx):
        if name in _RUN_ONLY:
            continue
        given, kept = _as_saved(name, ctx.params[name]), saved[_JOB_FIELDS.get(name, name)]
        if given == kept:
            continue
        if isinstance(kept, bool):
            started = "with" if kept else "without"
            conflicts.append(f"{flags[name]} (the run was started {started} it)")
        else:
            conflicts.append(f"{flags[name]} {as_text(given)} (the run's: {as_text(kept)})")
    if conflicts:
        raise fail(
            f"--resume continues {output} with its saved settings; these differ: "
            f"{', '.join(conflicts)}; leave them out, or start a new run with another --output",
            EXIT_USAGE,
        )


def _as_saved(name: str, value: Any) -> Any:
    """An option's value as the run's configuration stores it."""
    if name == "crop_size":
        return _square(value)
    if name == "data":
        return str(Path(value).expanduser().resolve())
    if name == "val_split":
        return _val_split(value)
    return value


def _val_split(text: str) -> str | None:
    return None if text.lower() in ("", "none") else text


class _Progress:
    """A rich bar on stderr (rank 0) with loss and lr; validation results as lines."""

    def __init__(self, silent: bool) -> None:
        self.silent = silent
        self.progress = Progress(
            TextColumn("pretraining"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
            TimeRemainingColumn(),
            console=stderr,
            disable=silent or not stderr.is_terminal,
        )
        self.task: Any = None

    def __enter__(self) -> _Progress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def on_start(self, start: int, total: int, job: PretrainJob) -> None:
        self.task = self.progress.add_task("", total=total, completed=start, loss=0.0, lr=0.0)
        if not self.silent:
            recipe = job.recipe
            self._line(
                f"Pretraining iterations {start + 1}..{total}, batch {recipe.batch_size} per "
                f"process, crops {recipe.crop_size}x{recipe.crop_size}"
            )

    def on_iteration(self, iteration: int, loss: float, lr: float) -> None:
        self.progress.update(self.task, completed=iteration, loss=loss, lr=lr)

    def on_eval(self, record: dict[str, Any]) -> None:
        if not self.silent:
            self._line(
                f"iter {record['iter']}: val top-1 {record['top1']:.2f} %, top-5 "
                f"{record['top5']:.2f} % (best top-1 {record['best_top1']:.2f} %)"
            )

    def _line(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False)
