"""Hostile and damaged s2f model files at the library level (``spike2former.model_file``): each is
refused with a one-line ``CheckpointError`` naming the file, before the network is built or a
tensor is read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spike2former import load_model, model_file
from spike2former.errors import CheckpointError
from spike2former.model_file import read_model_config
from tests.helpers import BAD_MODEL_METADATA, NOT_MODEL_FILES, small_config, write_model_file

# Cases whose configuration is valid: only the tensors (or their size) give them away.
VALID_CONFIGURATION = {
    "too-big-for-memory",
    "header-shape-vs-classes",
    "header-dtype",
    "header-missing-key",
    "header-extra-key",
}


@pytest.fixture
def nothing_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a network is built or a tensor read from the file."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("allocated before the file was checked")

    monkeypatch.setattr(model_file, "Spike2Former", forbidden)
    monkeypatch.setattr(model_file, "load_weights", forbidden)


def refusal(call: object, path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        call(path)  # type: ignore[operator]
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


@pytest.mark.usefixtures("nothing_allocated")
@pytest.mark.parametrize("case", list(BAD_MODEL_METADATA))
def test_hostile_model_files(tmp_path: Path, case: str) -> None:
    build, fragments = BAD_MODEL_METADATA[case]
    path = build(tmp_path)
    message = refusal(load_model, path)
    for fragment in fragments:
        assert fragment in message, message
    if case in VALID_CONFIGURATION:
        assert read_model_config(path) is not None
    else:
        assert refusal(read_model_config, path) == message
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.usefixtures("nothing_allocated")
@pytest.mark.parametrize("case", list(NOT_MODEL_FILES))
def test_files_that_are_no_model_file(tmp_path: Path, case: str) -> None:
    path = NOT_MODEL_FILES[case](tmp_path)
    for call in (load_model, read_model_config):
        message = refusal(call, path)
        assert "s2f convert" in message  # the hint for official checkpoints
    assert os.listdir(tmp_path) == [path.name]  # the pickle's command did not run


@pytest.mark.parametrize("kind", ["folder", "missing", "fifo"])
def test_paths_that_are_no_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.safetensors"
    expected = {"folder": "is a folder", "missing": "no such model file", "fifo": "regular file"}
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    for call in (load_model, read_model_config):
        assert expected[kind] in refusal(call, path)


def test_native_test_size_and_many_classes_load(tmp_path: Path) -> None:
    """The bounds leave room: test size 0 (native size) and thousands of classes."""
    config = small_config({"version": "sdtv2"}, {"num_classes": 3000}, test_size=0)
    loaded = load_model(write_model_file(tmp_path / "m.safetensors", config))
    assert loaded.config == config
