"""``s2f train`` given hostile input: every bad argument, dataset and output target ends in one
``error:`` line (a hint line at most), its exit code (2 usage, 1 failure, 130 interrupted), no
traceback, no run folder or file left behind, and memory bounded before anything is allocated.

Cases that load data in worker processes, limit the process (address space, file size) or
interrupt it run ``python -m s2f_cli`` in a subprocess, where everything on stderr is seen; the
others go through Typer's runner.
"""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from s2f_cli.app import app
from spike2former.training.preflight import sampled_indices
from tests.cli.assertions import COMPUTE_OPTION_ERRORS, lines
from tests.training.helpers import (
    REPO,
    cli_env,
    quick_args,
    start_cli,
    write_shapes_dataset,
    write_small_run_files,
)

ADDRESS_SPACE = 4 * 2**30  # ``ulimit -v`` of the memory cases
FILE_SIZE = 100_000  # ``ulimit -f`` (bytes) of the full-disk cases: config fits, weights do not


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_small_run_files(tmp_path_factory.mktemp("bad_inputs"), train=4)


def args_for(files: dict[str, Path], out: Path, *extra: str, data: Path | None = None) -> list[str]:
    """A quick two-iteration run of the small network (``extra`` options win)."""
    return quick_args(files["model"], data or files["data"], out, 2, 2, *extra)


def check_one_error(code: int, returncode: int, stdout: str, stderr: str, fragment: str) -> str:
    """Exit ``code``, nothing on stdout, one ``error:`` line and at most one hint on stderr."""
    assert returncode == code, stderr
    assert "Traceback" not in stdout + stderr
    assert lines(stdout) == []
    shown = lines(stderr)
    errors = [line for line in shown if line.startswith("error: ")]
    assert len(errors) == 1 and len(shown) <= 2 and shown[0] == errors[0], shown
    assert fragment in errors[0], errors[0]
    return errors[0]


def in_process(args: list[str], code: int, fragment: str) -> str:
    result = CliRunner().invoke(app, args)
    return check_one_error(code, result.exit_code, result.stdout, result.stderr, fragment)


def limited(kind: int, value: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(kind, (value, value))

    return apply


def subprocess_run(
    args: list[str], code: int, fragment: str, limit: Callable[[], None] | None = None
) -> str:
    """``python -m s2f_cli ARGS`` (under ``limit``, a resource limit), checked as above."""
    done = subprocess.run(
        [sys.executable, "-m", "s2f_cli", *args],
        env=cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=limit,
    )
    return check_one_error(code, done.returncode, done.stdout, done.stderr, fragment)


# -- arguments: usage errors, exit code 2 ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--crop-size", "0"], "--crop-size takes S or HxW"),
        (["--crop-size", "-5"], "--crop-size takes S or HxW"),
        (["--crop-size", "0x32"], "--crop-size takes S or HxW"),
        (["--batch-size", "0"], "'--batch-size'"),
        (["--iters", "0"], "'--iters'"),
        (["--seed", "-1"], "'--seed'"),
        (["--num-classes", "100000"], "'--num-classes'"),
        (["--clip-grad", "inf"], "--clip-grad inf must be a finite number"),
        (
            ["--crop-size", "100000"],
            "--crop-size 100000x100000 is larger than the training images ever are with "
            "--pipeline random_crop: at most 32x32",
        ),
        (["--crop-size", "4096"], "choose a crop of at most 32x32"),
        (
            ["--crop-size", "2048", "--pipeline", "shortest_edge_a"],
            "at most 1280x1280 (the largest of 4 images looked at)",
        ),
        (["--batch-size", "100000"], "--batch-size 100000 is more than the training set's 4"),
        (["--workers", "100000"], "--workers 100000 data-loading processes with --batch-size 2"),
        *COMPUTE_OPTION_ERRORS,
    ],
)
def test_absurd_settings_are_one_usage_line(
    files: dict[str, Path], tmp_path: Path, extra: list[str], fragment: str
) -> None:
    out = tmp_path / "run"
    in_process(args_for(files, out, *extra), 2, fragment)
    assert not out.exists()


def test_an_existing_file_as_the_run_folder(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.write_text("precious")
    in_process(args_for(files, out), 2, "already exists")
    assert out.read_text() == "precious"


# -- memory: refused from the estimate, under a 4 GB address space -----------------------------


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (
            ["--batch-size", "4", "--crop-size", "1280", "--pipeline", "shortest_edge_a"],
            "--batch-size 4 with --crop-size 1280x1280 needs about",
        ),
        (["--imgsz", "8192"], "validating on images resized to --imgsz 8192 needs about"),
    ],
)
def test_runs_too_large_for_memory_are_refused(
    files: dict[str, Path], tmp_path: Path, extra: list[str], fragment: str
) -> None:
    out = tmp_path / "run"
    limit = limited(resource.RLIMIT_AS, ADDRESS_SPACE)
    line = subprocess_run(args_for(files, out, *extra), 2, fragment, limit)
    assert "of memory" in line and "free" in line
    assert not out.exists()


def test_a_run_that_fits_trains_under_the_same_limit(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "s2f_cli", *args_for(files, out)],
        env=cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=limited(resource.RLIMIT_AS, ADDRESS_SPACE),
    )
    assert done.returncode == 0, done.stderr
    assert (out / "weights" / "last.safetensors").is_file()


# -- data: the same line with data-loading processes as without, exit code 1 -------------------


def break_image(path: Path) -> None:
    path.write_bytes(b"not an image")


def shrink_label(path: Path) -> None:
    assert cv2.imwrite(str(path), np.zeros((16, 16), np.uint8))


def foreign_label(path: Path) -> None:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[3, 3] = 200
    assert cv2.imwrite(str(path), label)


BREAKS = {"image": break_image, "label size": shrink_label, "label values": foreign_label}
MESSAGES = {
    "image": "not an image OpenCV can decode",
    "label size": "they must be the same size",
    "label values": "has values [200] that are not class ids",
}


@pytest.fixture(scope="module")
def large_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 training images: more than the checks before a run look at."""
    return write_shapes_dataset(tmp_path_factory.mktemp("large") / "data", train=40, val=1)


@pytest.mark.parametrize("kind", list(BREAKS))
def test_bad_samples_met_while_training_give_one_line_with_or_without_workers(
    files: dict[str, Path], large_data: Path, tmp_path: Path, kind: str
) -> None:
    """The bad files are among those the checks before the run do not read, so the data
    loaders meet them: in worker processes or in the training process, the same line."""
    data = tmp_path / "data"
    shutil.copytree(large_data, data)
    unread = sorted(set(range(40)) - set(sampled_indices(40)))
    for index in unread:
        folder = "images" if kind == "image" else "annotations"
        BREAKS[kind](data / folder / "train" / f"{index:03d}.png")
    extra = ["--iters", "20", "--poly-end", "20", "--checkpoint-interval", "1000"]
    extra += ["--eval-interval", "1000"]
    with_workers = subprocess_run(
        args_for(files, tmp_path / "run2", *extra, "--workers", "2", data=data), 1, MESSAGES[kind]
    )
    without = in_process(
        args_for(files, tmp_path / "run0", *extra, "--workers", "0", data=data), 1, MESSAGES[kind]
    )
    assert with_workers == without
    assert any(f"/{index:03d}.png" in without for index in unread)
    assert not (tmp_path / "run2").exists() and not (tmp_path / "run0").exists()


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("image", "not an image OpenCV can decode"),
        ("label size", "they must be the same size"),
        ("bomb", "is too large to decode"),
    ],
)
def test_bad_samples_are_found_before_the_run_folder_exists(
    files: dict[str, Path], tmp_path: Path, kind: str, fragment: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(files["data"], data)
    if kind == "bomb":
        (data / "images" / "train" / "001.png").write_bytes(huge_png_header(100_000, 100_000))
    else:
        folder = "images" if kind == "image" else "annotations"
        BREAKS[kind](data / folder / "train" / "001.png")
    out = tmp_path / "run"
    in_process(args_for(files, out, data=data), 1, fragment)
    assert not out.exists()


def huge_png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and header claiming ``width x height``, and nothing behind it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_resuming_on_data_broken_since_changes_nothing(
    files: dict[str, Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(files["data"], data)
    out = tmp_path / "run"
    assert CliRunner().invoke(app, args_for(files, out, data=data)).exit_code == 0
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    foreign_label(data / "annotations" / "train" / "000.png")
    in_process([*args_for(files, out, data=data), "--resume"], 1, "not class ids")
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    assert after == before


# -- outputs: unwritable or full targets, exit code 1; interruptions ----------------------------


def test_a_run_folder_under_a_file(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    in_process(args_for(files, tmp_path / "file" / "run"), 1, "cannot create the run folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("existed", [False, True])
def test_a_full_disk_leaves_nothing(files: dict[str, Path], tmp_path: Path, existed: bool) -> None:
    """The first checkpoint cannot be written; a folder that existed before stays, empty."""
    out = tmp_path / "run"
    if existed:
        out.mkdir()
    limit = limited(resource.RLIMIT_FSIZE, FILE_SIZE)
    subprocess_run(args_for(files, out), 1, "File too large", limit)
    assert out.exists() == existed
    assert not existed or list(out.iterdir()) == []


def test_the_default_run_folder_is_removed_when_the_data_fails(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``--output``: ``runs/train/run`` is made once the run is checked, and removed again when
    a sample fails before the first checkpoint."""
    data = tmp_path / "data"
    shutil.copytree(files["data"], data)
    for index in (1, 2, 3):
        foreign_label(data / "annotations" / "train" / f"{index:03d}.png")
    monkeypatch.chdir(tmp_path)
    args = args_for(files, tmp_path / "unused", data=data)
    del args[args.index("--output") : args.index("--output") + 2]
    in_process([*args, "--checkpoint-interval", "1000"], 1, "not class ids")
    assert list((tmp_path / "runs" / "train").iterdir()) == []


def test_ctrl_c_before_the_first_checkpoint_leaves_nothing(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    extra = ["--iters", "5000", "--poly-end", "5000", "--checkpoint-interval", "10000"]
    args = args_for(files, out, *extra, "--eval-interval", "10000", "--workers", "2")
    process = start_cli(args)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint" / "state.pt").exists():  # the starting checkpoint
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    check_one_error(130, process.returncode, stdout, stderr, "interrupted")
    assert not out.exists()
