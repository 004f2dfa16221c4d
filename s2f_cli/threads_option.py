"""``--threads``: torch's CPU threads, checked against the cores this process may use."""

from __future__ import annotations

import os

import torch

from .console import EXIT_USAGE, fail


def use_threads(threads: int) -> None:
    """Give torch ``threads`` CPU threads (0 keeps its default). More than the cores this process
    may use only slow torch down, and thousands exhaust the machine: a usage error."""
    if not threads:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and threads > cores:
        raise fail(
            f"--threads {threads} is more than the {cores} CPU cores this process may use; give "
            f"at most {cores} (0 keeps torch's default)",
            EXIT_USAGE,
        )
    torch.set_num_threads(threads)
