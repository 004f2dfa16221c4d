"""Files shipped inside the package so that s2f can be tried with nothing else at hand: the four
example scenes of the repository's ``examples/`` (the same bytes), which ``s2f segment``
segments when given no source."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ..errors import S2FError


def example_images() -> list[Path]:
    """The bundled example scenes, ``scene_1.jpg`` to ``scene_4.jpg`` (256x256 RGB JPEGs)."""
    folder = Path(str(files(__package__)))
    found = sorted(folder.glob("scene_*.jpg"))
    if not found:
        raise S2FError(f"{folder}: the example scenes shipped with s2f are missing; reinstall s2f")
    return found
