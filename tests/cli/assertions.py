"""What every command's output must look like: one-line errors, no tracebacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from typer.testing import Result

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Bad values of the options that commands share (declared once in ``s2f_cli.options``), each with a
# fragment of the one usage line it gives: those of every command that runs the network, then
# those of the commands that also size its input.
COMPUTE_OPTION_ERRORS = [
    (["--device", "tpu"], "tpu"),
    (["--threads", "-1"], "'--threads'"),
    (["--threads", "100000"], "--threads 100000 is more than the"),
]
INFERENCE_OPTION_ERRORS = [
    *COMPUTE_OPTION_ERRORS,
    (["--imgsz", "-1"], "'--imgsz'"),
    (["--max-memory", "-1"], "'--max-memory'"),
]


def lines(text: str) -> list[str]:
    """Non-blank lines, colour codes removed."""
    return [line for line in ANSI.sub("", text).splitlines() if line.strip()]


def errors(result: Result) -> list[str]:
    return [line for line in lines(result.stderr) if line.startswith("error: ")]


def assert_one_error_line(result: Result, code: int, *fragments: str) -> str:
    """Exit ``code``, nothing on stdout, one ``error:`` line on stderr (usage errors found while
    parsing add one ``Try 's2f COMMAND --help'.`` line) and no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert lines(result.stdout) == []
    shown = lines(result.stderr)
    if len(shown) == 2 and re.fullmatch(r"Try '.+ --help'\.", shown[1]):
        shown = shown[:1]
    assert len(shown) == 1, shown
    assert shown[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in shown[0]
    return shown[0]


def listing(root: Path) -> list[str]:
    """Every file and folder under ``root`` (hidden temporaries included)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def assert_fails_leaving(
    folder: Path, run: Callable[[], Result], code: int, *fragments: str
) -> str:
    """``run()`` fails as ``assert_one_error_line`` requires and leaves ``folder`` as it was, hidden
    temporaries included; the error line."""
    before = listing(folder)
    line = assert_one_error_line(run(), code, *fragments)
    assert listing(folder) == before
    return line


def assert_failed_inputs(result: Result, failures: Mapping[Path, str]) -> None:
    """Exit 3 (some inputs failed) without a traceback, and one ``error: PATH: ...`` line for
    each path of ``failures``, holding the fragment it maps to."""
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    shown = errors(result)
    assert len(shown) == len(failures), shown
    for path, fragment in failures.items():
        named = [line for line in shown if line.startswith(f"error: {path}: ")]
        assert len(named) == 1 and fragment in named[0], (path, fragment, shown)


def run_python(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a child process, output captured as text. The environment is this
    one's without the settings that change what the tool prints (colours, FFmpeg's log level),
    plus ``env``."""
    base = {
        k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "OPENCV_FFMPEG_LOGLEVEL")
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_s2f(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``s2f ARGS`` as ``python -m s2f_cli`` (the entry point torchrun also uses)."""
    return run_python(["-m", "s2f_cli", *map(str, args)], cwd, env)
