"""The official golden fixture as a float64 s2f model, shared by the firing tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spike2former import Spike2Former, load_model
from spike2former.convert import convert_checkpoint
from tests.golden_fixture import FIXTURE


@pytest.fixture(scope="session")
def fixture_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    destination = tmp_path_factory.mktemp("fixture") / "official_tiny_v3.safetensors"
    convert_checkpoint(FIXTURE / "weights.safetensors", destination)
    return destination


@pytest.fixture(scope="session")
def fixture_model(fixture_model_file: Path) -> Spike2Former:
    """The fixture network in float64, evaluation mode (do not modify it in a test)."""
    return load_model(fixture_model_file).double().eval()


@pytest.fixture(scope="session")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "io.safetensors"))


@pytest.fixture(scope="session")
def official_firing() -> dict[str, dict]:
    return json.loads((FIXTURE / "meta.json").read_text())["firing"]
