"""Offline mode: whether downloads are allowed, and what to tell the user when they are not."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import OfflineError
from .cache import Cache
from .registry import WeightsEntry

_TRUE = ("1", "true", "yes", "on")
# Why nothing is downloaded; ``{offline}`` names the argument (``NamesArguments``).
DOWNLOADS_OFF = "downloads are off ({offline} or S2F_OFFLINE=1)"


def is_offline(offline: bool | None = None, env: Mapping[str, str] = os.environ) -> bool:
    """``offline`` when given, else whether ``$S2F_OFFLINE`` is set to 1 / true / yes / on."""
    if offline is not None:
        return offline
    return env.get("S2F_OFFLINE", "").strip().lower() in _TRUE


def offline_error(entry: WeightsEntry, cache: Cache) -> OfflineError:
    """The error for weights needed while offline: which file to fetch, and where to put it."""
    if entry.kind == "model":
        place = f"or put an s2f model file (`s2f convert`) at {cache.model_path(entry.name)}"
    else:
        place = f"or put the file at {cache.backbone_path(entry.name, '.pth')}"
    return OfflineError(
        f"{entry.name} is not in the cache and {DOWNLOADS_OFF}: get {entry.urls[0]} on a machine "
        f"with internet access, then run `s2f download FILE --cache-name {entry.name}` here (it "
        f"checks the file and stores it), {place}",
        offline=True,
    )
