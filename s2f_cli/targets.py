"""Files and folders a command will write, refused before any work when they cannot or must not be
written: a run should not fail at its end for want of a place to put its results."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .console import EXIT_USAGE, fail


def check_output_file(path: Path, flag: str, force: bool, what: str = "a file") -> None:
    """``path``, given with ``flag``, names ``what`` to write: a regular file, replaced only with
    ``force``, in a folder this process may write."""
    if path.is_dir():
        raise fail(f"{path}: is a folder; {flag} names {what} to write", EXIT_USAGE)
    if path.exists() and not path.is_file():
        raise fail(f"{path}: not a regular file; {flag} names {what} to write", EXIT_USAGE)
    if path.exists() and not force:
        raise fail(f"{path}: already exists; pass --force to replace it", EXIT_USAGE)
    _check_writable(path, _nearest_existing(path.absolute().parents), "the file")


def check_output_folder(folder: Path, flag: str, what: str) -> None:
    """``folder``, given with ``flag``, is (or can be made) a folder for ``what``."""
    if folder.exists() and not folder.is_dir():
        raise fail(f"{folder}: is a file; {flag} names a folder for {what}", EXIT_USAGE)
    _check_writable(folder, _nearest_existing([folder, *folder.absolute().parents]), what)


def _nearest_existing(candidates: Iterable[Path]) -> Path:
    return next(path for path in candidates if path.exists())


def _check_writable(path: Path, existing: Path, what: str) -> None:
    """``path`` can be made below ``existing``, its nearest existing ancestor."""
    if not existing.is_dir():
        raise fail(f"{existing}: a file where {path} needs a folder", EXIT_USAGE)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise fail(f"{path}: cannot write {what} (no permission to write in {existing})")
