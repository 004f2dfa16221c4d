"""``s2f train``: train a preset or fine-tune a model file, resumably, on one or many processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from spike2former.errors import WeightsSpecError
from spike2former.presets import PRESETS
from spike2former.training import (
    ClassCountError,
    Conflict,
    DataSpec,
    RecipeError,
    RunFolder,
    RunFolderError,
    RunRequest,
    RunRequestError,
    TrainJob,
    init_distributed,
    prepare_run,
    resume,
    resume_conflicts,
    train,
)
from spike2former.training.distributed import (
    DistributedError,
    shutdown,
)
from spike2former.training.preflight import RunSettingsError
from spike2former.training.recipe import PIPELINES, RECIPES
from spike2former.weights import DEFAULT_MODEL

from .api_options import as_text, described, option_errors
from .console import EXIT_USAGE, fail, stderr, stdout
from .download_progress import download_progress
from .option_source import given_options, option_flags
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
from .size_option import parse_size
from .threads_option import use_threads

DEFAULT_PROJECT = Path("runs/train")
# Label maps hold 8- or 16-bit class ids.
MAX_CLASSES = 2**16 - 1

# Parameters that name a run setting otherwise than the library does (``resume_settings``).
_SETTINGS = {"data": "root", "dataset_format": "format"}
# Parameters that say how to run, not what to train: a resume may change them.
_RUN_ONLY = frozenset({"out", "resume_run", "workers", "device", "threads", "offline", "quiet"})
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
        "crop_size": parse_size(crop_size, "--crop-size") if crop_size is not None else None,
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
    flags = _flags(ctx)
    if resume_run:
        _check_resume(ctx, out, flags)
    else:
        _check_new_run_arguments(data, dataset_format, out)
    use_threads(threads)

    with option_errors(flags, usage=(DistributedError,)):
        context = init_distributed(device)
    try:
        callbacks = _Progress(quiet or not context.is_main)
        with option_errors(flags, usage=_USAGE_ERRORS), callbacks:
            if resume_run:
                result = resume(out, context, workers=workers, callbacks=callbacks)  # type: ignore[arg-type]
            else:
                assert data is not None and dataset_format is not None
                request = RunRequest(
                    data=DataSpec.of(
                        dataset_format,
                        data,
                        train_split=train_split,
                        val_split=_val_split(val_split),
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
                )
    finally:
        shutdown(context)
    if context.is_main:
        if not quiet:
            best = (
                f"; best mIoU {result.best_miou:.2f} at iteration {result.best_iteration}"
                if result.best_miou is not None
                else ""
            )
            stderr.print(
                f"Trained to iteration {result.iteration}{best}. Run saved to "
                f"[bold]{escape(str(result.run_dir))}[/]",
                highlight=False,
            )
        stdout.print(str(result.run_dir), highlight=False, markup=False)


def _flags(ctx: typer.Context) -> dict[str, str]:
    """The option of each run setting, by the library's name for it (``root`` -> ``--data``)."""
    return {_SETTINGS.get(name, name): flag for name, flag in option_flags(ctx).items()}


def _check_resume(ctx: typer.Context, out: Path | None, flags: dict[str, str]) -> None:
    """Refuse a resume without ``--output``, of a folder that holds no run, or with options that
    disagree with the run's saved settings (options equal to them are welcome)."""
    if out is None:
        raise fail("--resume continues the run given with --output RUN", EXIT_USAGE)
    run = RunFolder(out)
    with option_errors(flags, usage=(RunFolderError,)):
        run.check_resumable()
        given = {
            _SETTINGS.get(name, name): _setting(name, ctx.params[name])
            for name in given_options(ctx)
            if name not in _RUN_ONLY
        }
        conflicts = resume_conflicts(run, given)
    if conflicts:
        listed = ", ".join(_conflict(flags[conflict.name], conflict) for conflict in conflicts)
        them = "it" if len(conflicts) == 1 else "them"
        raise fail(
            f"--resume continues {out} with its saved settings: {listed}; leave {them} out, or "
            "start a new run with another --output",
            EXIT_USAGE,
        )


def _setting(name: str, value: Any) -> Any:
    """An option's value as a new run applies it."""
    if name == "crop_size":
        return parse_size(value, "--crop-size")
    if name == "val_split":
        return _val_split(value)
    return value


def _val_split(text: str) -> str | None:
    return None if text.lower() in ("", "none") else text


def _conflict(flag: str, conflict: Conflict) -> str:
    if isinstance(conflict.saved, bool):
        started = "with" if conflict.saved else "without"
        return f"{flag} conflicts with the run (started {started} it)"
    return f"{flag} {as_text(conflict.given)} conflicts with the run's {as_text(conflict.saved)}"


def _check_new_run_arguments(
    data: Path | None, dataset_format: str | None, out: Path | None
) -> None:
    if data is None or dataset_format is None:
        raise fail("--data DIR and --format FORMAT are required for a new run", EXIT_USAGE)
    if not data.is_dir():
        raise fail(f"--data {data}: no such directory", EXIT_USAGE)
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise fail(
            f"{out} already exists; pass --resume to continue that run, or choose another --output",
            EXIT_USAGE,
        )


class _Progress:
    """Rich progress on stderr (rank 0): loss, lr, it/s, ETA; log lines where stderr is not a
    terminal, and validation results always."""

    def __init__(self, silent: bool) -> None:
        self.silent = silent
        self.live = not silent and stderr.is_terminal
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[speed]}"),
            TimeRemainingColumn(),
            console=stderr,
            disable=not self.live,
        )
        self.task: Any = None
        self.last_time = 0.0

    def __enter__(self) -> _Progress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def on_start(self, start: int, total: int, job: TrainJob) -> None:
        self.task = self.progress.add_task(
            "training", total=total, completed=start, loss=float("nan"), lr=0.0, speed=""
        )
        if not self.silent and start >= job.recipe.iters:
            self._line(f"The run is complete: {start} of {job.recipe.iters} iterations.")
        elif not self.silent:
            recipe = job.recipe
            self._line(
                f"Training iterations {start + 1}..{recipe.iters}, batch {recipe.batch_size} "
                f"per process, crop {recipe.crop_size[0]}x{recipe.crop_size[1]}, "
                f"{recipe.pipeline}"
            )

    def on_iteration(self, iteration: int, loss: float, lr: float) -> None:
        task = self.progress.tasks[0] if self.progress.tasks else None
        speed = f"{task.speed:.2f} it/s" if task is not None and task.speed else ""
        self.progress.update(self.task, completed=iteration, loss=loss, lr=lr, speed=speed)

    def on_log(self, record: dict[str, Any]) -> None:
        if not self.silent and not self.live:
            self._line(
                f"iter {record['iter']}: loss {record['loss']:.4f}, lr {record['lr']:.3e}, "
                f"{record['images_per_s']} images/s"
            )

    def on_eval(self, record: dict[str, Any]) -> None:
        if not self.silent:
            self._line(
                f"iter {record['iter']}: val mIoU {_pct(record['mIoU'])}, mAcc "
                f"{_pct(record['mAcc'])}, aAcc {_pct(record['aAcc'])} (best "
                f"{_pct(record['best_mIoU'])})"
            )

    def on_checkpoint(self, iteration: int) -> None:
        return None

    def _line(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f}"
