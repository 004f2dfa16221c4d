"""Run folders that never clobber earlier results: ``predict``, ``predict2``, ``predict3``, ..."""

from __future__ import annotations

from pathlib import Path


def make_run_dir(project: Path, name: str, exist_ok: bool = False) -> Path:
    """Create and return ``project/name``, or the first free ``project/nameN`` (N >= 2).

    ``mkdir`` itself decides which name is free, so two runs started together get two folders.
    With ``exist_ok`` an existing ``project/name`` is reused.
    """
    project.mkdir(parents=True, exist_ok=True)
    candidate, n = project / name, 1
    while True:
        try:
            candidate.mkdir(exist_ok=exist_ok and n == 1)
            return candidate
        except FileExistsError:
            n += 1
            candidate = project / f"{name}{n}"
