"""The example scenes shipped inside the package: where they are, and that they are the
repository's ``examples/`` byte for byte."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from spike2former.assets import example_images

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_bundled_scenes_are_the_examples() -> None:
    images = example_images()
    assert [p.name for p in images] == [f"scene_{i}.jpg" for i in range(1, 5)]
    examples = sorted(EXAMPLES.glob("scene_*.jpg"))
    assert [p.name for p in examples] == [p.name for p in images]
    for bundled, example in zip(images, examples, strict=True):
        assert bundled.read_bytes() == example.read_bytes(), bundled.name
        with Image.open(bundled) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (256, 256))
