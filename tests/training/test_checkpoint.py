"""Run folders: a checkpoint interrupted at any step leaves a consistent, resumable pair."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from spike2former import build_model
from spike2former.training import checkpoint as checkpoint_module
from spike2former.training.checkpoint import (
    RunFolder,
    RunFolderError,
    TrainState,
    capture_rng,
    restore_rng,
)
from tests.helpers import small_config
from tests.training.helpers import read_tensors


class Crash(Exception):
    """Stands for the process dying at that point."""


def state(iteration: int) -> TrainState:
    return TrainState(iteration, {"state": {}, "param_groups": []}, {"last_epoch": iteration}, {})


def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    first = build_model(small_config())
    second = build_model(small_config())
    with torch.no_grad():
        for param in second.parameters():
            param.add_(1.0)
    return first, second


@pytest.fixture
def run(tmp_path: Path) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.create()
    return folder


def same_weights(path: Path, model: torch.nn.Module) -> bool:
    saved = read_tensors(path)
    return all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def save_twice_crashing(
    run: RunFolder,
    monkeypatch: pytest.MonkeyPatch,
    target: object,
    name: str,
    dies: Callable[..., None],
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Checkpoint 0 of one model, then checkpoint 2 of another with ``target.name`` replaced by
    ``dies``, which raises ``Crash`` part-way; returns the two models."""
    old, new = models()
    run.save_checkpoint(old, state(0))
    monkeypatch.setattr(target, name, dies)
    with pytest.raises(Crash):
        run.save_checkpoint(new, state(2))
    monkeypatch.undo()
    return old, new


def test_crash_before_the_state_is_renamed_keeps_the_previous_checkpoint(
    run: RunFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dies(path: Path, write: object) -> None:
        if Path(path).name == "state.pt":
            raise Crash
        raise AssertionError(path)

    old, _ = save_twice_crashing(run, monkeypatch, checkpoint_module, "write_atomically", dies)

    assert run.weights_for(2).exists()  # written, but no state names it
    model, resumed = run.load_checkpoint(torch.device("cpu"))
    assert resumed.iteration == 0
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), old.state_dict().values(), strict=True)
    )
    run.tidy(resumed.iteration)
    assert not run.weights_for(2).exists()
    assert same_weights(run.last, old)


def test_crash_after_the_state_resumes_from_the_new_checkpoint(
    run: RunFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dies(self: RunFolder, weights: Path) -> None:
        raise Crash

    old, new = save_twice_crashing(run, monkeypatch, RunFolder, "_publish_last", dies)

    assert same_weights(run.last, old)  # not yet published
    model, resumed = run.load_checkpoint(torch.device("cpu"))
    assert resumed.iteration == 2 and resumed.scheduler == {"last_epoch": 2}
    assert same_weights(run.weights_for(2), model)
    run.tidy(resumed.iteration)
    assert same_weights(run.last, new)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [
        run.weights_for(2).name,
        "state.pt",
    ]


def test_leftover_temporary_files_are_removed(run: RunFolder) -> None:
    old, _ = models()
    run.save_checkpoint(old, state(0))
    stray = [run.checkpoints / ".state.pt.abc.tmp", run.weights / ".last.safetensors.x.tmp"]
    for path in stray:
        path.write_bytes(b"partial")
    run.tidy(0)
    assert not any(path.exists() for path in stray)


def test_last_is_the_same_file_as_the_checkpoint(run: RunFolder) -> None:
    old, _ = models()
    run.save_checkpoint(old, state(4))
    assert run.last.read_bytes() == run.weights_for(4).read_bytes()


def test_existing_runs_are_never_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="already exists; pass resume=True"):
        RunFolder(folder).create()
    assert (folder / "notes.txt").read_text() == "mine"
    RunFolder(tmp_path / "empty").create()  # a new or empty folder is fine


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "there is no run at"),
        (lambda root: root.mkdir(), "has no checkpoint to resume from"),
    ],
)
def test_resume_needs_a_run(tmp_path: Path, setup: object, message: str) -> None:
    root = tmp_path / "run"
    setup(root)  # type: ignore[operator]
    with pytest.raises(RunFolderError, match=message):
        RunFolder(root).check_resumable()


def test_metrics_after_the_checkpoint_are_dropped_on_resume(run: RunFolder) -> None:
    for iteration in (2, 4, 6):
        run.append_metrics({"iter": iteration, "event": "train", "loss": float("nan")})
    with open(run.metrics, "a") as file:
        file.write('{"iter": 8, "ev')  # cut short by a kill
    run.truncate_metrics(4)
    assert run.read_metrics() == [
        {"iter": 2, "event": "train", "loss": None},
        {"iter": 4, "event": "train", "loss": None},
    ]


def test_rng_states_round_trip_through_the_state_file(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    saved = capture_rng()
    path = tmp_path / "rng.pt"
    torch.save(saved, path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(torch.load(path, weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
