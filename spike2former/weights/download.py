"""``download()``: a registry name, URL or local file -> a checked file in the cache.

The file arrives in the partial area (``fetch``), its size and SHA-256 are checked here, and only
then does ``install`` move or convert it into ``models/`` or ``backbones/``. Without a published
checksum, the SHA-256 of the first download is recorded in the cache index; a later download of
the same source that hashes differently is refused, since the upstream file has changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import DownloadError, OfflineError, S2FError, WeightsSpecError
from .cache import Cache, check_name
from .fetch import DEFAULT_TIMEOUT, Fetched, ProgressCallback, copy_file, discard_partial, fetch_url
from .install import install
from .offline import DOWNLOADS_OFF, is_offline, offline_error
from .registry import WeightsEntry, load_registry

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


@dataclass(frozen=True)
class DownloadResult:
    """Where the weights are and how they were checked.

    ``checksum`` is ``"published"`` (the registry's SHA-256), ``"given"`` (``sha256``),
    ``"seen"`` (same as the first download of this source), ``"recorded"`` (first download, no
    checksum to compare with; now recorded), ``"cached"`` (nothing downloaded) or ``"bundled"``
    (shipped inside the package).
    """

    name: str
    path: Path
    kind: str
    source: str
    sha256: str | None
    size: int | None
    checksum: str
    converted: bool = False
    cached: bool = False


@dataclass(frozen=True)
class _Plan:
    name: str
    location: str | Path  # an http(s) URL, or a local file
    entry: WeightsEntry | None
    sha256: str | None
    checksum: str  # "published", "given" or "" (none to compare with)
    manual: bool = False  # a registry entry without a direct download

    @property
    def source(self) -> str:
        return str(self.location)

    @property
    def kind(self) -> str:
        return self.entry.kind if self.entry else "model"


def download(
    source: str,
    *,
    name: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    offline: bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: ProgressCallback | None = None,
    cache: Cache | None = None,
    registry: Mapping[str, WeightsEntry] | None = None,
) -> DownloadResult:
    """Put ``source`` (a registry name, an http(s) or file URL, or a local path) in the cache.

    A cached file is returned as it is unless ``force``. ``name`` names the cached file (default:
    the registry name, or the file name of the URL or path without its suffix); a name that is
    also a registry entry takes that entry's checksum, kind, time steps and class names.
    ``offline`` (default: ``$S2F_OFFLINE``) forbids network access; local files still work.
    """
    cache = cache or Cache()
    registry = load_registry() if registry is None else registry
    bundled = registry.get(source)
    if bundled is not None and bundled.bundled is not None and name in (None, source):
        return _bundled_result(bundled)
    plan = _plan(source, name, sha256, registry)
    existing = cache.find(plan.name)
    if existing is not None and not force:
        return _cached_result(cache, plan, existing)
    if plan.manual and plan.entry is not None:
        raise DownloadError(_manual_message(plan.entry, cache))
    remote = isinstance(plan.location, str)
    if remote and is_offline(offline):
        if plan.entry is not None:
            raise offline_error(plan.entry, cache)
        raise OfflineError(
            f"{plan.source}: {DOWNLOADS_OFF}; fetch the file elsewhere and run "
            f"`s2f download FILE --cache-name {plan.name}`",
            offline=True,
        )
    with cache.downloading(plan.name):
        partial = cache.partial_path(plan.name)
        if isinstance(plan.location, str):
            fetched = fetch_url(plan.location, partial, timeout=timeout, progress=progress)
        else:
            fetched = copy_file(plan.location, partial, progress)
        try:
            checksum = _verify(plan, fetched, cache)
            path, converted = install(partial, cache, plan.name, plan.entry, plan.source)
        except S2FError:
            discard_partial(partial)
            raise
        discard_partial(partial)  # the metadata of the finished download
        cache.record(
            plan.name,
            {
                "kind": plan.kind,
                "source": plan.source,
                "source_sha256": fetched.sha256,
                "source_size": fetched.size,
                "file": path.relative_to(cache.root).as_posix(),
                "sha256": sha256_file(path),
                "size": path.stat().st_size,
                "converted": converted,
            },
        )
    return DownloadResult(
        plan.name, path, plan.kind, plan.source, fetched.sha256, fetched.size, checksum, converted
    )


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _plan(
    source: str, name: str | None, sha256: str | None, registry: Mapping[str, WeightsEntry]
) -> _Plan:
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise WeightsSpecError("{sha256}: expected 64 hexadecimal digits", sha256=sha256)
    sha256 = sha256.lower() if sha256 else None
    location = _locate(source)
    if location is None:  # a registry name
        if name is not None and name != source:
            raise WeightsSpecError(
                f"{source!r} is a registry name, cached under it; {{name}} names only URLs and "
                "local files",
                name=name,
            )
        entry = registry.get(check_name(source))
        if entry is None:
            known = ", ".join(sorted(registry))
            raise WeightsSpecError(
                f"unknown weights name {source!r}; known names: {known} (or give a URL or path)"
            )
        target = entry.name
        location = entry.urls[0] if not entry.direct else _locate(entry.urls[0]) or entry.urls[0]
    else:
        target = check_name(name if name is not None else _name_from(str(location)))
        entry = registry.get(target)
    published = entry.sha256 if entry else None
    if sha256 and published and sha256 != published:
        raise WeightsSpecError(
            f"{{sha256}} differs from the published checksum of {target} ({published})",
            sha256=sha256,
        )
    expected = sha256 or published
    checksum = "given" if sha256 else ("published" if published else "")
    manual = entry is not None and entry.name == source and not entry.direct
    return _Plan(target, location, entry, expected, checksum, manual)


def _bundled_result(entry: WeightsEntry) -> DownloadResult:
    """A model shipped inside the package: nothing to download or check."""
    path = entry.bundled_path()
    return DownloadResult(
        entry.name, path, entry.kind, "bundled", entry.sha256, path.stat().st_size, "bundled",
        cached=True,
    )  # fmt: skip


def _locate(source: str) -> str | Path | None:
    """An http(s) URL (str), a local file (Path), or None for a registry name."""
    parts = urllib.parse.urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise WeightsSpecError(f"{source}: not a URL (no host)")
        return source
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise WeightsSpecError(f"{source}: file URLs must name a local file")
        return local_file(Path(urllib.request.url2pathname(parts.path)))
    if "://" in source:
        raise WeightsSpecError(f"{source}: unsupported URL scheme (use http, https or file)")
    path = as_path(source)
    return None if path is None else local_file(path)


def as_path(spec: str) -> Path | None:
    """``spec`` as a path when it names an existing file or looks like one (a path separator,
    a leading ``.`` or ``~``, a checkpoint suffix), else ``None`` (a weights name)."""
    path = Path(spec).expanduser()
    if (
        path.is_file()
        or os.sep in spec
        or "/" in spec
        or spec.startswith((".", "~"))
        or path.suffix.lower() in _CHECKPOINT_SUFFIXES
    ):
        return path
    return None


def local_file(path: Path, what: str = "file") -> Path:
    """``path``, refused unless it is an existing file (``what`` it should be, for the error)."""
    if path.is_dir():
        raise WeightsSpecError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise WeightsSpecError(f"{path}: no such {what}")
    return path


def _name_from(source: str) -> str:
    """A cache name from the last component of a URL path or file name, without suffixes."""
    last = urllib.parse.unquote(urllib.parse.urlsplit(source).path).replace("\\", "/")
    last = last.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (*_CHECKPOINT_SUFFIXES, ".s2f"):
        if last.lower().endswith(suffix):
            last = last[: -len(suffix)]
    try:
        return check_name(last)
    except WeightsSpecError:
        raise WeightsSpecError(
            f"{source}: cannot name the cached file after {last!r}; pass {{name}}", name=...
        ) from None


def _verify(plan: _Plan, fetched: Fetched, cache: Cache) -> str:
    entry = plan.entry
    if entry and entry.size is not None and fetched.size != entry.size:
        raise DownloadError(
            f"{plan.source}: {fetched.size} bytes, the registry says {entry.size}; not cached"
        )
    if plan.sha256:
        if fetched.sha256 != plan.sha256:
            raise DownloadError(
                f"{plan.source}: SHA-256 mismatch (expected {plan.sha256}, got "
                f"{fetched.sha256}); the file was not cached"
            )
        return plan.checksum
    seen = cache.read_index().get(plan.name, {})
    if seen.get("source") == plan.source and seen.get("source_sha256"):
        if seen["source_sha256"] != fetched.sha256:
            raise DownloadError(
                f"{plan.source}: the file has changed since it was first downloaded (SHA-256 "
                f"{seen['source_sha256']}, now {fetched.sha256}); not cached. If you trust "
                "the new file, run again with {sha256}",
                sha256=fetched.sha256,
            )
        return "seen"
    return "recorded"


def _cached_result(cache: Cache, plan: _Plan, path: Path) -> DownloadResult:
    record = cache.read_index().get(plan.name, {})
    kind = "backbone" if path.parent.name == "backbones" else "model"
    return DownloadResult(
        plan.name,
        path,
        kind,
        record.get("source", plan.source),
        record.get("source_sha256"),
        record.get("source_size"),
        "cached",
        cached=True,
    )


def _manual_message(entry: WeightsEntry, cache: Cache) -> str:
    url = entry.urls[0]
    return (
        f"{entry.name} has no direct download: open {url} in a browser (see {entry.source}), "
        f"download the file, then run `s2f download FILE --cache-name {entry.name}`"
        f" to check it and put it in {cache.root}"
    )
