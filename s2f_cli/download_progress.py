"""A rich progress bar on stderr for downloads; the library only calls ``(done, total)``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from spike2former.weights import ProgressCallback

from .console import stderr


@contextmanager
def download_progress(label: str, enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """A progress callback drawing a transient bar, or None when disabled or stderr is not a
    terminal (logs and pipes get the summary line only)."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update
