"""What a training run (``s2f train``, ``s2f pretrain``) tells the person running it, on
stderr: the progress of rank 0, and the closing summary."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from spike2former.errors import NamesArguments

from .api_options import as_text, described
from .console import stderr, stdout


@dataclass(frozen=True)
class RunLines:
    """How a command words its run, as ``str.format`` templates: ``start``, the line before the
    first iteration, over the job's recipe fields and ``first`` (the first iteration to run);
    ``validation``, over a validation record; ``best``, the best score, over the run's result.
    Scores are written with two decimals (n/a where missing), sizes as ``HxW``."""

    label: str  # of the bar: "training"
    done: str  # the summary's verb: "Trained"
    start: str
    validation: str
    best: str


class RunProgress:
    """A rich bar with loss, lr, it/s and ETA; log lines where stderr is not a terminal, and
    validation results always, as ``lines`` words them; ``silent``: no output at all."""

    def __init__(
        self, silent: bool, lines: RunLines, flags: Mapping[str, str] | None = None
    ) -> None:
        self.silent = silent
        self.flags = flags
        self.live = not silent and stderr.is_terminal
        self.lines = lines
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

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def on_start(self, start: int, total: int, job: Any) -> None:
        self.task = self.progress.add_task(
            self.lines.label, total=total, completed=start, loss=float("nan"), lr=0.0, speed=""
        )
        if self.silent:
            return
        if start >= total:
            self._line(f"The run is complete: {start} of {total} iterations.")
        else:
            fields = dataclasses.asdict(job.recipe)
            self._line(_filled(self.lines.start, {**fields, "first": start + 1}))

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
            self._line(_filled(self.lines.validation, record))

    def on_note(self, note: NamesArguments) -> None:
        """A library note, naming the command's options (``flags``)."""
        if not self.silent:
            self.progress.console.print(
                f"[yellow]note:[/] {escape(described(note, self.flags))}", highlight=False
            )

    def _line(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False)


def print_summary(result: Any, lines: RunLines, quiet: bool) -> None:
    """``DONE to iteration N; best SCORE at iteration M. Run saved to RUN`` on stderr (not with
    ``quiet``; no best without validation), and the run folder on stdout. ``result`` is what
    the library's loop returns (``run_dir``, ``iteration``, ``best_iteration``, scores)."""
    if not quiet:
        summary = f"{lines.done} to iteration {result.iteration}"
        if result.best_iteration is not None:
            best = _filled(lines.best, dataclasses.asdict(result))
            summary += f"; best {best} at iteration {result.best_iteration}"
        stderr.print(
            f"{escape(summary)}. Run saved to [bold]{escape(str(result.run_dir))}[/]",
            highlight=False,
        )
    stdout.print(str(result.run_dir), highlight=False, markup=False)


def _filled(template: str, fields: dict[str, Any]) -> str:
    return template.format(**{name: _as_text(value) for name, value in fields.items()})


def _as_text(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2f}"
    return as_text(value) if isinstance(value, tuple) else value
