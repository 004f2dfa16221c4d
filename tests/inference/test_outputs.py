"""Result files: label-map PNGs, overlays, videos and frame folders, all written atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from spike2former.atomic import write_atomically
from spike2former.datasets.metadata import generated_palette
from spike2former.errors import OutputError
from spike2former.inference.outputs import (
    FrameFolder,
    VideoOutput,
    colorize,
    label_png,
    overlay,
    write_bytes,
    write_image,
)
from tests.helpers import count_frames, random_rgb


def _labels(num_classes: int, dtype: type[np.unsignedinteger] = np.uint8) -> np.ndarray:
    """``[40, 56]`` labels using every class id below ``num_classes`` (capped at 40 * 56)."""
    ids = np.arange(40 * 56) % num_classes
    return np.random.default_rng(0).permutation(ids).reshape(40, 56).astype(dtype)


def _listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# --- label maps ------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 150, 256])
def test_palette_png_holds_class_indices(num_classes: int) -> None:
    labels = _labels(num_classes)
    palette = generated_palette(num_classes)
    with Image.open(io.BytesIO(label_png(labels, palette))) as image:
        assert image.format == "PNG" and image.mode == "P"
        assert image.size == (56, 40)
        assert np.array_equal(np.array(image), labels)
        colours = image.getpalette()
    assert colours is not None
    assert [tuple(colours[3 * i : 3 * i + 3]) for i in range(num_classes)] == palette


def test_more_than_256_classes_give_a_16_bit_grey_png() -> None:
    labels = _labels(300, np.uint16)
    assert labels.max() == 299
    data = label_png(labels, generated_palette(300))
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "I;16"
        assert np.array_equal(np.array(image), labels)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, labels)


# --- overlays --------------------------------------------------------------------------------


def test_colorize_and_overlay() -> None:
    labels = _labels(3)
    palette = [(255, 0, 0), (0, 255, 0), (10, 20, 30)]
    colours = colorize(labels, palette)
    assert colours.shape == (40, 56, 3) and colours.dtype == np.uint8
    assert np.array_equal(colours[labels == 2], np.tile([10, 20, 30], ((labels == 2).sum(), 1)))

    image = random_rgb()
    assert np.array_equal(overlay(image, labels, palette, opacity=0.0), image)
    assert np.array_equal(overlay(image, labels, palette, opacity=1.0), colours)
    half = overlay(image, labels, palette, opacity=0.5).astype(int)
    assert np.abs(half - (image.astype(int) + colours) / 2).max() <= 0.5


def test_legend_stays_in_the_top_left_corner() -> None:
    image = random_rgb(120, 160)
    labels = _labels(3)
    labels = cv2.resize(labels, (160, 120), interpolation=cv2.INTER_NEAREST)
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    plain = overlay(image, labels, palette)
    legend = [("wall", palette[0]), ("a rather long class name", palette[2])]
    drawn = overlay(image, labels, palette, legend=legend)
    assert drawn.shape == plain.shape
    changed = np.argwhere((drawn != plain).any(axis=2))
    assert len(changed) > 0
    assert changed[:, 0].max() < 60


# --- atomic writes ---------------------------------------------------------------------------


def test_write_image_and_bytes(tmp_path: Path) -> None:
    image = random_rgb()
    write_image(tmp_path / "sub" / "x_overlay.jpg", image)
    with Image.open(tmp_path / "sub" / "x_overlay.jpg") as stored:
        assert stored.format == "JPEG" and stored.size == (56, 40)
    write_image(tmp_path / "x.png", image)
    assert np.array_equal(np.array(Image.open(tmp_path / "x.png")), image)
    write_bytes(tmp_path / "x.json", b"{}")
    assert _listing(tmp_path) == ["sub", "sub/x_overlay.jpg", "x.json", "x.png"]
    assert oct(os.stat(tmp_path / "x.json").st_mode & 0o777) != oct(0o600)


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(OutputError, match="cannot write"):
        write_bytes(tmp_path / "file" / "x.png", b"data")
    assert _listing(tmp_path) == ["file"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_nothing(tmp_path: Path, error: type[BaseException]) -> None:
    (tmp_path / "x.png").write_bytes(b"previous")

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(b"half of a fi")
        raise error("stop")

    with pytest.raises(OutputError if error is OSError else KeyboardInterrupt):
        write_atomically(tmp_path / "x.png", write)
    assert _listing(tmp_path) == ["x.png"]
    assert (tmp_path / "x.png").read_bytes() == b"previous"


# --- videos and frame folders ----------------------------------------------------------------


def test_video_output(tmp_path: Path) -> None:
    video = VideoOutput(tmp_path / "clip_overlay.mp4", fps=5.0, size=(56, 40))
    for seed in range(5):
        video.write(random_rgb(seed=seed))
    assert not (tmp_path / "clip_overlay.mp4").exists()
    assert len(_listing(tmp_path)) == 1 and _listing(tmp_path)[0].startswith(".clip_overlay.")
    video.close()
    assert _listing(tmp_path) == ["clip_overlay.mp4"]
    assert video.frames == 5
    assert count_frames(tmp_path / "clip_overlay.mp4") == 5
    capture = cv2.VideoCapture(str(tmp_path / "clip_overlay.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 56
    assert capture.get(cv2.CAP_PROP_FRAME_HEIGHT) == 40
    capture.release()


def test_discarded_video_leaves_nothing(tmp_path: Path) -> None:
    video = VideoOutput(tmp_path / "clip_overlay.mp4", fps=5.0, size=(56, 40))
    video.write(random_rgb())
    video.discard()
    assert _listing(tmp_path) == []


def test_frame_folder(tmp_path: Path) -> None:
    frames = FrameFolder(tmp_path / "clip")
    frames.write("000000.png", b"a")
    frames.write("000002.png", b"b")
    assert not (tmp_path / "clip").exists()
    frames.close()
    assert _listing(tmp_path) == ["clip", "clip/000000.png", "clip/000002.png"]

    again = FrameFolder(tmp_path / "clip")  # an earlier run's folder is replaced as a whole
    again.write("000000.png", b"c")
    again.close()
    assert _listing(tmp_path) == ["clip", "clip/000000.png"]
    assert (tmp_path / "clip" / "000000.png").read_bytes() == b"c"

    dropped = FrameFolder(tmp_path / "clip")
    dropped.write("000000.png", b"d")
    dropped.discard()
    assert _listing(tmp_path) == ["clip", "clip/000000.png"]
    assert (tmp_path / "clip" / "000000.png").read_bytes() == b"c"


@pytest.mark.parametrize("content", ["holiday.jpg", "000000.png/", "file"])
def test_frame_folder_never_replaces_other_files(tmp_path: Path, content: str) -> None:
    target = tmp_path / "clip"
    if content == "file":
        target.write_bytes(b"precious")
    elif content.endswith("/"):
        (target / content).mkdir(parents=True)
    else:
        target.mkdir()
        (target / content).write_bytes(b"precious")
    before = _listing(tmp_path)
    with pytest.raises(OutputError, match="not replacing it"):
        FrameFolder(target)
    assert _listing(tmp_path) == before


def test_background_keeps_the_photo_and_its_swatch_shows() -> None:
    image = random_rgb(60, 80)
    labels = np.zeros((60, 80), dtype=np.uint8)
    labels[30:, 40:] = 1
    palette = [(0, 0, 0), (255, 0, 0)]
    out = overlay(image, labels, palette, opacity=0.5, unblended=[0])
    assert np.array_equal(out[labels == 0], image[labels == 0])
    assert not np.array_equal(out[labels == 1], image[labels == 1])
    dimmed = overlay(image, labels, palette, opacity=0.5)
    assert dimmed[labels == 0].mean() < 0.6 * image[labels == 0].mean()
    flat = np.full((200, 200, 3), 0, dtype=np.uint8)
    with_legend = overlay(
        flat, np.zeros((200, 200), np.uint8), palette, 0.5, [("background", (0, 0, 0))]
    )
    assert with_legend[:40, :40].max() >= 150  # the black swatch has a light border
