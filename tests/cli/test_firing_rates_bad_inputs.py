"""``s2f firing-rates`` given hostile input: every bad argument, model, output file and launcher
variable ends in one ``error:`` line (a hint line at most), exit 2 for usage errors and 1 for
failures, no traceback and nothing left behind; an input that cannot be measured (unreadable, or
too large for the memory) is one line of its own and exit 3, the others measured.

The sizes that would take tens of gigabytes, and full disks, run in a child process under a
resource limit; the rest go through Typer's runner.
"""

from __future__ import annotations

import json
import os
import resource
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from tests.cli.assertions import (
    INFERENCE_OPTION_ERRORS,
    assert_fails_leaving,
    errors,
    lines,
    listing,
)
from tests.cli.test_model_files_bad_inputs import run_limited
from tests.cli.test_train_bad_inputs import huge_png_header
from tests.helpers import random_rgb, write_image
from tests.training.helpers import write_small_model
from tests.training.test_distributed import BAD_LAUNCHES, launched

ADDRESS_SPACE = 4 * 2**30  # ``ulimit -v`` of the memory cases
NATIVE = ("--imgsz", "0")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_model(tmp_path_factory.mktemp("firing_inputs") / "small.safetensors")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    write_image(tmp_path / "in" / "a.png", random_rgb(seed=1))
    return tmp_path / "in"


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8000x6000 photo (flat, so that it is small on disk)."""
    path = tmp_path_factory.mktemp("huge") / "big.png"
    assert cv2.imwrite(str(path), np.full((6000, 8000, 3), 90, np.uint8))
    return path


def firing_rates(
    model: Path, *args: str | Path, env: dict[str, str | None] | None = None
) -> Result:
    arguments = ["firing-rates", "-m", str(model), "--threads", "1", *map(str, args)]
    return CliRunner(env=env).invoke(app, arguments)


def check(
    model: Path,
    tmp_path: Path,
    code: int,
    fragment: str,
    *args: str | Path,
    env: dict[str, str | None] | None = None,
) -> str:
    """``s2f firing-rates ARGS`` (in ``env``) fails with one line and leaves ``tmp_path`` as it
    was."""
    return assert_fails_leaving(
        tmp_path, partial(firing_rates, model, *args, env=env), code, fragment
    )


# -- arguments: usage errors, exit 2 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--limit", "0"], "'--limit'"),
        (["--precision", "fp8"], "'fp8'"),
        (["--stages", "some"], "'some'"),
        (["--json", "--csv"], "--json and --csv"),
        (["--plot", "rates.jpg"], "the plot is a PNG"),
        *INFERENCE_OPTION_ERRORS,
    ],
)
def test_bad_arguments(
    model: Path, inputs: Path, tmp_path: Path, extra: list[str], fragment: str
) -> None:
    check(model, tmp_path, 2, fragment, inputs, *extra, "-o", tmp_path / "r.json")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        (None, "nothing to measure"),
        ("absent.png", "no such file"),
        ("empty", "no images or videos in this directory"),
        ("file/a.png", "no such file"),
    ],
)
def test_sources_that_are_not_there(
    model: Path, tmp_path: Path, source: str | None, fragment: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("")
    sources = [] if source is None else [tmp_path / source]
    check(model, tmp_path, 2, fragment, *sources, "-o", tmp_path / "r.json")


@pytest.mark.parametrize(
    ("name", "code", "fragment"),
    [
        ("missing.safetensors", 2, "no such model file"),
        ("folder.safetensors", 2, "is a folder"),
        ("text.safetensors", 1, "not a readable"),
    ],
)
def test_bad_model_files(inputs: Path, tmp_path: Path, name: str, code: int, fragment: str) -> None:
    (tmp_path / "folder.safetensors").mkdir()
    (tmp_path / "text.safetensors").write_text("weights\n")
    check(tmp_path / name, tmp_path, code, fragment, inputs, "-o", tmp_path / "r.json")


# -- inputs that cannot be measured: one line each, exit 3 ----------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty file"),
        (b"hello\n", "not an image"),
        (huge_png_header(100_000, 100_000), "too large to decode"),
    ],
)
def test_an_input_that_cannot_be_read(
    model: Path, tmp_path: Path, content: bytes, fragment: str
) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    result = firing_rates(model, bad, "-o", tmp_path / "r.json", "-q")
    assert result.exit_code == 3 and "Traceback" not in result.output
    assert [line for line in lines(result.stderr)] == errors(result)
    [line] = errors(result)
    assert line.startswith(f"error: {bad}: ") and fragment in line
    assert listing(tmp_path) == ["bad.png"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_input(model: Path, inputs: Path, tmp_path: Path) -> None:
    (inputs / "a.png").chmod(0)
    try:
        result = firing_rates(model, inputs / "a.png", "-q")
        assert result.exit_code == 3 and errors(result) == [
            f"error: {inputs / 'a.png'}: cannot read (Permission denied)"
        ]
    finally:
        (inputs / "a.png").chmod(0o644)


# -- memory: refused from the sizes, under a 4 GB address space ---------------------------------


def test_an_image_too_large_at_its_own_size(model: Path, huge: Path, tmp_path: Path) -> None:
    """The image is refused from its size, in a line that names the option to change; the run
    goes on with the other inputs."""
    small = write_image(tmp_path / "small.png", random_rgb(seed=2))
    args = ["firing-rates", "-m", model, huge, small, *NATIVE, "--json", "-o", tmp_path / "r.json"]
    code, shown = run_limited(ADDRESS_SPACE, resource.RLIMIT_AS, *args, "-q", home=tmp_path)
    assert code == 3 and len(shown) == 1, shown
    assert shown[0].startswith(f"error: {huge}: a 6000x8000 image at --imgsz 0 (6000x8000 into")
    assert shown[0].endswith("; give a smaller --imgsz")
    assert (tmp_path / "r.json").exists()  # the small image's report


def test_an_image_too_large_is_measured_downscaled(model: Path, huge: Path) -> None:
    """At the model's test size the same photo is resized first, and measured."""
    result = firing_rates(model, huge, "--json", "-q")
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)["images"]
    assert record["network_size"] == [512, 683]


def test_an_imgsz_too_large_for_any_image(model: Path, inputs: Path, tmp_path: Path) -> None:
    args = ["firing-rates", "-m", model, inputs, "--imgsz", "100000", "-o", tmp_path / "r.json"]
    code, shown = run_limited(ADDRESS_SPACE, resource.RLIMIT_AS, *args, home=tmp_path)
    assert code == 2 and len(shown) == 1, shown
    assert shown[0].startswith("error: --imgsz 100000 does not fit: ")
    assert "needs about" in shown[0] and shown[0].endswith("give a smaller --imgsz")
    assert not (tmp_path / "r.json").exists()


def test_max_memory_is_named_when_it_is_the_limit(
    model: Path, inputs: Path, tmp_path: Path
) -> None:
    line = check(
        model,
        tmp_path,
        2,
        "allowed by max_memory",
        inputs,
        "--imgsz",
        "3000",
        "--max-memory",
        "0.5",
    )
    assert line.endswith("give a smaller --imgsz, or raise --max-memory")


# -- output files: refused before anything is measured ------------------------------------------


@pytest.mark.parametrize("flag", ["-o", "--plot"])
def test_an_existing_file_needs_force(model: Path, inputs: Path, tmp_path: Path, flag: str) -> None:
    target = tmp_path / "rates.png"
    target.write_text("precious")
    check(model, tmp_path, 2, "exists; pass --force to replace it", inputs, flag, target)
    assert target.read_text() == "precious"
    result = firing_rates(model, inputs, *NATIVE, flag, target, "--force", "-q")
    assert result.exit_code == 0, result.output
    assert target.read_bytes() != b"precious"


@pytest.mark.parametrize("flag", ["-o", "--plot"])
@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ("folder", "is a folder; {flag} names a file to write"),
        ("under a file", "a file where"),
        ("fifo", "not a regular file"),
        ("input", "the output would overwrite an input"),
    ],
)
def test_output_files_that_cannot_be_written(
    model: Path, inputs: Path, tmp_path: Path, flag: str, where: str, fragment: str
) -> None:
    (tmp_path / "rates.png").mkdir()
    (tmp_path / "file").write_text("")
    os.mkfifo(tmp_path / "fifo.png")
    target = {
        "folder": tmp_path / "rates.png",
        "under a file": tmp_path / "file" / "rates.png",
        "fifo": tmp_path / "fifo.png",
        "input": inputs / "a.png",
    }[where]
    check(model, tmp_path, 2, fragment.format(flag=flag), inputs, flag, target, "--force")


def test_report_and_plot_on_one_file(model: Path, inputs: Path, tmp_path: Path) -> None:
    target = tmp_path / "rates.png"
    check(
        model,
        tmp_path,
        2,
        "-o and --plot name the same file",
        inputs,
        "-o",
        target,
        "--plot",
        target,
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder(model: Path, inputs: Path, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        check(model, tmp_path, 1, "no permission to write", inputs, "-o", folder / "r.json")
    finally:
        folder.chmod(0o755)


def test_a_full_disk_writes_neither_file(model: Path, inputs: Path, tmp_path: Path) -> None:
    """The report fits under the file-size limit, the plot does not: neither appears."""
    args = ["firing-rates", "-m", model, inputs, *NATIVE, "--csv", "-o", tmp_path / "r.csv"]
    args += ["--plot", tmp_path / "r.png", "-q"]
    before = listing(tmp_path)
    code, shown = run_limited(32 * 1024, resource.RLIMIT_FSIZE, *args, home=tmp_path)
    assert code == 1 and len(shown) == 1, shown
    assert "cannot write the file" in shown[0] and "File too large" in shown[0]
    assert [p for p in listing(tmp_path) if not p.startswith("cache")] == before


# -- the launcher's variables: usage errors, exit 2 -----------------------------------------------


@pytest.mark.parametrize(("variables", "fragment"), BAD_LAUNCHES)
def test_bad_launcher_variables(
    model: Path, inputs: Path, tmp_path: Path, variables: dict[str, str], fragment: str
) -> None:
    check(model, tmp_path, 2, fragment, inputs, "-o", tmp_path / "r.json", env=launched(variables))
