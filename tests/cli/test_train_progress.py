"""What ``s2f train`` and ``s2f pretrain`` say of a run: the line before the first iteration,
validation results, log lines off a terminal, and the closing summary."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from s2f_cli import pretrain as pretrain_cli
from s2f_cli import train as train_cli
from s2f_cli.run_progress import RunProgress, print_summary
from spike2former.errors import Note
from spike2former.pretrain import PretrainRecipe, PretrainResult
from spike2former.training import TrainResult, recipe_for


def test_training_lines(capsys: pytest.CaptureFixture[str]) -> None:
    recipe = recipe_for("tiny").overridden(iters=20, crop_size=(32, 48), pipeline="random_crop")
    with RunProgress(False, train_cli._LINES) as progress:
        progress.on_start(2, 20, SimpleNamespace(recipe=recipe))
        progress.on_log({"iter": 4, "loss": 1.5, "lr": 0.001, "images_per_s": 9.5})
        record = {"iter": 4, "event": "val", "mIoU": 12.345, "mAcc": None, "aAcc": float("nan")}
        progress.on_eval({**record, "best_mIoU": 12.345})
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"Training iterations 3..20, batch {recipe.batch_size} per process, crop 32x48, "
        "random_crop",
        "iter 4: loss 1.5000, lr 1.000e-03, 9.5 images/s",
        "iter 4: val mIoU 12.35, mAcc n/a, aAcc n/a (best 12.35)",
    ]


def test_pretraining_lines(capsys: pytest.CaptureFixture[str]) -> None:
    job = SimpleNamespace(recipe=PretrainRecipe(iters=10, batch_size=3, crop_size=32))
    with RunProgress(False, pretrain_cli._LINES) as progress:
        progress.on_start(0, 10, job)
        progress.on_eval({"iter": 2, "top1": 50.0, "top5": 100.0, "best_top1": 50.0})
    with RunProgress(False, pretrain_cli._LINES) as progress:
        progress.on_start(10, 10, job)
    with RunProgress(True, pretrain_cli._LINES) as progress:
        progress.on_start(0, 10, job)
        progress.on_eval({"iter": 2, "top1": 50.0, "top5": 100.0, "best_top1": 50.0})
    assert capsys.readouterr().err.splitlines() == [
        "Pretraining iterations 1..10, batch 3 per process, crops 32x32",
        "iter 2: val top-1 50.00 %, top-5 100.00 % (best top-1 50.00 %)",
        "The run is complete: 10 of 10 iterations.",
    ]


def test_summaries(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    print_summary(TrainResult(tmp_path, 20, 12.345, 10), train_cli._LINES, quiet=False)
    print_summary(PretrainResult(tmp_path, 8, None, None), pretrain_cli._LINES, quiet=False)
    print_summary(PretrainResult(tmp_path, 8, 50.0, 4), pretrain_cli._LINES, quiet=True)
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(tmp_path)] * 3
    assert err.splitlines() == [
        f"Trained to iteration 20; best mIoU 12.35 at iteration 10. Run saved to {tmp_path}",
        f"Pretrained to iteration 8. Run saved to {tmp_path}",
    ]


def test_library_notes_name_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    note = Note("recomputed ({recompute_backbone}; slower)", recompute_backbone=True)
    flags = {"recompute_backbone": "--recompute-backbone"}
    with RunProgress(False, train_cli._LINES, flags) as progress:
        progress.on_note(note)
    with RunProgress(True, train_cli._LINES, flags) as progress:
        progress.on_note(note)  # silent: nothing
    assert capsys.readouterr().err.splitlines() == [
        "note: recomputed (--recompute-backbone; slower)"
    ]
