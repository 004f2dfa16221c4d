"""Memory guards: the measured peak per pixel, the budget, and refusals before allocation."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from spike2former.inference.memory import (
    MemoryBudget,
    MemoryLimitError,
    Need,
    available_bytes,
    network_peak_per_pixel,
)
from spike2former.inference.predictor import Predictor
from spike2former.inference.sources import ImageReadError, decode_image
from tests.helpers import make_model, random_rgb, small_config

MIB = 2**20


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(make_model(small_config()), device="cpu", imgsz=0)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width x height`` (its data is not that big)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


def test_peak_per_pixel_covers_the_scores_and_is_stable(predictor: Predictor) -> None:
    """At least the class scores (K floats a pixel) are alive at once; the probe is repeatable."""
    first = network_peak_per_pixel(predictor._eager_scores, torch.float32, torch.device("cpu"))
    again = network_peak_per_pixel(predictor._eager_scores, torch.float32, torch.device("cpu"))
    assert first == again
    assert first >= 4 * predictor.num_classes
    fp64 = Predictor(make_model(small_config()), device="cpu", precision="fp64")
    double = network_peak_per_pixel(fp64._eager_scores, torch.float64, torch.device("cpu"))
    assert double == pytest.approx(2 * first, rel=0.05)


def test_the_machine_reports_its_free_memory() -> None:
    free = available_bytes(torch.device("cpu"))
    assert free is None or 0 < free < 2**50


def test_budget_takes_the_lesser_of_free_memory_and_the_limit() -> None:
    budget = MemoryBudget(host=100.0, device=None, device_type="cpu", user_limit=100.0)
    assert budget.allows(Need(100.0, 0.0)) and not budget.allows(Need(101.0, 0.0))
    assert budget.capped_by_user(Need(101.0, 0.0))
    assert "allowed by max_memory" in budget.shortfall(Need(2 * 2**30, 0.0))
    gpu = MemoryBudget(host=1e12, device=10.0, device_type="cuda", user_limit=None)
    assert not gpu.allows(Need(1.0, 11.0))
    assert gpu.shortfall(Need(1.0, 11.0)).endswith("free")
    now = MemoryBudget.now(torch.device("cpu"), 5 * MIB)
    assert now.host is not None and now.host <= 5 * MIB


def test_predictor_refuses_before_allocating(predictor: Predictor) -> None:
    limited = Predictor(make_model(small_config()), device="cpu", imgsz=0, max_memory=8 * MIB)
    small = random_rgb(40, 56)
    assert limited.predict([small])[0].labels.shape == (40, 56)
    with pytest.raises(MemoryLimitError, match=r"a 400x560 image at its native size .* max_memory"):
        limited.predict([random_rgb(400, 560)])
    with pytest.raises(MemoryLimitError, match=r"3 images of 100x140 .* or batch size"):
        limited.check_fits(100, 140, count=3)
    limited.check_fits(100, 140, count=1)


def test_a_header_too_large_to_decode_is_refused_from_the_header() -> None:
    with pytest.raises(ImageReadError, match="too large to decode"):
        decode_image(png_header(60_000, 60_000), "bomb.png")


def test_address_space_limit_gives_the_one_line_refusal(tmp_path: Path) -> None:
    """Under ``ulimit -v`` (4 GiB) a native-size photo is refused in one line, not killed."""
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.zeros((3000, 4000, 3), dtype=np.uint8))
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30));"
        "from s2f_cli.app import main; main()"
    )
    args = ["segment", "photo.jpg", "--imgsz", "0", "--max-memory", "0", "-o", "out"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "needs about" in errors[0] and "free" in errors[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "photo.png").exists()
