from __future__ import annotations

from pathlib import Path

import pytest

# Detailed assertion messages for the shared assert_* helpers too.
pytest.register_assert_rewrite("tests.helpers")

from tests.helpers import write_official_checkpoint  # noqa: E402


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """An official-style mmengine checkpoint (``state_dict`` + ``meta``) of ``small_config()``,
    alone in its own directory."""
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    return write_official_checkpoint(directory / "iter_160000.pth")
