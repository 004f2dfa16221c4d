"""Class names and palettes of the known datasets, and the generated palette for the others."""

from __future__ import annotations

import numpy as np
import pytest

from spike2former.datasets.metadata import (
    DATASET_CLASSES,
    DATASET_PALETTES,
    dataset_for_classes,
    generated_palette,
    palette_for,
)


def test_known_datasets_have_one_rgb_colour_per_class() -> None:
    sizes = {name: len(classes) for name, classes in DATASET_CLASSES.items()}
    assert sizes == {"ade20k": 150, "cityscapes": 19, "voc": 21, "cocostuff": 171}
    for name, palette in DATASET_PALETTES.items():
        assert len(palette) == sizes[name]
        assert all(len(rgb) == 3 and all(0 <= c <= 255 for c in rgb) for rgb in palette)


def test_spot_checks_against_mmseg() -> None:
    assert DATASET_CLASSES["ade20k"][:3] == ("wall", "building", "sky")
    assert DATASET_CLASSES["ade20k"][7] == "bed "  # mmseg's spelling, trailing space included
    assert DATASET_PALETTES["ade20k"][-1] == (92, 0, 255)
    assert DATASET_PALETTES["cityscapes"][0] == (128, 64, 128)  # road
    assert DATASET_CLASSES["cityscapes"][-1] == "bicycle"
    assert DATASET_PALETTES["voc"][1] == (128, 0, 0) and DATASET_CLASSES["voc"][0] == "background"
    assert DATASET_CLASSES["cocostuff"][-1] == "wood"
    assert DATASET_PALETTES["cocostuff"][-1] == (64, 64, 0)


def test_generated_palette_is_stable_distinct_and_ignores_global_rng() -> None:
    np.random.seed(1)
    first = generated_palette(300)
    np.random.seed(2)
    np.random.random(10)
    assert generated_palette(300) == first
    assert generated_palette(12) == first[:12]  # a longer palette extends a shorter one
    assert len(set(first[:150])) == 150
    colours = np.array(first[:40], dtype=float)
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert distances[~np.eye(40, dtype=bool)].min() > 10
    assert generated_palette(0) == []
    with pytest.raises(ValueError, match="non-negative"):
        generated_palette(-1)


def test_palette_for_recognises_known_class_lists() -> None:
    names = [name.upper() + " " for name in DATASET_CLASSES["cityscapes"]]
    assert dataset_for_classes(names) == "cityscapes"
    assert palette_for(names, 19) == list(DATASET_PALETTES["cityscapes"])
    assert palette_for(list(DATASET_CLASSES["ade20k"]), 150)[0] == (120, 120, 120)
    assert palette_for(None, 150) == generated_palette(150)
    assert palette_for(["cat", "dog"], 2) == generated_palette(2)
    with pytest.raises(ValueError, match="3 class names were given for 2 classes"):
        palette_for(["a", "b", "c"], 2)


def test_a_known_class_list_followed_by_placeholders_keeps_its_colours() -> None:
    names = [*DATASET_CLASSES["voc"], *(f"unused_{i}" for i in range(21, 150))]
    palette = palette_for(names, 150)
    assert palette[:21] == list(DATASET_PALETTES["voc"])
    assert palette[21:] == generated_palette(150)[21:]
