"""Tests that read the golden fixtures: skipped loudly on a clone without ``../shared``, failed
under ``CI=true``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden_fixture import FIXTURE, count_skipped, in_ci, missing_reason, require

TESTS = Path(__file__).resolve().parent


def test_require_skips_only_without_the_folder(tmp_path: Path) -> None:
    require(tmp_path)
    missing = tmp_path / "shared" / "fixtures" / "official_tiny_v3"
    with pytest.raises(pytest.skip.Exception, match=f"^{missing_reason(missing)}$"):
        require(missing)


def test_ci_is_told_by_the_ci_variable() -> None:
    assert in_ci({"CI": "true"}) and in_ci({"CI": "True"})
    assert not in_ci({}) and not in_ci({"CI": "false"}) and not in_ci({"CI": "1"})


def test_the_summary_counts_only_skips_for_the_missing_folder() -> None:
    def report(outcome: str, message: str) -> pytest.TestReport:
        longrepr = ("t.py", 1, f"Skipped: {message}") if outcome == "skipped" else None
        return pytest.TestReport("t.py::x", ("t.py", 1, "x"), {}, outcome, longrepr, "setup")

    reports = [
        report("skipped", missing_reason()),
        report("skipped", missing_reason()),
        report("skipped", "torch built without gloo"),
        report("passed", ""),
    ]
    assert count_skipped(reports) == 2
    assert count_skipped(reports, FIXTURE.parent / "other") == 0


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A checkout with the test helpers and two fixture tests (one marked, one with a ``skipif``
    of the same reason), and no ``../shared`` beside it."""
    root = tmp_path / "clone"
    (root / "tests").mkdir(parents=True)
    for name in ("__init__.py", "conftest.py", "golden_fixture.py", "helpers.py"):
        shutil.copy(TESTS / name, root / "tests" / name)
    shutil.copy(TESTS / "download_helpers.py", root / "tests" / "download_helpers.py")
    shutil.copy(TESTS.parent / "pyproject.toml", root / "pyproject.toml")
    (root / "tests" / "test_uses_fixture.py").write_text(
        "import pytest\n"
        "from tests.golden_fixture import FIXTURE, needs_fixture\n\n\n"
        "@needs_fixture\ndef test_marked():\n    assert FIXTURE.is_dir()\n\n\n"
        "@pytest.mark.skipif(not FIXTURE.is_dir(), reason=f'fixture not found at {FIXTURE}')\n"
        "def test_own_skipif():\n    assert FIXTURE.is_dir()\n\n\n"
        "def test_other():\n    pass\n"
    )
    return root


def run_pytest(root: Path, ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": ci}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_clone_without_fixtures_says_so_once(clone: Path) -> None:
    result = run_pytest(clone, ci="")
    assert result.returncode == 0, result.stdout + result.stderr
    folder = clone.parent / "shared" / "fixtures" / "official_tiny_v3"
    lines = [line for line in result.stdout.splitlines() if "golden-fixture" in line]
    assert lines == [
        f"2 golden-fixture tests skipped: no folder {folder} (put the shared fixtures there; "
        "CI=true turns these skips into failures)"
    ]
    assert "1 passed, 2 skipped" in result.stdout


def test_under_ci_a_missing_fixture_folder_fails(clone: Path) -> None:
    result = run_pytest(clone, ci="true")
    assert result.returncode == 1  # both fixture tests error in their setup
    assert "1 passed, 2 errors" in result.stdout
    assert "CI=true needs the golden fixtures" in result.stdout
    assert "golden-fixture tests skipped" not in result.stdout
