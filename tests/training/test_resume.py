"""``kill -9`` during training, ``--resume``, and the same weights as an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

from spike2former import load_model
from tests.training.helpers import (
    CLASSES,
    assert_same_tensors,
    kill_when,
    quick_args,
    read_tensors,
    run_cli,
    start_cli,
    write_shapes_dataset,
    write_small_model,
)

ITERS = 8


def test_kill_9_then_resume_ends_with_the_uninterrupted_weights(tmp_path: Path) -> None:
    data = write_shapes_dataset(tmp_path / "data")
    model = write_small_model(tmp_path / "start.safetensors")
    full_run, killed_run = tmp_path / "full", tmp_path / "killed"
    # Both runs start together (one thread each); the second is killed once it has written the
    # weights of its first checkpoint after the start, wherever it then is.
    full = start_cli(quick_args(model, data, full_run, iters=ITERS))
    victim = start_cli(quick_args(model, data, killed_run, iters=ITERS))
    kill_when(victim, killed_run / "checkpoint" / "iter_00000002.safetensors")
    assert not (killed_run / "checkpoint" / f"iter_{ITERS:08d}.safetensors").exists()

    # the command that started the run, with --resume: its own settings are accepted
    resumed = run_cli([*quick_args(model, data, killed_run, iters=ITERS), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(killed_run)
    _, errors = full.communicate(timeout=120)
    assert full.returncode == 0, errors

    for name in ("last", "best"):
        assert_same_tensors(
            read_tensors(full_run / "weights" / f"{name}.safetensors"),
            read_tensors(killed_run / "weights" / f"{name}.safetensors"),
        )
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
    timing = {"time", "data_time", "images_per_s", "eta_s"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in records] == [
        {k: v for k, v in r.items() if k not in timing} for r in reference
    ]
    # a finished run holds one checkpoint, and its model files carry the class names
    assert sorted(p.name for p in (killed_run / "checkpoint").iterdir()) == [
        f"iter_{ITERS:08d}.safetensors",
        "state.pt",
    ]
    assert load_model(killed_run / "weights" / "best.safetensors").config.class_names == CLASSES
