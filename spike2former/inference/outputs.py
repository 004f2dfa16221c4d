"""Result files: palette label maps, colour overlays, videos; every file written atomically.

A file appears under its final name only once complete (temporary name in the same folder, then
``os.replace``), so an interrupted run never leaves a truncated output.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..atomic import temporary_name, write_atomically
from ..errors import OutputError

RGB = tuple[int, int, int]
FRAME_NAME = re.compile(r"\d{6}\.png")


def label_png(labels: np.ndarray, palette: Sequence[RGB]) -> bytes:
    """Encode a label map as PNG: pixel value = class index.

    Up to 256 classes: an indexed (palette) PNG whose colours are the class colours, so viewers
    show colours while tools read indices. More classes: a 16-bit greyscale PNG.
    """
    if labels.dtype == np.uint8:
        image = Image.fromarray(labels, mode="P")
        flat = [channel for colour in palette[:256] for channel in colour]
        image.putpalette(flat + [0] * (768 - len(flat)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue()
    ok, encoded = cv2.imencode(".png", labels.astype(np.uint16))
    if not ok:
        raise OSError("PNG encoding failed")
    return encoded.tobytes()


def colorize(labels: np.ndarray, palette: Sequence[RGB]) -> np.ndarray:
    """``[H, W]`` labels -> ``HxWx3`` uint8 RGB colours."""
    table = np.array(palette, dtype=np.uint8)
    return table[labels]


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    palette: Sequence[RGB],
    opacity: float = 0.5,
    legend: Sequence[tuple[str, RGB]] = (),
    unblended: Sequence[int] = (),
) -> np.ndarray:
    """Blend class colours over an RGB image; optionally draw a legend box (top left).

    Pixels of the ``unblended`` classes (background) keep the photo as it is, instead of being
    darkened by a black class colour.
    """
    colours = colorize(labels, palette).astype(np.float32)
    blended = image.astype(np.float32) * (1 - opacity) + colours * opacity
    out = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    if len(unblended):
        keep = np.isin(labels, np.asarray(unblended, dtype=labels.dtype))
        out[keep] = image[keep]
    if legend:
        _draw_legend(out, legend)
    return out


def _draw_legend(image: np.ndarray, entries: Sequence[tuple[str, RGB]]) -> None:
    """Swatch + name per entry, on a dark translucent box, scaled to the image height; each
    swatch has a light border, so that a black (background) swatch shows too."""
    scale = max(0.35, min(1.0, image.shape[0] / 900))
    line = int(22 * scale) + 6
    font = cv2.FONT_HERSHEY_SIMPLEX
    widths = [cv2.getTextSize(name, font, scale, 1)[0][0] for name, _ in entries]
    box_w = min(image.shape[1], max(widths) + line + 16)
    box_h = min(image.shape[0], line * len(entries) + 8)
    region = image[:box_h, :box_w]
    region[:] = (region.astype(np.float32) * 0.35).astype(np.uint8)
    for i, (name, colour) in enumerate(entries):
        y = 4 + i * line
        if y + line > box_h:
            break
        corners = ((6, y + 2), (6 + line - 6, y + line - 4))
        cv2.rectangle(image, *corners, colour, thickness=-1)
        cv2.rectangle(image, *corners, (200, 200, 200), thickness=1)
        cv2.putText(
            image, name, (line + 6, y + line - 8), font, scale, (255, 255, 255), 1, cv2.LINE_AA
        )


def write_bytes(path: Path, data: bytes) -> None:
    write_atomically(path, lambda tmp: Path(tmp).write_bytes(data))


def encode_image(suffix: str, rgb: np.ndarray, jpeg_quality: int = 95) -> bytes:
    """An RGB image encoded as ``suffix`` says (JPEG at quality ``jpeg_quality``)."""
    is_jpeg = suffix.lower() in (".jpg", ".jpeg")
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if is_jpeg else []
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"cannot encode {suffix} image")
    return encoded.tobytes()


def write_image(path: Path, rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Encode by the path's suffix and write atomically."""
    write_bytes(path, encode_image(path.suffix, rgb, jpeg_quality))


class VideoOutput:
    """An MP4 written under a temporary name (same suffix, so OpenCV picks the container) and
    renamed by ``close()``; ``discard()`` removes it."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(**temporary_name(path, keep_suffix=True))
        os.close(fd)
        self._tmp = Path(tmp)
        width, height = size
        self._writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self._writer.isOpened():
            self.discard()
            raise OSError(f"{path}: OpenCV cannot write MP4 video here")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self._writer.release()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        self._writer.release()
        self._tmp.unlink(missing_ok=True)


class FrameFolder:
    """Per-frame label maps collected in a hidden folder, moved into place by ``close()``.

    An existing folder at ``path`` is replaced only if it holds nothing but frame label maps
    (an earlier run's); anything else there raises ``OutputError`` before any frame is written.
    """

    def __init__(self, path: Path) -> None:
        if path.exists() and not (
            path.is_dir()
            and all(p.is_file() and FRAME_NAME.fullmatch(p.name) for p in path.iterdir())
        ):
            raise OutputError(
                f"{path}: exists and holds other files than frame label maps; not replacing it"
            )
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(**temporary_name(path)))

    def write(self, name: str, data: bytes) -> None:
        (self._tmp / name).write_bytes(data)

    def close(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
