"""Bad inputs to the commands that read or write model files: ``s2f convert``, ``s2f download``,
``s2f models`` and model loading in every other command.

Each failure ends in one ``error:`` line, exit 2 (a usage error, found before any work) or 1 (a
failure), no traceback, and nothing partial: no output file, no temporary, no cache entry, the
inputs and an existing output untouched. Hostile model files are refused before anything is
allocated, also in a process whose address space is limited to 3 GB.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from tests.cli.assertions import assert_one_error_line, lines, run_python
from tests.download_helpers import Home
from tests.helpers import (
    BAD_INPUTS,
    BAD_MODEL_METADATA,
    NOT_MODEL_FILES,
    write_model_file,
    write_official_checkpoint,
)

SCENE = Path(__file__).resolve().parents[2] / "examples" / "scene_1.jpg"
# Headers so damaged that the file is not recognised as safetensors when downloaded.
GARBLED_HEADERS = ("header-huge-shape", "header-length-1tb")
ADDRESS_SPACE = 3 * 2**30


def s2f(*args: str | Path) -> Result:
    return CliRunner().invoke(app, list(map(str, args)))


def files_under(root: Path) -> list[str]:
    """Every file and folder under ``root``, relative to it (lock files of the cache left out)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix != ".lock")


def in_folder(build: Callable[[Path], Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return build(folder)


# --- hostile model files, through every command that loads one --------------------------------


@pytest.mark.parametrize("case", list(BAD_MODEL_METADATA))
def test_download_refuses_hostile_model_files(home: Home, case: str) -> None:
    build, fragments = BAD_MODEL_METADATA[case]
    path = build(home.inputs)
    line = assert_one_error_line(s2f("download", path, "--cache-name", "bad"), 1, str(path))
    if case not in GARBLED_HEADERS:
        assert "a damaged s2f model file" in line and "not cached" in line
        assert all(fragment in line for fragment in fragments), line
    assert home.finals() == [] and home.partials() == []
    assert os.listdir(home.inputs) == [path.name]


@pytest.mark.parametrize("case", [*BAD_MODEL_METADATA, *NOT_MODEL_FILES])
def test_segment_refuses_bad_model_files(tmp_path: Path, case: str) -> None:
    build, fragments = BAD_MODEL_METADATA.get(case, (NOT_MODEL_FILES.get(case), ()))
    path = in_folder(build, tmp_path / "in")
    out = tmp_path / "out"
    result = s2f("segment", SCENE, "--model", path, "-o", out)
    assert_one_error_line(result, 1, str(path), *fragments)
    assert files_under(tmp_path) == ["in", f"in/{path.name}"]  # no "pwned" from the pickle


@pytest.mark.parametrize("command", ["segment", "firing-rates", "eval", "train"])
@pytest.mark.parametrize("case", ["num-classes-1e6", "header-dtype"])
def test_every_command_refuses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, case: str
) -> None:
    monkeypatch.chdir(tmp_path)
    build, fragments = BAD_MODEL_METADATA[case]
    path = in_folder(build, tmp_path / "in")
    (tmp_path / "data").mkdir()
    out = tmp_path / "out"
    args = {
        "segment": [SCENE, "-o", out],
        "firing-rates": [SCENE, "-o", out],
        "eval": ["--data", "data", "--format", "folder"],
        "train": ["--data", "data", "--format", "folder", "--output", out],
    }[command]
    result = s2f(command, "--model", path, *args)
    assert_one_error_line(result, 1, str(path), *fragments)
    assert files_under(tmp_path) == ["data", "in", f"in/{path.name}"]


def test_a_folder_for_a_model_file(home: Home) -> None:
    folder = home.inputs / "model.safetensors"
    folder.mkdir()
    result = s2f("segment", SCENE, "--model", folder, "-o", home.inputs / "out")
    assert_one_error_line(result, 2, str(folder), "is a folder")
    assert_one_error_line(s2f("download", folder), 2, str(folder), "is a folder")
    assert files_under(home.inputs) == ["model.safetensors"] and not home.cache.exists()


# --- s2f convert: outputs that cannot be written ----------------------------------------------


def test_convert_a_folder(tmp_path: Path) -> None:
    result = s2f("convert", tmp_path, "-o", tmp_path / "m.safetensors")
    assert_one_error_line(result, 2, str(tmp_path), "is a folder")
    assert files_under(tmp_path) == []


def test_output_below_a_file(checkpoint: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "models"
    blocker.write_text("a file where a folder should be")
    result = s2f("convert", checkpoint, "-o", blocker / "ade" / "m.safetensors", "--force")
    assert_one_error_line(result, 2, str(blocker), "needs a folder")
    assert blocker.read_text() == "a file where a folder should be"
    assert files_under(tmp_path) == ["checkpoints", f"checkpoints/{checkpoint.name}", "models"]


def test_output_that_is_not_a_regular_file(checkpoint: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "m.safetensors"
    os.mkfifo(fifo)
    result = s2f("convert", checkpoint, "-o", fifo, "--force")
    assert_one_error_line(result, 2, str(fifo), "not a regular file")
    assert fifo.is_fifo()


# --- full disks and address-space limits, in a process of their own ---------------------------


def run_limited(limit: int, kind: int, *args: str | Path, home: Path) -> tuple[int, list[str]]:
    """``s2f ARGS`` in a fresh interpreter whose resource ``kind`` is limited to ``limit``;
    (exit status, stderr lines). It must finish well within a minute."""
    script = (
        "import resource, sys\n"
        f"resource.setrlimit({kind}, ({limit}, {limit}))\n"
        "from s2f_cli.app import main\n"
        "sys.argv[0] = 's2f'\n"
        "main()\n"
    )
    env = {"S2F_OFFLINE": "", "S2F_HOME": str(home / "cache"), "HOME": str(home)}
    start = time.monotonic()
    completed = run_python(["-c", script, *map(str, args)], home, env, timeout=120)
    assert time.monotonic() - start < 60
    assert lines(completed.stdout) == [], completed.stdout
    return completed.returncode, lines(completed.stderr)


@pytest.mark.parametrize(
    ("command", "case"),
    [
        ("segment", "embed-dim-1e6"),
        ("download", "too-big-for-memory"),
        ("convert", "many-classes"),
    ],
)
def test_hostile_sizes_under_an_address_space_limit(
    tmp_path: Path, command: str, case: str
) -> None:
    """Refused in a moment from the description, not by a MemoryError after trying."""
    build, fragments = (BAD_INPUTS if command == "convert" else BAD_MODEL_METADATA)[case]
    path = in_folder(build, tmp_path / "in")
    args: list[str | Path] = {
        "segment": [SCENE, "--model", path],
        "download": [path, "--cache-name", "bad"],
        "convert": [path, "-o", tmp_path / "m.safetensors"],
    }[command]
    before = files_under(tmp_path)
    code, shown = run_limited(ADDRESS_SPACE, resource.RLIMIT_AS, command, *args, home=tmp_path)
    assert code == 1 and len(shown) == 1, shown
    assert shown[0].startswith(f"error: {path}: ")
    assert all(fragment in shown[0] for fragment in fragments), shown[0]
    assert [p for p in files_under(tmp_path) if not p.startswith("cache")] == before


def test_convert_onto_a_full_disk(checkpoint: Path, tmp_path: Path) -> None:
    destination = tmp_path / "m.safetensors"
    destination.write_bytes(b"the previous model")
    before = files_under(tmp_path)
    code, shown = run_limited(
        64 * 1024, resource.RLIMIT_FSIZE, "convert", checkpoint, "-o", destination, "--force",
        home=tmp_path,
    )  # fmt: skip
    assert code == 1 and len(shown) == 1, shown
    assert shown[0].startswith(f"error: {destination}: cannot write the file")
    assert "File too large" in shown[0]
    assert destination.read_bytes() == b"the previous model"
    assert files_under(tmp_path) == before


def test_download_onto_a_full_disk(tmp_path: Path) -> None:
    source = write_official_checkpoint(tmp_path / "official.pth")
    code, shown = run_limited(
        64 * 1024, resource.RLIMIT_FSIZE, "download", source, "--cache-name", "m", home=tmp_path
    )
    assert code == 1 and len(shown) == 1, shown
    assert shown[0].startswith(f"error: {source}: cannot copy the file into the cache")
    cache = tmp_path / "cache"
    assert [p for p in files_under(cache) if not p.startswith(".partial/")] == [".partial"]
    assert [p for p in files_under(cache / ".partial")] == []


# --- s2f download and s2f models: a cache that cannot be used ---------------------------------


def test_cache_location_is_a_file(home: Home) -> None:
    home.cache.write_text("not a folder")
    source = write_official_checkpoint(home.inputs / "official.pth")
    for args in (["download", source], ["models"], ["models", "--json"]):
        assert_one_error_line(s2f(*args), 1, str(home.cache), "cannot use this cache folder")
    assert home.cache.read_text() == "not a folder"


def test_partial_area_is_a_file(home: Home) -> None:
    home.cache.mkdir()
    (home.cache / ".partial").write_text("in the way")
    source = write_official_checkpoint(home.inputs / "official.pth")
    result = s2f("download", source)
    assert_one_error_line(result, 1, "cannot use this cache folder", ".partial")
    assert files_under(home.cache) == [".partial"]


def test_cached_name_taken_by_a_folder(home: Home) -> None:
    taken = home.cache / "models" / "m.safetensors"
    taken.mkdir(parents=True)
    model = write_model_file(home.inputs / "m.safetensors")
    assert_one_error_line(s2f("download", model), 1, str(taken), "cannot write the file")
    source = write_official_checkpoint(home.inputs / "m.pth")
    assert_one_error_line(s2f("download", source), 1, str(taken), "cannot write the file")
    assert home.finals() == ["models/m.safetensors"] and home.partials() == []
    assert os.listdir(taken) == []


@pytest.mark.parametrize(
    "index", ["folder", "{not json", "[" * 10**5], ids=["folder", "not-json", "nested-1e5-deep"]
)
def test_unreadable_cache_index(home: Home, index: str) -> None:
    home.cache.mkdir()
    if index == "folder":
        (home.cache / "index.json").mkdir()
    else:
        (home.cache / "index.json").write_text(index)
    assert_one_error_line(s2f("models"), 1, "index.json", "unreadable cache index")


def test_unreadable_cached_file(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached file this user may not read (simulated: the tests run as any user, root too)."""
    cached = home.cache / "models" / "mine.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")

    def refuse(path: Path) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sys.modules["spike2former.weights.catalog"], "sha256_file", refuse)
    result = s2f("models")
    assert_one_error_line(result, 1, str(cached), "cannot read the cached file", "Permission")
