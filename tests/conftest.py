from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# Detailed assertion messages for the shared assert_* helpers too.
pytest.register_assert_rewrite("tests.helpers")

from tests.download_helpers import (  # noqa: E402
    Home,
    Payloads,
    WeightsServer,
    build_payloads,
    isolated_home,
)
from tests.helpers import write_official_checkpoint  # noqa: E402


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """An official-style mmengine checkpoint (``state_dict`` + ``meta``) of ``small_config()``,
    alone in its own directory."""
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    return write_official_checkpoint(directory / "iter_160000.pth")


# The download tests (library and command): weights files to serve, a local HTTP server, and a
# HOME / cache / working directory of their own.
@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> Payloads:
    return build_payloads(tmp_path_factory.mktemp("payloads"))


@pytest.fixture
def server() -> Iterator[WeightsServer]:
    server = WeightsServer()
    yield server
    server.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    with isolated_home(tmp_path, monkeypatch) as home:
        yield home
