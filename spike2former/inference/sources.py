"""What to segment: image files, directories, globs, videos, stdin and path lists.

``expand_sources`` turns command-line arguments into ``Source`` items with output names that keep
the input's name (and, for directory inputs, its relative folder), never colliding within a run.
"""

from __future__ import annotations

import glob
import io
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..errors import S2FError
from .memory import HEADROOM, available_bytes, gib

# OpenCV's BGR decode and the RGB copy, with room for the decoder's own buffers.
DECODE_BYTES_PER_PIXEL = 9

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv"})
STDIN = "-"


class InputError(S2FError):
    """A command-line source that does not exist or holds nothing to segment (a usage error)."""


class ImageReadError(S2FError):
    """One input that cannot be decoded; the run reports it and goes on."""


@dataclass(frozen=True)
class Source:
    """One input. ``kind`` is ``image``, ``video`` or ``stdin``; ``stem`` is the output name
    without suffix (may contain ``/`` for files found inside a directory input)."""

    kind: str
    path: Path | None
    stem: str

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else "<stdin>"


def expand_sources(
    arguments: Sequence[str], recursive: bool = False, list_lines: Sequence[str] = ()
) -> list[Source]:
    """Expand paths, directories and quoted globs (in order, duplicates dropped)."""
    found: list[tuple[str, Path | None, str]] = []
    for argument in [*arguments, *(line.strip() for line in list_lines if line.strip())]:
        if argument == STDIN:
            found.append(("stdin", None, "stdin"))
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            files = [Path(m) for m in matches if _kind(Path(m))]
            if not files:
                raise InputError(f"{argument}: the pattern matches no image or video")
            found += [(_kind(f), f, f.stem) for f in files]
        else:
            path = Path(argument)
            if path.is_dir():
                files = _walk(path, recursive)
                if not files:
                    raise InputError(f"{path}: no images or videos in this directory")
                found += [
                    (_kind(f), f, f.relative_to(path).with_suffix("").as_posix()) for f in files
                ]
            elif path.is_file():
                found.append((_kind(path) or "image", path, path.stem))
            else:
                raise InputError(f"{path}: no such file or directory")
    return _unique(found)


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def _walk(directory: Path, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in directory.glob(pattern) if p.is_file() and _kind(p))


def _unique(found: list[tuple[str, Path | None, str]]) -> list[Source]:
    """Drop repeated inputs; give colliding output names a ``-2``, ``-3``... suffix."""
    sources, seen_paths, taken = [], set(), set()
    for kind, path, stem in found:
        key = path.resolve() if path is not None else STDIN
        if key in seen_paths:
            continue
        seen_paths.add(key)
        name, n = stem, 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name.lower())
        sources.append(Source(kind, path, name))
    return sources


def decode_image(data: bytes, label: str) -> np.ndarray:
    """Encoded image bytes -> ``HxWx3`` uint8 RGB (EXIF orientation applied; 16-bit, grey,
    alpha and palette images converted)."""
    if not data:
        raise ImageReadError(f"{label}: empty file")
    _check_decodable(data, label)
    array = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(array, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"{label}: not an image, or a corrupt/truncated one")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _check_decodable(data: bytes, label: str) -> None:
    """Refuse, from the header alone, an image whose decoding would not fit in memory."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{label}: too large to decode ({exc})") from None
    except Exception:  # noqa: BLE001 - not a format Pillow knows: OpenCV decides
        return
    need = DECODE_BYTES_PER_PIXEL * width * height
    room = available_bytes(torch.device("cpu"))
    if room is not None and need > HEADROOM * room:
        raise ImageReadError(
            f"{label}: a {width}x{height} image needs about {gib(need)} to decode, "
            f"{gib(room)} available"
        )


def read_image(path: Path) -> np.ndarray:
    """Decode an image file (see ``decode_image``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, str(path))


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frame_count: int
    width: int
    height: int


class VideoReader:
    """Frames of a video file; ``ImageReadError`` at opening when OpenCV cannot decode it."""

    def __init__(self, path: Path) -> None:
        try:
            empty = os.path.getsize(path) == 0
        except OSError as exc:
            raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if empty:
            raise ImageReadError(f"{path}: empty file")
        self._capture = cv2.VideoCapture(str(path))
        ok, first = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            self._capture.release()
            raise ImageReadError(f"{path}: not a readable video")
        self._first: np.ndarray | None = first
        self.info = VideoInfo(
            fps=self._capture.get(cv2.CAP_PROP_FPS) or 25.0,
            frame_count=int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            width=first.shape[1],
            height=first.shape[0],
        )

    def frames(self, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame index, HxWx3 uint8 RGB)`` for every ``stride``-th frame."""
        index, frame = 0, self._first
        self._first = None
        while frame is not None:
            if index % stride == 0:
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = self._capture.read()
            frame = frame if ok else None
            index += 1

    def close(self) -> None:
        self._capture.release()
