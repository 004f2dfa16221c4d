"""What the commands that train (``s2f train``, ``s2f pretrain``) do alike around the library:
the validation split option, the checks of a new or resumed run folder, the processes the run
goes on."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from spike2former.errors import NamesArguments
from spike2former.training import Conflict, DistributedContext, RunFolder, RunFolderError
from spike2former.training.distributed import shutdown

from .api_options import as_text, option_errors
from .console import EXIT_USAGE, fail
from .option_source import given_options, option_flags
from .processes import process_group
from .run_progress import RunLines, RunProgress
from .threads_option import use_threads

# Parameters that name a run setting otherwise than the library does.
_SETTINGS = {"data": "root", "dataset_format": "format"}
# Options that say how to run, not what to train: a resume may change them.
_RUN_ONLY = frozenset(
    {
        "--output",
        "--resume",
        "--workers",
        "--device",
        "--threads",
        "--offline",
        "--quiet",
        "--recompute-backbone",
    }
)

ConflictsOf = Callable[[RunFolder, Mapping[str, Any]], list[Conflict]]


def parse_val_split(text: str) -> str | None:
    """``--val-split``: a split's name, or none (or nothing) for a run without validation."""
    return None if text.lower() in ("", "none") else text


def setting_flags(ctx: typer.Context) -> dict[str, str]:
    """The option of each run setting, by the library's name for it (``root`` -> ``--data``)."""
    return {_SETTINGS.get(name, name): flag for name, flag in option_flags(ctx).items()}


def check_new_run(data: Path | None, out: Path | None, required: Mapping[str, Any]) -> None:
    """Refuse a new run without the ``required`` options (by flag and metavar), on a missing
    data folder, or into a folder that holds anything."""
    if any(value is None for value in required.values()):
        raise fail(f"{' and '.join(required)} are required for a new run", EXIT_USAGE)
    if data is None or not data.is_dir():
        raise fail(f"--data {data}: no such directory", EXIT_USAGE)
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise fail(
            f"{out} already exists; pass --resume to continue that run, or choose another --output",
            EXIT_USAGE,
        )


def check_resume(
    ctx: typer.Context,
    out: Path | None,
    conflicts_of: ConflictsOf,
    parsers: Mapping[str, Callable[[str], Any]],
) -> None:
    """Refuse a resume without ``--output``, of a folder that holds no run, or with options that
    disagree with the run's saved settings (options equal to them are welcome).

    ``conflicts_of(run, given)`` compares the given settings, by the library's names, with the
    run's; ``parsers`` turn an option's text into the value a new run would take.
    """
    if out is None:
        raise fail("--resume continues the run given with --output RUN", EXIT_USAGE)
    run = RunFolder(out)
    flags = setting_flags(ctx)
    parameter_flags = option_flags(ctx)
    with option_errors(flags, usage=(RunFolderError,)):
        run.check_resumable()
        given: dict[str, Any] = {}
        for name in given_options(ctx):
            if parameter_flags[name] not in _RUN_ONLY:
                value = ctx.params[name]
                given[_SETTINGS.get(name, name)] = (
                    parsers[name](value) if name in parsers else value
                )
        conflicts = conflicts_of(run, given)
    if conflicts:
        listed = ", ".join(_conflict(flags[conflict.name], conflict) for conflict in conflicts)
        them = "it" if len(conflicts) == 1 else "them"
        raise fail(
            f"--resume continues {out} with its saved settings: {listed}; leave {them} out, or "
            "start a new run with another --output",
            EXIT_USAGE,
        )


@contextmanager
def training_processes(
    device: str,
    threads: int,
    quiet: bool,
    lines: RunLines,
    flags: Mapping[str, str],
    usage: tuple[type[NamesArguments], ...],
) -> Iterator[tuple[DistributedContext, RunProgress]]:
    """This process's place among those launched (torch's ``threads`` set) and the progress the
    run reports to (rank 0 only, unless ``quiet``). Library errors inside end the command in
    one line naming the options at fault (``option_errors``: exit 2 for the kinds in ``usage``);
    the process group is shut down on the way out."""
    use_threads(threads)
    context = process_group(device)
    try:
        progress = RunProgress(quiet or not context.is_main, lines, flags)
        with option_errors(flags, usage=usage), progress:
            yield context, progress
    finally:
        shutdown(context)


def _conflict(flag: str, conflict: Conflict) -> str:
    if isinstance(conflict.saved, bool):
        started = "with" if conflict.saved else "without"
        return f"{flag} conflicts with the run (started {started} it)"
    return f"{flag} {as_text(conflict.given)} conflicts with the run's {as_text(conflict.saved)}"
