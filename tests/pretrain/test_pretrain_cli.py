"""``s2f pretrain`` end to end: a run folder, validation top-1, kill -9 and ``--resume`` to the
uninterrupted weights, the backbone file taken by ``s2f train --init-backbone``."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from spike2former import build_model
from spike2former.pretrain import load_classifier
from spike2former.training import load_backbone
from spike2former.training.iterations import TIMING_FIELDS
from tests.pretrain.helpers import CLASSES, pretrain_args, write_image_folder
from tests.training.helpers import (
    kill_and_resume,
    quick_args,
    read_tensors,
    run_cli,
    write_shapes_dataset,
)

ITERS = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("folder"))


def test_a_run_writes_its_folder_scores_and_a_backbone_file(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(pretrain_args(data, out, 4))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if r["event"] == "val"]
    assert [r["iter"] for r in vals] == [2, 4]
    for record in vals:
        assert 0 <= record["top1"] <= record["top5"] <= 100
    assert "val top-1" in result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == list(CLASSES)
    assert config["job"]["recipe"]["iters"] == 4

    best = out / "weights" / "best.safetensors"
    classifier = load_classifier(best)
    assert classifier.class_names == CLASSES
    # the official ImageNet layout: bare backbone keys plus the head
    keys = set(read_tensors(best))
    assert {"head.weight", "head.bias"} <= keys
    assert not any(key.startswith("backbone.") for key in keys)
    segmenter = build_model("tiny")
    report = load_backbone(segmenter, best)
    assert report.missing == () and report.unexpected == () and report.head_keys == 2
    for key, value in segmenter.backbone.state_dict().items():
        assert value.equal(classifier.backbone.state_dict()[key])


def test_kill_9_then_resume_ends_with_the_uninterrupted_weights(data: Path, tmp_path: Path) -> None:
    full_run, killed_run = tmp_path / "full", tmp_path / "killed"
    resume = ["pretrain", "--output", str(killed_run), "--resume", "--threads", "1"]
    kill_and_resume(partial(pretrain_args, data, iters=ITERS), resume, full_run, killed_run, ITERS)
    logs = [
        [
            {k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
            for line in (run / "metrics.jsonl").read_text().splitlines()
        ]
        for run in (full_run, killed_run)
    ]
    assert logs[0] == logs[1]


def test_the_backbone_file_starts_a_segmentation_run(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "pre"
    assert run_cli(pretrain_args(data, run, 2)).returncode == 0
    backbone = run / "weights" / "best.safetensors"
    shapes = write_shapes_dataset(tmp_path / "shapes")
    args = quick_args(tmp_path / "unused", shapes, tmp_path / "seg", 2)
    at = args.index("--model")
    args[at : at + 2] = ["--preset", "tiny", "--num-classes", "3"]
    args.remove("-q")
    result = run_cli([*args, "--init-backbone", str(backbone)])
    assert result.returncode == 0, result.stderr
    assert "backbone tensors loaded" in result.stderr
    assert "2 classification-head tensors ignored" in result.stderr
    assert "missing" not in result.stderr and "unexpected" not in result.stderr
