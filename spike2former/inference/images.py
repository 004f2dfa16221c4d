"""Every image of a job's inputs in turn: a still image, each frame of a video, and for an input
that cannot be read the line that says why, so that a run can report it and go on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .sources import ImageReadError, Source, VideoReader, decode_image, read_image

# (input position, label, HxWx3 uint8 RGB image or None, why it is None)
Image = tuple[int, str, np.ndarray | None, str | None]


def each_image(
    items: Iterable[tuple[int, Source]], read_stdin: Callable[[], bytes]
) -> Iterator[Image]:
    """``(position, label, image, None)`` per image or video frame (a frame's label ends in
    ``#N``), ``(position, label, None, message)`` per input that cannot be read; ``position`` is
    the input's in the job. ``read_stdin`` gives the bytes of a ``-`` input."""
    for position, source in items:
        if source.kind == "video":
            yield from _frames(position, source)
            continue
        try:
            if source.kind == "stdin":
                image = decode_image(read_stdin(), "<stdin>")
            else:
                assert source.path is not None
                image = read_image(source.path)
        except ImageReadError as exc:
            yield position, source.label, None, str(exc)
            continue
        yield position, source.label, image, None


def _frames(position: int, source: Source) -> Iterator[Image]:
    assert source.path is not None
    try:
        reader = VideoReader(source.path)
    except ImageReadError as exc:
        yield position, source.label, None, str(exc)
        return
    try:
        for index, frame in reader.frames():
            yield position, f"{source.label}#{index}", frame, None
    finally:
        reader.close()
