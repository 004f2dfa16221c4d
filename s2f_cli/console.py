"""Where the CLI writes: results on stdout, progress and errors on stderr."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spike2former.errors import S2FError
from spike2former.training.distributed import group_failure

# No emoji codes: a path such as ``a:smile:.jpg`` must print as it is.
stdout = Console(soft_wrap=True, emoji=False)
stderr = Console(stderr=True, soft_wrap=True, emoji=False)

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # finished, but some inputs failed (each reported in its own line)


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print ``message`` as one red line on stderr; return the exit to raise."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn library errors, and a process group's failure (a peer died), into one-line messages
    and exit code 1; Ctrl-C into exit code 130."""
    try:
        yield
    except S2FError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except RuntimeError as exc:
        lost = group_failure(exc)
        if lost is None:
            raise
        raise fail(str(lost)) from None


@contextmanager
def interrupted_by_sigterm() -> Iterator[None]:
    """Treat SIGTERM (what launchers send to stop the other processes when one fails) as
    Ctrl-C, so the same clean-up runs: finished results kept, nothing partial left."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def progress_bar(live: bool) -> Progress:
    """The bar every command shows on stderr while it works through its inputs (``live``:
    shown; off for -q and when stderr is not a terminal), gone when done."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=not live,
        transient=True,
    )
