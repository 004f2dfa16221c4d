"""``s2f pretrain`` under bad input: one ``error:`` line, the documented exit code, no traceback,
and no run folder left behind."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from s2f_cli.app import app
from tests.cli.assertions import assert_one_error_line
from tests.pretrain.helpers import pretrain_args, write_image_folder


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("good"), train=2, val=1)


def _no_class_folders(root: Path) -> None:
    for folder in (root / "train").iterdir():
        shutil.rmtree(folder)


def _empty_class(root: Path) -> None:
    for path in (root / "train" / "square").iterdir():
        path.unlink()


def _unreadable_image(root: Path) -> None:
    (root / "train" / "circle" / "00.png").write_bytes(b"not an image")


def _val_class_not_in_train(root: Path) -> None:
    shutil.copytree(root / "val" / "circle", root / "val" / "triangle")


def _no_val_split(root: Path) -> None:
    shutil.rmtree(root / "val")


def _no_train_split(root: Path) -> None:
    shutil.rmtree(root / "train")


def _only_files(root: Path) -> None:
    shutil.rmtree(root / "train")
    (root / "train").write_text("not a folder")


LAYOUTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "no class folders": (_no_class_folders, "no class folders"),
    "empty class": (_empty_class, "a class folder without images"),
    "unreadable image": (_unreadable_image, "00.png"),
    "val class not in train": (_val_class_not_in_train, "triangle"),
    "no val split": (_no_val_split, "val: no such folder"),
    "no train split": (_no_train_split, "train: no such folder"),
    "train split is a file": (_only_files, "train: no such folder"),
}


@pytest.mark.parametrize("case", list(LAYOUTS))
def test_bad_layouts_fail_in_one_line_and_leave_no_run(
    good: Path, tmp_path: Path, case: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(good, data)
    damage, fragment = LAYOUTS[case]
    damage(data)
    out = tmp_path / "runs" / "run"
    result = CliRunner().invoke(app, pretrain_args(data, out, 2))
    assert_one_error_line(result, 1, fragment)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("change", "code", "fragment"),
    [
        ({"--preset": "nope"}, 2, "unknown preset"),
        ({"--data": "missing"}, 2, "no such directory"),
        ({"--crop-size": "4096"}, 2, "--crop-size 4096: pretraining crops are 32 to 1024"),
        ({"--crop-size": "8x8"}, 2, "--crop-size 8: pretraining crops are 32 to 1024"),
        ({"--iters": "0"}, 2, "--iters"),
        ({"--batch-size": "-1"}, 2, "--batch-size"),
        ({"--warmup-iters": "10"}, 2, "--warmup-iters 10 must be at least 0 and below --iters 2"),
        ({"--crop-size": "32x48"}, 2, "--crop-size 32x48: pretraining crops are square"),
        ({"--lr": "-1"}, 2, "--lr"),
    ],
)
def test_bad_options_fail_in_one_line(
    good: Path, tmp_path: Path, change: dict[str, str], code: int, fragment: str
) -> None:
    args = pretrain_args(good, tmp_path / "run", 2)
    for flag, value in change.items():
        value = str(tmp_path / value) if flag == "--data" else value
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    result = CliRunner().invoke(app, args)
    assert_one_error_line(result, code, fragment)
    assert not (tmp_path / "run").exists()


def test_an_existing_run_is_refused_and_kept(good: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(app, pretrain_args(good, out, 2))
    assert_one_error_line(result, 2, "already exists")
    assert (out / "mine.txt").read_text() == "keep me"


def test_resume_takes_the_run_settings_and_refuses_other_ones(good: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pretrain", "--resume", "--output", str(tmp_path / "x")])
    assert_one_error_line(result, 2, "no run at")
    result = CliRunner().invoke(app, ["pretrain", "--resume"])
    assert_one_error_line(result, 2, "--output RUN")

    out = tmp_path / "run"
    args = pretrain_args(good, out, 2)
    assert CliRunner().invoke(app, args).exit_code == 0
    # the command that started the run, with --resume: its own settings are accepted
    assert CliRunner().invoke(app, [*args, "--resume"]).exit_code == 0
    conflicting = [*args, "--resume", "--iters", "9", "--crop-size", "48", "--conventional"]
    line = assert_one_error_line(CliRunner().invoke(app, conflicting), 2, "saved settings")
    assert (
        f"--resume continues {out} with its saved settings: --iters 9 conflicts with the run's 2, "
        "--crop-size 48 conflicts with the run's 32, --conventional conflicts with the run "
        "(started without it); leave them out, or start a new run with another --output"
    ) in line
    # the data folder by another spelling, and HxW for the side, are the run's own
    same = ["pretrain", "--resume", "--output", str(out), "--crop-size", "32x32"]
    relative = Path(os.path.relpath(good))
    assert CliRunner().invoke(app, [*same, "--data", str(relative), "-q"]).exit_code == 0


def test_a_segmentation_model_file_is_not_a_backbone_file(tmp_path: Path) -> None:
    from spike2former import build_model, save_model
    from spike2former.errors import CheckpointError
    from spike2former.pretrain import load_classifier

    path = save_model(build_model("tiny"), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a backbone file"):
        load_classifier(path)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="unreadable backbone file"):
        load_classifier(tmp_path / "junk.safetensors")


def test_a_batch_beyond_memory_is_refused_before_anything_is_written(
    good: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = pretrain_args(good, out, 2)
    args[args.index("--batch-size") + 1] = "100000000"
    result = CliRunner().invoke(app, args)
    line = assert_one_error_line(result, 1, "crops of 32x32 per step", "lower the batch size")
    assert "GB" in line
    assert not out.exists()
