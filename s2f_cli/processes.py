"""The processes of a command run by a launcher: this one's place among them, and the run
folders they share."""

from __future__ import annotations

from pathlib import Path

from spike2former.training import init_distributed
from spike2former.training.distributed import (
    DistributedContext,
    DistributedError,
    broadcast_object,
)

from .console import EXIT_USAGE, fail, reported_errors
from .run_dir import make_run_dir


def process_group(device: str) -> DistributedContext:
    """This process's rank and device under torchrun (one process without); an environment
    that describes no usable group is a usage error."""
    with reported_errors():
        try:
            return init_distributed(device)
        except DistributedError as exc:
            raise fail(str(exc), EXIT_USAGE) from None


def shared_run_dir(project: Path, context: DistributedContext) -> Path:
    """A new ``project/runN``, created and chosen by rank 0, the same on every process."""
    chosen = None
    if context.is_main:
        try:
            chosen = str(make_run_dir(project, "run"))
        except OSError as exc:
            raise fail(f"cannot create the run folder ({exc})") from None
    return Path(broadcast_object(chosen, context))  # type: ignore[arg-type]
