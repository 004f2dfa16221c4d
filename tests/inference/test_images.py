"""``each_image``: a job's inputs as images in turn, and a line for each one that cannot be read."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from spike2former.inference.images import each_image
from spike2former.inference.sources import Source
from tests.helpers import random_rgb, write_image, write_video


def test_images_frames_stdin_and_unreadable_inputs(tmp_path: Path) -> None:
    still = write_image(tmp_path / "a.png", random_rgb())
    clip = write_video(tmp_path / "clip.mp4", frames=2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    piped = io.BytesIO()
    Image.fromarray(random_rgb(seed=1)).save(piped, format="PNG")
    items = [
        (0, Source("image", still, "a")),
        (1, Source("video", clip, "clip")),
        (2, Source("image", broken, "broken")),
        (3, Source("stdin", None, "stdin")),
    ]
    seen = list(each_image(items, piped.getvalue))
    assert [(position, label) for position, label, _, _ in seen] == [
        (0, str(still)),
        (1, f"{clip}#0"),
        (1, f"{clip}#1"),
        (2, str(broken)),
        (3, "<stdin>"),
    ]
    np.testing.assert_array_equal(seen[0][2], random_rgb())
    assert seen[1][2] is not None and seen[1][2].shape == (40, 56, 3)
    assert seen[3][2] is None and seen[3][3] is not None and str(broken) in seen[3][3]
    np.testing.assert_array_equal(seen[4][2], random_rgb(seed=1))
    assert all(error is None for _, _, image, error in seen if image is not None)


def test_a_video_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    [(position, label, image, error)] = each_image([(5, Source("video", empty, "empty"))], bytes)
    assert (position, label, image) == (5, str(empty), None)
    assert error == f"{empty}: empty file"
