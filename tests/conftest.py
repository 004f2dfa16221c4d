from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spike2former.convert import convert_checkpoint

# Detailed assertion messages for the shared assert_* helpers too.
pytest.register_assert_rewrite("tests.helpers")

from tests.download_helpers import (  # noqa: E402
    Home,
    Payloads,
    WeightsServer,
    build_payloads,
    isolated_home,
)
from tests.golden_fixture import (  # noqa: E402
    FIXTURE,
    count_skipped,
    in_ci,
    missing_reason,
    require,
    skipped_for_missing,
)
from tests.helpers import write_official_checkpoint  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``needs_fixture`` are skipped before their fixtures are built when the
    golden fixtures are missing."""
    if item.get_closest_marker("needs_fixture") is not None:
        require()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """Under ``CI=true`` a test skipped for the missing golden fixtures is a failure."""
    report = yield
    if in_ci() and skipped_for_missing(report):
        report.outcome = "failed"
        report.longrepr = f"{missing_reason()}; CI=true needs the golden fixtures"
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line, once per run, for the tests the missing golden fixtures skipped."""
    count = count_skipped(terminalreporter.stats.get("skipped", []))
    if count:
        terminalreporter.write_line(
            f"{count} golden-fixture test{'s' * (count != 1)} skipped: no folder {FIXTURE} "
            "(put the shared fixtures there; CI=true turns these skips into failures)",
            yellow=True,
            bold=True,
        )


# The golden fixture, read once per run by every test module that compares with it.
@pytest.fixture(scope="session")
def golden() -> dict[str, torch.Tensor]:
    """The official implementation's inputs and outputs (``io.safetensors``); do not modify."""
    return load_file(str(FIXTURE / "io.safetensors"))


@pytest.fixture(scope="session")
def fixture_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's official checkpoint through ``convert_checkpoint``: an s2f model file."""
    destination = tmp_path_factory.mktemp("fixture") / "official_tiny_v3.safetensors"
    convert_checkpoint(FIXTURE / "weights.safetensors", destination)
    return destination


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


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread in this process, as the training subprocesses (``--threads 1``): the
    same reductions in the same order, so in-process references match them exactly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
