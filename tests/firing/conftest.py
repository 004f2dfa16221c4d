"""The official golden fixture as a float64 s2f model, shared by the firing tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spike2former import Spike2Former, load_model
from tests.golden_fixture import FIXTURE


@pytest.fixture(scope="session")
def fixture_model(fixture_model_file: Path) -> Spike2Former:
    """The fixture network in float64, evaluation mode (do not modify it in a test)."""
    return load_model(fixture_model_file).double().eval()


@pytest.fixture(scope="session")
def official_firing() -> dict[str, dict]:
    return json.loads((FIXTURE / "meta.json").read_text())["firing"]
