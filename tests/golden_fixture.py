"""The golden fixtures (outputs of the official implementation), kept in ``../shared`` next to
the repository, and the one way a test says it reads them: ``@needs_fixture``.

Without the folder those tests are skipped and ``conftest.py`` says so in one line at the end of
the run; under ``CI=true`` it reports them as failures instead, so that no CI job passes without
the fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE = SHARED / "fixtures" / "official_tiny_v3"

# Registered in pyproject.toml; ``conftest.pytest_runtest_setup`` calls ``require`` for it.
needs_fixture = pytest.mark.needs_fixture


def missing_reason(folder: Path = FIXTURE) -> str:
    """Why a test that needs ``folder`` was skipped (what the summary and CI look for)."""
    return f"fixture not found at {folder}"


def require(folder: Path = FIXTURE) -> None:
    """Skip the running test when ``folder`` is missing."""
    if not folder.is_dir():
        pytest.skip(missing_reason(folder))


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether missing fixtures are failures: ``$CI`` is ``true``, as CI services set it."""
    return environ.get("CI", "").lower() == "true"


def skipped_for_missing(report: pytest.TestReport, folder: Path = FIXTURE) -> bool:
    """Whether ``report`` is a test skipped because ``folder`` is missing (by this module, or by
    a ``skipif`` that gives the same reason)."""
    return report.skipped and missing_reason(folder) in str(report.longrepr)


def count_skipped(reports: Iterable[pytest.TestReport], folder: Path = FIXTURE) -> int:
    """How many of ``reports`` are tests skipped because ``folder`` is missing."""
    return sum(skipped_for_missing(report, folder) for report in reports)
