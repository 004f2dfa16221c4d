"""What to segment: expanding paths, folders and globs; decoding images and videos."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from spike2former.inference.sources import (
    ImageReadError,
    InputError,
    Source,
    VideoReader,
    decode_image,
    expand_sources,
    read_image,
)
from tests.helpers import random_rgb, write_image, write_video

EXIF_ORIENTATION = 0x0112


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """data/{a.jpg, b.png, clip.mp4, notes.txt, sub/c.bmp, sub/deeper/d.webp}"""
    root = tmp_path / "data"
    for name in ["a.jpg", "b.png", "sub/c.bmp", "sub/deeper/d.webp"]:
        write_image(root / name, random_rgb())
    write_video(root / "clip.mp4", frames=2)
    (root / "notes.txt").write_text("not an image\n")
    return root


def _summary(sources: list[Source]) -> list[tuple[str, str | None, str]]:
    return [(s.kind, s.path.name if s.path else None, s.stem) for s in sources]


# --- expanding the command line --------------------------------------------------------------


def test_directory(tree: Path) -> None:
    assert _summary(expand_sources([str(tree)])) == [
        ("image", "a.jpg", "a"),
        ("image", "b.png", "b"),
        ("video", "clip.mp4", "clip"),
    ]


def test_recursive_directory_keeps_relative_names(tree: Path) -> None:
    sources = expand_sources([str(tree)], recursive=True)
    assert [s.stem for s in sources] == ["a", "b", "clip", "sub/c", "sub/deeper/d"]
    assert sources[-1].path == tree / "sub" / "deeper" / "d.webp"


def test_files_keep_their_order_and_kind(tree: Path) -> None:
    sources = expand_sources([str(tree / "clip.mp4"), str(tree / "b.png"), str(tree / "a.jpg")])
    assert _summary(sources) == [
        ("video", "clip.mp4", "clip"),
        ("image", "b.png", "b"),
        ("image", "a.jpg", "a"),
    ]


def test_a_named_file_of_another_suffix_is_tried_as_an_image(tree: Path) -> None:
    assert _summary(expand_sources([str(tree / "notes.txt")])) == [("image", "notes.txt", "notes")]


def test_glob(tree: Path) -> None:
    assert [s.stem for s in expand_sources([str(tree / "*.png")])] == ["b"]
    everything = expand_sources([str(tree / "**" / "*")])
    assert sorted(s.path.name for s in everything) == [
        "a.jpg",
        "b.png",
        "c.bmp",
        "clip.mp4",
        "d.webp",
    ]


def test_repeated_inputs_are_dropped(tree: Path) -> None:
    a = tree / "a.jpg"
    spelled = tree / "sub" / ".." / "a.jpg"
    sources = expand_sources([str(a), str(spelled), str(tree), str(tree / "*.jpg")])
    assert _summary(sources) == [
        ("image", "a.jpg", "a"),
        ("image", "b.png", "b"),
        ("video", "clip.mp4", "clip"),
    ]


def test_colliding_names_get_a_number(tmp_path: Path) -> None:
    for name in ["one/x.jpg", "two/x.jpg", "two/X.png", "two/x-2.jpg"]:
        write_image(tmp_path / name, random_rgb())
    sources = expand_sources([str(tmp_path / "one"), str(tmp_path / "two")])
    stems = [s.stem for s in sources]
    assert stems == ["x", "X-2", "x-2-2", "x-3"]
    assert len({stem.lower() for stem in stems}) == len(stems)


def test_stdin_and_list_lines(tree: Path) -> None:
    lines = ["", f"  {tree / 'b.png'}  ", "", str(tree / "a.jpg"), "-"]
    sources = expand_sources(["-"], list_lines=lines)
    assert _summary(sources) == [
        ("stdin", None, "stdin"),
        ("image", "b.png", "b"),
        ("image", "a.jpg", "a"),
    ]
    assert sources[0].label == "<stdin>"


@pytest.mark.parametrize(
    ("argument", "fragment"),
    [
        ("absent.jpg", "no such file or directory"),
        ("empty", "no images or videos in this directory"),
        ("*.gif", "the pattern matches no image or video"),
    ],
)
def test_unusable_arguments(tmp_path: Path, argument: str, fragment: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match=fragment) as raised:
        expand_sources([str(tmp_path / argument)])
    assert str(tmp_path / argument) in str(raised.value)


# --- decoding images -------------------------------------------------------------------------


def _encode(rgb: np.ndarray, fmt: str, mode: str | None = None, **save: object) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(rgb) if mode is None else Image.fromarray(rgb).convert(mode)
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff", ".webp", ".jpg", ".jpeg"])
def test_image_formats(tmp_path: Path, suffix: str) -> None:
    rgb = random_rgb()
    save = {"lossless": True} if suffix == ".webp" else {}
    path = write_image(tmp_path / f"x{suffix}", rgb, **save)
    decoded = read_image(path)
    assert decoded.shape == (40, 56, 3) and decoded.dtype == np.uint8
    if suffix in (".jpg", ".jpeg"):
        assert np.abs(decoded.astype(int) - np.array(Image.open(path))).max() <= 8
    else:
        assert np.array_equal(decoded, rgb), "channels must come out in RGB order"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_other_pixel_layouts_become_rgb(tmp_path: Path, mode: str) -> None:
    rgb = random_rgb()
    path = write_image(tmp_path / "x.png", rgb, mode)
    decoded = read_image(path)
    assert decoded.shape == (40, 56, 3) and decoded.dtype == np.uint8
    with Image.open(path) as stored:
        assert stored.mode == mode
        expected = np.array(stored.convert("RGB")) if mode != "I;16" else None
    if mode == "I;16":  # 16-bit grey: the high byte, in every channel
        expected = np.repeat(rgb[..., :1], 3, axis=2)
    assert np.array_equal(decoded, expected)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_applied(fmt: str) -> None:
    rgb = random_rgb(40, 56)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    data = _encode(rgb, fmt, exif=exif.tobytes())
    decoded = decode_image(data, "rotated")
    assert decoded.shape == (56, 40, 3)
    shown = np.array(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    if fmt == "PNG":
        assert np.array_equal(decoded, np.rot90(rgb, -1))
        assert np.array_equal(decoded, shown)
    else:
        assert np.abs(decoded.astype(int) - shown).max() <= 8


def _truncated(fmt: str) -> bytes:
    data = _encode(random_rgb(), fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty file"),
        (b"hello, world\n", "not an image"),
        (_truncated("PNG"), "corrupt/truncated"),
        (_truncated("JPEG"), "corrupt/truncated"),
        (_truncated("BMP"), "corrupt/truncated"),
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpeg", "truncated-bmp"],
)
def test_undecodable_bytes(data: bytes, fragment: str) -> None:
    with pytest.raises(ImageReadError, match=fragment) as raised:
        decode_image(data, "input.jpg")
    assert str(raised.value).startswith("input.jpg: ")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="cannot read") as raised:
        read_image(tmp_path / "gone.png")
    assert str(tmp_path / "gone.png") in str(raised.value)
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path)


# --- videos ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fourcc"), [("clip.mp4", "mp4v"), ("clip.avi", "MJPG")])
def test_video_frames_with_stride(tmp_path: Path, name: str, fourcc: str) -> None:
    path = write_video(tmp_path / name, frames=7, fourcc=fourcc)
    reader = VideoReader(path)
    assert (reader.info.height, reader.info.width) == (40, 56)
    assert reader.info.fps == pytest.approx(10.0)
    assert reader.info.frame_count == 7
    frames = list(reader.frames(stride=2))
    reader.close()
    assert [index for index, _ in frames] == [0, 2, 4, 6]
    assert all(frame.shape == (40, 56, 3) and frame.dtype == np.uint8 for _, frame in frames)
    again = VideoReader(path)
    assert len(list(again.frames())) == 7
    again.close()


def test_unreadable_videos(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", frames=3).read_bytes()
    cases = {
        "empty.mp4": (b"", "empty file"),
        "text.mp4": (b"hello, world\n", "not a readable video"),
        "truncated.mp4": (good[: len(good) // 3], "not a readable video"),
    }
    for name, (data, fragment) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageReadError, match=fragment) as raised:
            VideoReader(tmp_path / name)
        assert str(raised.value).startswith(f"{tmp_path / name}: ")
    with pytest.raises(ImageReadError, match="cannot read"):
        VideoReader(tmp_path / "gone.mp4")
    assert not os.path.exists(tmp_path / "gone.mp4")
