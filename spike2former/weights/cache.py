"""The weights cache: where it is, what its files are called, and what it remembers.

Layout under the cache directory (``$S2F_HOME``, else the platform's user cache directory)::

    models/NAME.safetensors      s2f model files, found by ``resolve_model(NAME)``
    backbones/NAME.pth           ImageNet backbone weights as published (or .safetensors)
    .partial/NAME.part           an unfinished download, resumed by the next try, with
                                 NAME.part.json (its URL, ETag, Last-Modified); lock files
    index.json                   per name: source URL, SHA-256 and size of what was downloaded
                                 (the "hashes seen"), SHA-256 and size of the cached file

Only files that passed every check are moved into ``models/`` or ``backbones/``, by a rename.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import DownloadError, WeightsSpecError
from ..model_file import write_atomically

try:  # POSIX advisory locks; released by the kernel if the process dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, concurrent downloads are the user's risk
    fcntl = None  # type: ignore[assignment]

APP_NAME = "s2f"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
BACKBONE_SUFFIXES = (".pth", ".safetensors")


def default_cache_dir(
    env: Mapping[str, str] = os.environ, platform: str = sys.platform, home: Path | None = None
) -> Path:
    """The user cache directory of this platform, plus ``s2f``.

    Linux and other Unixes: ``$XDG_CACHE_HOME/s2f`` (``~/.cache/s2f`` when unset or relative, as
    the XDG spec says); macOS: ``~/Library/Caches/s2f``; Windows: ``%LOCALAPPDATA%\\s2f\\Cache``.
    These are the locations ``platformdirs.user_cache_dir("s2f", appauthor=False)`` returns.
    """
    home = home or Path.home()
    if platform.startswith("win"):
        local = env.get("LOCALAPPDATA")
        base = Path(local) if local else home / "AppData" / "Local"
        return base / APP_NAME / "Cache"
    if platform == "darwin":
        return home / "Library" / "Caches" / APP_NAME
    xdg = env.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"
    return base / APP_NAME


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$S2F_HOME`` when set (``~`` expanded, made absolute), else ``default_cache_dir()``."""
    configured = env.get("S2F_HOME", "").strip()
    if configured:
        return Path(os.path.abspath(os.path.expanduser(configured)))
    return default_cache_dir(env)


def check_name(name: str) -> str:
    """Return ``name`` if it can name a cache file; refuse separators, ``..`` and the like.

    A name is a single file-name component of letters, digits, ``.``, ``_``, ``+`` and ``-``
    that starts with a letter or digit and has no ``..``, so it can never leave the cache.
    """
    if not _NAME.fullmatch(name) or ".." in name:
        raise WeightsSpecError(
            f"invalid weights name {name!r}: use letters, digits, '.', '_', '+' and '-' only, "
            "starting with a letter or digit (no path separators, no '..')"
        )
    return name


class Cache:
    """The cache directory ``root``; nothing here writes outside it."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def model_path(self, name: str) -> Path:
        return self._inside(self.root / "models" / f"{check_name(name)}.safetensors")

    def backbone_path(self, name: str, suffix: str) -> Path:
        return self._inside(self.root / "backbones" / f"{check_name(name)}{suffix}")

    def partial_path(self, name: str) -> Path:
        return self._inside(self.root / ".partial" / f"{check_name(name)}.part")

    def find(self, name: str) -> Path | None:
        """The cached file called ``name`` (a model first, then a backbone), if there is one."""
        candidates = [self.model_path(name)]
        candidates += [self.backbone_path(name, suffix) for suffix in BACKBONE_SUFFIXES]
        return next((path for path in candidates if path.is_file()), None)

    def files(self) -> dict[str, tuple[str, Path]]:
        """Every cached file: name -> (kind, path)."""
        found: dict[str, tuple[str, Path]] = {}
        for kind, folder in (("backbone", "backbones"), ("model", "models")):
            directory = self.root / folder
            try:
                paths = sorted(directory.iterdir()) if directory.is_dir() else []
            except OSError as exc:
                raise DownloadError(self._unusable(_reason(exc))) from None
            for path in paths:
                if path.is_file() and not path.name.startswith("."):
                    found[path.name.rsplit(".", 1)[0]] = (kind, path)
        return found

    def read_index(self) -> dict[str, dict[str, Any]]:
        """What was recorded about each downloaded name (empty if nothing yet)."""
        if self.root.exists() and not self.root.is_dir():
            raise DownloadError(self._unusable("a file, not a folder"))
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            raise DownloadError(
                f"{self.index_path}: unreadable cache index ({exc}); delete it to start afresh"
            ) from None
        files = data.get("files") if isinstance(data, dict) else None
        return files if isinstance(files, dict) else {}

    def record(self, name: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` (plus the time) for ``name`` in the index, atomically."""
        with self._locked(".index"):
            files = self.read_index()
            files[name] = {
                **entry,
                "recorded": datetime.now(timezone.utc).isoformat(" ", "seconds"),
            }
            text = json.dumps({"version": 1, "files": files}, indent=2, sort_keys=True) + "\n"
            write_atomically(self.index_path, lambda tmp: Path(tmp).write_text(text, "utf-8"))

    @contextmanager
    def downloading(self, name: str) -> Iterator[None]:
        """Hold the lock for downloads of ``name``; fail at once if another process holds it."""
        with self._locked(check_name(name), wait=False):
            yield

    @contextmanager
    def _locked(self, name: str, wait: bool = True) -> Iterator[None]:
        """An exclusive lock on ``.partial/NAME.lock``. A lock that is never waited for is
        removed again while held, so that finished downloads leave no lock files behind."""
        lock_path = self.root / ".partial" / f"{name}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(lock_path, "a+b")
        except OSError as exc:
            raise DownloadError(self._unusable(_reason(exc))) from None
        with lock:
            if fcntl is not None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    raise DownloadError(
                        f"another s2f process is downloading {name!r} into {self.root}; "
                        "wait for it to finish"
                    ) from None
            try:
                yield
            finally:
                if not wait:
                    with suppress(OSError):  # Windows cannot remove an open file
                        lock_path.unlink()

    def _unusable(self, reason: str) -> str:
        return (
            f"{self.root}: cannot use this cache folder ({reason}); "
            "point S2F_HOME at a folder that can be written"
        )

    def _inside(self, path: Path) -> Path:
        """``path``, after checking that it resolves inside the cache directory."""
        root = self.root.resolve()
        if not path.resolve().is_relative_to(root):
            raise WeightsSpecError(f"{path}: outside the cache directory {root}")
        return path


def _reason(exc: OSError) -> str:
    """An ``OSError`` in a few words, with the file it concerns."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason
