"""``s2f eval`` given hostile input: every bad argument, dataset, model, output folder and
launcher variable ends in one ``error:`` line (a hint line at most), exit 2 for usage errors and 1
for failures, no traceback, nothing left behind (no prediction folder, no hidden temporary), and
memory bounded before anything large is allocated.

The sizes that would take tens of gigabytes run in a child process whose address space is
limited; the rest go through Typer's runner.
"""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Callable
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
    assert_one_error_line,
    listing,
)
from tests.cli.test_model_files_bad_inputs import run_limited
from tests.cli.test_train_bad_inputs import huge_png_header
from tests.training.helpers import write_shapes_dataset, write_small_model
from tests.training.test_distributed import BAD_LAUNCHES, launched

ADDRESS_SPACE = 4 * 2**30  # ``ulimit -v`` of the memory cases
MEMORY_ADVICE = "evaluate at a smaller --imgsz"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_inputs")
    return {
        "data": write_shapes_dataset(root / "data", train=0, val=2, size=32),
        "model": write_small_model(root / "small.safetensors"),
        "two-classes": write_small_model(root / "two.safetensors", num_classes=2),
    }


def s2f_eval(
    files: dict[str, Path],
    *extra: str | Path,
    data: Path | None = None,
    model: Path | None = None,
    env: dict[str, str | None] | None = None,
) -> Result:
    """``s2f eval`` of the small model on the shapes dataset (``extra`` options win)."""
    args = ["eval", "--model", model or files["model"], "--data", data or files["data"]]
    args += ["--format", "folder", "--threads", "1", *extra]
    return CliRunner(env=env).invoke(app, list(map(str, args)))


def check(
    files: dict[str, Path],
    tmp_path: Path,
    code: int,
    fragment: str,
    *extra: str | Path,
    data: Path | None = None,
    model: Path | None = None,
) -> str:
    """``s2f eval EXTRA`` (run in ``tmp_path``, on ``data`` with ``model``) fails with one line
    and leaves ``tmp_path`` as it was."""
    run = partial(s2f_eval, files, *extra, data=data, model=model)
    return assert_fails_leaving(tmp_path, run, code, fragment)


# -- arguments: usage errors, exit 2 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--format", "kitti"], "'kitti' is not one of"),
        (["--mode", "tiles"], "'tiles' is not one of 'whole', 'slide'"),
        (["--split", ""], "--split takes the name of a split"),
        (["--split", "../val"], "--split takes the name of a split"),
        (["--split", "."], "--split takes the name of a split"),
        (["--window", "64"], "apply to --mode slide"),
        (["--mode", "slide", "--window", "0"], "--window takes S or HxW"),
        (["--mode", "slide", "--window", "-5"], "--window takes S or HxW"),
        (["--mode", "slide", "--window", "64x0"], "--window takes S or HxW"),
        (["--mode", "slide", "--window", "big"], "--window takes S or HxW"),
        (["--mode", "slide", "--stride", "0"], "--stride takes S or HxW"),
        (["--mode", "slide", "--window", "8", "--stride", "9"], "is longer than the window"),
        (["--mode", "slide", "--window", "64", "--stride", "1"], "in up to 4096 windows"),
        (["--mode", "slide", "--window", "64x32", "--stride", "7x3"], "give at least 8x4"),
        (["--mode", "slide", "--imgsz", "0"], "give --window for --mode slide"),
        (["--device", "cuda:7"], "cuda:7"),
        *INFERENCE_OPTION_ERRORS,
    ],
)
def test_bad_arguments(
    files: dict[str, Path], tmp_path: Path, extra: list[str], fragment: str
) -> None:
    check(files, tmp_path, 2, fragment, *extra, "-o", tmp_path / "predictions")


@pytest.mark.parametrize(
    ("where", "fragment"),
    [("missing", "no such directory"), ("file", "no such directory")],
)
def test_data_that_is_no_folder(
    files: dict[str, Path], tmp_path: Path, where: str, fragment: str
) -> None:
    (tmp_path / "file").write_text("")
    data = tmp_path / ("nothing" if where == "missing" else "file/data")
    assert_one_error_line(s2f_eval(files, data=data), 2, fragment)
    assert listing(tmp_path) == ["file"]


def test_a_model_for_other_classes(files: dict[str, Path]) -> None:
    result = s2f_eval(files, model=files["two-classes"])
    assert_one_error_line(result, 2, "the dataset has 3 classes but the model 2")


@pytest.mark.parametrize(
    ("model", "code", "fragment"),
    [
        ("missing.safetensors", 2, "no such model file"),
        ("folder.safetensors", 2, "is a folder"),
        ("text.safetensors", 1, "not a readable"),
    ],
)
def test_bad_model_files(
    files: dict[str, Path], tmp_path: Path, model: str, code: int, fragment: str
) -> None:
    (tmp_path / "folder.safetensors").mkdir()
    (tmp_path / "text.safetensors").write_text("weights\n")
    check(files, tmp_path, code, fragment, "-o", tmp_path / "predictions", model=tmp_path / model)


# -- datasets: failures, exit 1, nothing written -----------------------------------------------


def _empty_split(data: Path) -> None:
    for folder in ("images", "annotations"):
        for path in (data / folder / "val").iterdir():
            path.unlink()


def _write(relative: str, content: bytes) -> Callable[[Path], None]:
    def edit(data: Path) -> None:
        (data / relative).write_bytes(content)

    return edit


def _label(array: np.ndarray) -> Callable[[Path], None]:
    def edit(data: Path) -> None:
        assert cv2.imwrite(str(data / "annotations/val/001.png"), array)

    return edit


def _truncate_image(data: Path) -> None:
    path = data / "images/val/001.png"
    path.write_bytes(path.read_bytes()[:100])


BROKEN_DATA: dict[str, tuple[Callable[[Path], None], str]] = {
    "no layout": (lambda data: shutil.rmtree(data / "images"), "is not laid out as expected"),
    "empty split": (_empty_split, "no *.jpg or *.jpeg or *.png images"),
    "no such split": (lambda data: None, "does not exist"),
    "missing label": (lambda data: (data / "annotations/val/001.png").unlink(), "missing"),
    "empty image": (_write("images/val/001.png", b""), "not an image OpenCV can decode"),
    "text image": (_write("images/val/001.png", b"hello\n"), "not an image OpenCV can decode"),
    "truncated image": (_truncate_image, "not an image OpenCV can decode"),
    "image bomb": (
        _write("images/val/001.png", huge_png_header(100_000, 100_000)),
        "is too large to decode",
    ),
    "text label": (_write("annotations/val/001.png", b"hello\n"), "cannot read label map"),
    "label size": (_label(np.zeros((16, 16), np.uint8)), "they must be the same size"),
    "class ids": (_label(np.full((32, 32), 7, np.uint8)), "has values [7] that are not class ids"),
    "colour label": (_label(np.zeros((32, 32, 3), np.uint8)), "colour image"),
    "16-bit ids": (_label(np.full((32, 32), 300, np.uint16)), "values [300]"),
}


@pytest.mark.parametrize("case", list(BROKEN_DATA))
def test_broken_datasets(files: dict[str, Path], tmp_path: Path, case: str) -> None:
    """The prediction folder is asked for: a failure after the first image was scored (the
    truncated image only fails to decode) leaves no label map either."""
    data = tmp_path / "data"
    shutil.copytree(files["data"], data)
    breaks, fragment = BROKEN_DATA[case]
    breaks(data)
    split = ["--split", "test"] if case == "no such split" else []
    check(files, tmp_path, 1, fragment, *split, "-o", tmp_path / "predictions", data=data)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_dataset(files: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(files["data"], data)
    (data / "images" / "val").chmod(0)
    try:
        assert_one_error_line(s2f_eval(files, data=data), 1, "images")
    finally:
        (data / "images" / "val").chmod(0o755)


# -- the prediction folder -----------------------------------------------------------------------


def test_prediction_folder_that_is_a_file(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "predictions").write_text("precious")
    check(files, tmp_path, 2, "is a file; -o names a folder", "-o", tmp_path / "predictions")
    assert (tmp_path / "predictions").read_text() == "precious"


def test_prediction_folder_under_a_file(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    check(files, tmp_path, 2, "a file where", "-o", tmp_path / "file" / "predictions")


def test_prediction_folder_over_the_labels(files: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(files["data"], data)
    labels = data / "annotations" / "val"
    check(files, tmp_path, 2, "would overwrite the dataset's 000.png", "-o", labels, "--data", data)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_prediction_folder(files: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "predictions"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        check(files, tmp_path, 1, "no permission to write", "-o", folder / "run")
    finally:
        folder.chmod(0o755)


def test_an_existing_prediction_folder_is_added_to(files: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "predictions"
    folder.mkdir()
    (folder / "notes.txt").write_text("kept")
    result = s2f_eval(files, "-o", folder, "--json")
    assert result.exit_code == 0, result.output
    names = ("000.png", "001.png", "notes.txt")
    assert listing(tmp_path) == ["predictions", *(f"predictions/{name}" for name in names)]


# -- memory: refused from the images' sizes, under a 4 GB address space -------------------------


@pytest.fixture(scope="module")
def huge_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 8000x6000 photo (flat, so that it is small on disk) and its label map."""
    root = tmp_path_factory.mktemp("huge") / "data"
    for folder, array in (
        ("images", np.full((6000, 8000, 3), 90, np.uint8)),
        ("annotations", np.zeros((6000, 8000), np.uint8)),
    ):
        (root / folder / "val").mkdir(parents=True)
        assert cv2.imwrite(str(root / folder / "val" / "big.png"), array)
    (root / "classes.txt").write_text("background\nbox\ndisc\n")
    return root


@pytest.mark.parametrize(
    ("huge", "extra", "fragment"),
    [
        (False, ["--imgsz", "100000"], "at --imgsz 100000 (100000x100000 into the network)"),
        (True, ["--imgsz", "0"], "big.png (6000x8000) at --imgsz 0 (6000x8000 into the network)"),
        (
            False,
            ["--mode", "slide", "--imgsz", "20000", "--window", "64"],
            "(20000x20000, in windows of --window 64x64) needs about",
        ),
    ],
)
def test_images_too_large_for_memory(
    files: dict[str, Path],
    huge_data: Path,
    tmp_path: Path,
    huge: bool,
    extra: list[str],
    fragment: str,
) -> None:
    data = huge_data if huge else files["data"]
    args = ["eval", "-m", files["model"], "--data", data, "--format", "folder", *extra]
    code, shown = run_limited(
        ADDRESS_SPACE, resource.RLIMIT_AS, *args, "-o", tmp_path / "p", home=tmp_path
    )
    assert code == 2 and len(shown) == 1, shown
    assert shown[0].startswith("error: ") and fragment in shown[0], shown[0]
    assert MEMORY_ADVICE in shown[0] and "free" in shown[0]
    assert not (tmp_path / "p").exists()


def test_max_memory_is_named_when_it_is_the_limit(files: dict[str, Path], tmp_path: Path) -> None:
    line = check(
        files, tmp_path, 2, "allowed by max_memory", "--imgsz", "3000", "--max-memory", "0.5"
    )
    assert line.endswith(f"{MEMORY_ADVICE}, or raise --max-memory")


# -- the launcher's variables: usage errors, exit 2 -----------------------------------------------


@pytest.mark.parametrize(("variables", "fragment"), BAD_LAUNCHES)
def test_bad_launcher_variables(
    files: dict[str, Path], tmp_path: Path, variables: dict[str, str], fragment: str
) -> None:
    result = s2f_eval(files, "-o", tmp_path / "p", env=launched(variables))
    assert_one_error_line(result, 2, fragment)
    assert listing(tmp_path) == []


def test_one_process_needs_no_group(files: dict[str, Path]) -> None:
    """``WORLD_SIZE=1`` (a single SLURM task, say): nothing to combine, no group to join."""
    result = s2f_eval(files, "--json", env=launched({"RANK": "0", "WORLD_SIZE": "1"}))
    assert result.exit_code == 0, result.output
