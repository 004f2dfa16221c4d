"""What ``s2f models`` shows: the registry and the cache side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import DownloadError
from .cache import Cache
from .download import sha256_file
from .registry import WeightsEntry, load_registry


def catalog(
    cache: Cache | None = None, registry: Mapping[str, WeightsEntry] | None = None
) -> list[dict[str, Any]]:
    """One record per registry entry and per cached file: the entry's fields (``registered``
    False and most fields None for files cached from URLs) and ``cached``: path, size and
    SHA-256 of the cached file plus SHA-256 and source of what was downloaded, or None."""
    cache = cache or Cache()
    registry = load_registry() if registry is None else registry
    index = cache.read_index()
    cached = cache.files()
    rows = []
    for name in [*registry, *sorted(n for n in cached if n not in registry)]:
        entry = registry.get(name)
        if entry is not None:
            row = {**entry.to_dict(), "registered": True}
        else:
            row = {"name": name, "kind": cached[name][0], "registered": False}
        row["cached"] = _cached(name, cached.get(name), index.get(name, {}))
        rows.append(row)
    return rows


def _cached(
    name: str, found: tuple[str, Any] | None, record: dict[str, Any]
) -> dict[str, Any] | None:
    if found is None:
        return None
    path = found[1]
    try:
        size = path.stat().st_size
        known = record.get("size") == size and record.get("sha256")
        digest = record["sha256"] if known else sha256_file(path)
    except OSError as exc:
        reason = exc.strerror or exc
        raise DownloadError(f"{path}: cannot read the cached file ({reason})") from None
    return {
        "path": str(path),
        "size": size,
        "sha256": digest,
        "source": record.get("source"),
        "source_sha256": record.get("source_sha256"),
        "recorded": record.get("recorded"),
    }
