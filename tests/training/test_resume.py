"""``kill -9`` during training, ``--resume``, and the same weights as an uninterrupted run."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from spike2former import load_model
from spike2former.training.iterations import TIMING_FIELDS
from tests.training.helpers import (
    CLASSES,
    kill_and_resume,
    quick_args,
    write_shapes_dataset,
    write_small_model,
)

ITERS = 8


def test_kill_9_then_resume_ends_with_the_uninterrupted_weights(tmp_path: Path) -> None:
    data = write_shapes_dataset(tmp_path / "data")
    model = write_small_model(tmp_path / "start.safetensors")
    full_run, killed_run = tmp_path / "full", tmp_path / "killed"
    args = partial(quick_args, model, data, iters=ITERS)
    # the command that started the run, with --resume: its own settings are accepted
    resumed = kill_and_resume(args, [*args(killed_run), "--resume"], full_run, killed_run, ITERS)
    assert resumed.stdout.strip() == str(killed_run)
    # the log holds every line once, as the uninterrupted run's (times aside)
    records = [json.loads(line) for line in (killed_run / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (full_run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["iter"]) for r in records] == [
        ("train", 2),
        ("train", 4),
        ("val", 4),
        ("train", 6),
        ("train", 8),
        ("val", 8),
    ]
    assert [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records] == [
        {k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in reference
    ]
    # a finished run holds one checkpoint, and its model files carry the class names
    assert sorted(p.name for p in (killed_run / "checkpoint").iterdir()) == [
        f"iter_{ITERS:08d}.safetensors",
        "state.pt",
    ]
    assert load_model(killed_run / "weights" / "best.safetensors").config.class_names == CLASSES
