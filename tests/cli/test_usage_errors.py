"""Usage errors of every command (unknown option, bad value, missing value) are one ``error:``
line and one hint, exit status 2, like every other failure."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from s2f_cli.app import app

CASES = [
    (["segment", "x.jpg", "--threads", "-1"], "Invalid value for '--threads'"),
    (["segment", "x.jpg", "--no-such-option"], "No such option: --no-such-option"),
    (["segment", "x.jpg", "--imgsz"], "Option '--imgsz' requires an argument"),
    (["eval", "--data", "d"], "Missing option"),
    (["train", "--iters", "many"], "Invalid value for '--iters'"),
    (["convert"], "Missing argument"),
    (["firing-rates", "x.jpg", "--limit", "0"], "Invalid value for '--limit'"),
    (["download", "--timeout", "0"], "Invalid value for '--timeout'"),
    (["no-such-command"], "No such command 'no-such-command'"),
]


@pytest.mark.parametrize(("args", "fragment"), CASES)
def test_one_line_and_a_hint(args: list[str], fragment: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert lines[1:] in ([], [f"Try 's2f {args[0]} --help'."], ["Try 's2f --help'."])
    assert result.stdout == ""


def test_through_the_installed_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "s2f_cli", "segment", "--bogus"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: No such option: --bogus",
        "Try 'python -m s2f_cli segment --help'.",
    ]


def test_no_arguments_prints_the_help() -> None:
    result = CliRunner().invoke(app, [])
    assert "Usage: s2f" in result.output and "segment" in result.output
