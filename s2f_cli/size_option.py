"""``S`` or ``HxW`` size arguments (``--crop-size``, ``--stride``)."""

from __future__ import annotations

from .console import EXIT_USAGE, fail


def parse_size(text: str, option: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512), ``"512x1024"`` -> (512, 1024); anything else is a usage error."""
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        raise fail(
            f"{option} takes S or HxW in pixels (e.g. 512 or 512x1024), not {text!r}", EXIT_USAGE
        )
    return values[0], values[1]
