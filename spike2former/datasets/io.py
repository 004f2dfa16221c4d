"""Reading images (OpenCV) and label maps (Pillow) from disk.

Images come back as RGB ``uint8 [H, W, 3]`` (OpenCV reads BGR). Label maps come back as the
stored integers ``[H, W]``. They are read with Pillow because OpenCV expands palette ("indexed
colour") PNGs, such as Pascal VOC's ``SegmentationClass``, to colours; Pillow gives the indices,
which are the labels.

Both are refused from their header alone when they claim more pixels than Pillow's
decompression-bomb limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``): a small damaged file that claims
a huge size would otherwise take gigabytes to decode, in whichever data-loading process meets it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import DatasetError


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{what} not found: {path}") from None
    except OSError as error:
        raise DatasetError(f"cannot read {what} {path}: {error.strerror or error}") from None


def _decode(data: bytes, flags: int, path: Path, what: str) -> np.ndarray:
    # imdecode instead of imread: works for any path encoding and never prints warnings
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if data else None
    if decoded is None:
        raise DatasetError(f"cannot read {what} {path}: not an image OpenCV can decode, or damaged")
    return decoded


def _header_size(source: io.BytesIO | Path, path: Path, what: str) -> tuple[int, int] | None:
    """(height, width) from the header, nothing decoded; None where Pillow does not know the
    format (OpenCV may). Raises ``DatasetError`` for a size beyond Pillow's limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as header:
                width, height = header.size
    except Image.DecompressionBombError as error:
        raise DatasetError(f"{what} {path} is too large to decode ({error})") from None
    except FileNotFoundError:
        raise DatasetError(f"{what} not found: {path}") from None
    except Exception:  # noqa: BLE001 - not a format Pillow reads: the decoder decides
        return None
    return height, width


def image_size(path: str | Path, what: str = "image") -> tuple[int, int]:
    """(height, width) of an image file (``what``: "image" or "label map"), from its header
    where Pillow can read it (the whole file is decoded otherwise)."""
    path = Path(path)
    size = _header_size(path, path, what)
    if size is None:
        size = (read_image(path) if what == "image" else read_label(path)).shape[:2]
    return size


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB ``uint8 [H, W, 3]`` (grey images are repeated over channels)."""
    path = Path(path)
    data = _read_bytes(path, "image")
    _header_size(io.BytesIO(data), path, "image")
    bgr = _decode(data, cv2.IMREAD_COLOR, path, "image")
    if bgr.dtype != np.uint8:
        raise DatasetError(f"image {path} has {bgr.dtype} pixels; 8-bit images are expected")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    """A label map as stored: ``[H, W]`` integers (palette PNGs give their indices)."""
    path = Path(path)
    data = _read_bytes(path, "label map")
    _header_size(io.BytesIO(data), path, "label map")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                mode, label = image.mode, np.array(image)
    except Image.UnidentifiedImageError:  # its message names the in-memory buffer, not the file
        raise DatasetError(
            f"cannot read label map {path}: not an image format Pillow can decode, or damaged"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises on damaged files
        raise DatasetError(f"cannot read label map {path}: {error}") from None
    if label.ndim != 2:
        raise DatasetError(
            f"label map {path} is a {mode} colour image; expected a single-channel PNG of class "
            "ids (or an indexed-colour PNG)"
        )
    if label.dtype == np.int32 and label.size and (label.min() < 0 or label.max() > 65535):
        raise DatasetError(f"label map {path} has values outside 0..65535")
    if label.dtype not in (np.uint8, np.uint16, np.int32):
        raise DatasetError(f"label map {path} has {label.dtype} values; expected 8 or 16 bits")
    return label.astype(np.uint16) if label.dtype == np.int32 else label
