"""Files that appear complete or not at all."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import OutputError

# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomically(path: str | os.PathLike[str], write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    The final name never holds a partial file; on failure the temporary file is removed and an
    ``OSError`` becomes a one-line ``OutputError``. The file gets the usual permissions
    (0666 minus the umask), not the temporary file's 0600.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(**temporary_name(target))
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the file ({exc})") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the file ({exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def write_together(files: list[tuple[Path, bytes]]) -> None:
    """Write several files so that all of them appear or none does: each goes to a temporary
    name first, the renames start only once every temporary is complete, and a failed rename
    removes the files renamed before it."""
    written: list[tuple[str, Path]] = []
    current = files[0][0] if files else Path()
    try:
        for current, data in files:
            current.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(**temporary_name(current))
            written.append((tmp, current))
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.chmod(tmp, 0o666 & ~_UMASK)
        for done, (tmp, current) in enumerate(written):
            try:
                os.replace(tmp, current)
            except OSError:
                for _, renamed in written[:done]:  # back out: none rather than some
                    renamed.unlink(missing_ok=True)
                raise
    except OSError as exc:
        raise OutputError(f"{current}: cannot write the file ({exc})") from None
    finally:
        for tmp, _ in written:
            if os.path.exists(tmp):
                os.unlink(tmp)


# What ``temporary_name`` gives: ``.NAME.`` + mkstemp's 8 random characters + ``.tmp[.SUFFIX]``.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?")


def temporary_name(target: Path, keep_suffix: bool = False) -> dict[str, str]:
    """``tempfile.mkstemp``/``mkdtemp`` arguments for a hidden temporary beside ``target``
    (ending in ``target``'s suffix when a writer picks the format by it)."""
    suffix = ".tmp" + (target.suffix if keep_suffix else "")
    return {"prefix": f".{target.name}.", "suffix": suffix, "dir": str(target.parent)}


def remove_leftovers(targets: list[Path]) -> int:
    """Delete temporaries that a killed process left while writing any of ``targets``; returns
    how many. Each folder is listed once; files of other targets are never touched."""
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, set()).add(target.name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if match is None or match["name"] not in names:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed
