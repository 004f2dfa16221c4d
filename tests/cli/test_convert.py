"""``s2f convert`` through the Typer application (and once through ``python -m s2f_cli``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from spike2former.model_file import read_model_config
from tests.cli.assertions import assert_one_error_line, lines, run_s2f
from tests.helpers import (
    BAD_INPUTS,
    MALICIOUS_FORMATS,
    small_config,
    write_malicious,
    write_official_checkpoint,
)


def convert(*args: str | Path) -> Result:
    # Click >= 8.2 keeps stderr apart: result.stdout and result.stderr are the two streams,
    # result.output both interleaved.
    return CliRunner().invoke(app, ["convert", *map(str, args)])


def test_convert_next_to_the_source(checkpoint: Path) -> None:
    result = convert(checkpoint)
    assert result.exit_code == 0, result.output
    destination = checkpoint.with_name("iter_160000.s2f.safetensors")
    assert lines(result.stdout)[-1] == str(destination)
    assert "Inferred architecture" in result.stderr
    assert read_model_config(destination) == small_config()
    assert sorted(os.listdir(checkpoint.parent)) == sorted([checkpoint.name, destination.name])


def test_quiet_prints_only_the_path(checkpoint: Path, tmp_path: Path) -> None:
    destination = tmp_path / "models" / "ade.safetensors"
    result = convert(checkpoint, "--output", destination, "--quiet")
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == [str(destination)]
    assert lines(result.stderr) == []
    assert read_model_config(destination) == small_config()


def test_refuses_to_overwrite_without_force(checkpoint: Path, tmp_path: Path) -> None:
    destination = tmp_path / "model.safetensors"
    destination.write_bytes(b"precious\x00bytes")
    result = convert(checkpoint, "-o", destination)
    assert_one_error_line(result, 2, str(destination), "already exists", "--force")
    assert destination.read_bytes() == b"precious\x00bytes"

    result = convert(checkpoint, "-o", destination, "--force", "-q")
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == [str(destination)]
    assert read_model_config(destination) == small_config()
    assert sorted(os.listdir(tmp_path)) == [checkpoint.parent.name, destination.name]


@pytest.mark.parametrize("spelling", ["same", "dotted"])
def test_refuses_to_overwrite_the_source(checkpoint: Path, spelling: str) -> None:
    before = checkpoint.read_bytes()
    target = checkpoint
    if spelling == "dotted":
        target = checkpoint.parent / ".." / checkpoint.parent.name / checkpoint.name
    for extra in ([], ["--force"]):
        result = convert(checkpoint, "-o", target, *extra)
        assert_one_error_line(result, 2, "would overwrite the source")
    assert checkpoint.read_bytes() == before
    assert os.listdir(checkpoint.parent) == [checkpoint.name]


def test_missing_source(tmp_path: Path) -> None:
    source = tmp_path / "absent.pth"
    assert_one_error_line(convert(source), 2, f"{source}: no such file")
    assert os.listdir(tmp_path) == []


def test_output_that_is_a_folder(checkpoint: Path, tmp_path: Path) -> None:
    directory = tmp_path / "taken.safetensors"
    directory.mkdir()
    for extra in ([], ["--force"]):
        result = convert(checkpoint, "-o", directory, *extra)
        assert_one_error_line(result, 2, str(directory), "is a folder")
    assert os.listdir(directory) == []
    assert sorted(os.listdir(tmp_path)) == [checkpoint.parent.name, directory.name]


FAILING_INPUTS = [case for case in BAD_INPUTS if case != "missing-file"]


@pytest.mark.parametrize("case", FAILING_INPUTS)
def test_bad_inputs(tmp_path: Path, case: str) -> None:
    build, fragments = BAD_INPUTS[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = build(inputs)
    before = sorted(os.listdir(inputs))
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    result = convert(source, "-o", out_dir / "model.safetensors")

    assert_one_error_line(result, 1, str(source), *fragments)
    assert os.listdir(out_dir) == []
    assert sorted(os.listdir(inputs)) == before


@pytest.mark.parametrize("fmt", MALICIOUS_FORMATS)
def test_code_in_pickles_is_refused(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "pwned"
    source = write_malicious(tmp_path / "evil.pth", fmt, marker)
    result = convert(source)
    assert_one_error_line(result, 1, str(source), "refusing to load", "system")
    assert not marker.exists()
    assert os.listdir(tmp_path) == [source.name]


def test_failed_conversion_keeps_the_existing_output(tmp_path: Path) -> None:
    source = BAD_INPUTS["reshaped-tensor"][0](tmp_path)
    destination = tmp_path / "model.safetensors"
    destination.write_bytes(b"previous model")
    before = sorted(os.listdir(tmp_path))
    assert_one_error_line(convert(source, "-o", destination, "--force"), 1, "shape mismatches")
    assert destination.read_bytes() == b"previous model"
    assert sorted(os.listdir(tmp_path)) == before


def test_class_names(checkpoint: Path, tmp_path: Path) -> None:
    names_file = tmp_path / "classes.txt"
    names_file.write_text("sky\nroad\n\n  tree  \ncar\nperson with bike\n", encoding="utf-8")
    destination = tmp_path / "m.safetensors"
    result = convert(checkpoint, "-o", destination, "--class-names", names_file)
    assert result.exit_code == 0, result.output
    assert "names stored" in result.stderr
    stored = read_model_config(destination)
    assert stored.class_names == ("sky", "road", "tree", "car", "person with bike")
    assert stored == small_config().replace(class_names=stored.class_names)


def test_wrong_number_of_class_names(checkpoint: Path, tmp_path: Path) -> None:
    names_file = tmp_path / "classes.txt"
    names_file.write_text("sky\nroad\n", encoding="utf-8")
    destination = tmp_path / "m.safetensors"
    result = convert(checkpoint, "-o", destination, "--class-names", names_file)
    assert_one_error_line(result, 1, "2 class names given for 5 classes")
    assert not destination.exists()


def test_dataset_class_names(tmp_path: Path) -> None:
    config = small_config(head={"num_classes": 19})
    source = write_official_checkpoint(tmp_path / "c.pth", config, "pth-bare")
    destination = tmp_path / "m.safetensors"
    result = convert(source, "-o", destination, "--dataset", "cityscapes", "-q")
    assert result.exit_code == 0, result.output
    stored = read_model_config(destination).class_names
    assert stored is not None and stored[:3] == ("road", "sidewalk", "building")
    assert len(stored) == 19


def test_dataset_of_the_wrong_size_or_unknown(checkpoint: Path, tmp_path: Path) -> None:
    destination = tmp_path / "m.safetensors"
    assert_one_error_line(convert(checkpoint, "-o", destination, "--dataset", "voc"), 1, "21 class")
    assert_one_error_line(convert(checkpoint, "-o", destination, "--dataset", "mnist"), 2, "mnist")
    assert not destination.exists()


def test_unreadable_class_names(checkpoint: Path, tmp_path: Path) -> None:
    destination = tmp_path / "m.safetensors"
    result = convert(checkpoint, "-o", destination, "--class-names", tmp_path / "absent.txt")
    assert_one_error_line(result, 2, "cannot read class names")
    assert not destination.exists()


def test_time_steps(checkpoint: Path, tmp_path: Path) -> None:
    destination = tmp_path / "m.safetensors"
    result = convert(checkpoint, "-o", destination, "--time-steps", "4", "-q")
    assert result.exit_code == 0, result.output
    assert read_model_config(destination).backbone.time_steps == 4
    assert read_model_config(destination) == small_config({"time_steps": 4})


def test_time_steps_must_be_positive(checkpoint: Path, tmp_path: Path) -> None:
    destination = tmp_path / "m.safetensors"
    result = convert(checkpoint, "-o", destination, "-T", "0")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not destination.exists()


def test_python_m_s2f_cli(tmp_path: Path) -> None:
    """The real entry point, in a fresh interpreter started away from the repository."""
    source = write_official_checkpoint(tmp_path / "official.safetensors", fmt="safetensors")
    destination = tmp_path / "out" / "model.safetensors"
    completed = run_s2f("convert", source, "-o", destination, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert lines(completed.stdout)[-1] == str(destination)
    assert "Traceback" not in completed.stderr
    assert read_model_config(destination) == small_config()
