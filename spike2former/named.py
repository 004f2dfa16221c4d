"""Lookup in a table of named entries (presets, training recipes), with one way of refusing an
unknown name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """``table[name]``; an unknown name raises ``KeyError`` listing the known ones, so that the
    caller can correct it."""
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise KeyError(f"unknown {kind} {name!r}; known {kind}s: {known}") from None
