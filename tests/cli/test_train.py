"""``s2f train`` through the Typer application: a short run, and one-line usage errors that leave
existing files alone."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from spike2former import load_model
from tests.cli.assertions import assert_one_error_line, lines
from tests.training.helpers import (
    CLASSES,
    quick_args,
    write_shapes_dataset,
    write_small_model,
    write_small_run_files,
)
from tests.training.test_initial import imagenet_checkpoint

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(autouse=True)
def keep_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_small_run_files(tmp_path_factory.mktemp("train"), train=2)


def train(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["train", *map(str, args)])


def one_error(result: Result, code: int, fragment: str) -> None:
    assert_one_error_line(result, code, fragment)


def test_a_short_run_and_its_folder(files: dict[str, Path], tmp_path: Path) -> None:
    imagenet_checkpoint(tmp_path / "in1k.pth")
    out = tmp_path / "run"
    args = quick_args(files["model"], files["data"], out, 2, 2, "--init-backbone")
    result = train(*args[1:], tmp_path / "in1k.pth")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint",
        "config.json",
        "metrics.jsonl",
        "weights",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["job"]["recipe"]["iters"] == 2
    assert config["job"]["data"]["root"] == str(files["data"].resolve())
    assert config["job"]["init"]["init_backbone"] == str(tmp_path / "in1k.pth")
    assert config["model"]["test_size"] == 0  # random_crop trains at the native scale
    for name in ("last", "best"):
        model = load_model(out / "weights" / f"{name}.safetensors")
        assert model.config.class_names == CLASSES
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [(json.loads(line)["event"], json.loads(line)["iter"]) for line in lines] == [
        ("train", 2),
        ("val", 2),
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--preset", "tiny", "--model", "x", "--format", "folder"], "give either --preset"),
        (["--preset", "sdtv9", "--format", "folder"], "unknown preset 'sdtv9'"),
        (["--preset", "tiny", "--format", "cocostuff9k"], "'cocostuff9k' is not one of"),
        (["--preset", "tiny"], "--data DIR and --format FORMAT are required"),
        (["--preset", "tiny", "--format", "folder", "--crop-size", "big"], "--crop-size takes"),
        (["--preset", "tiny", "--format", "folder", "--recipe", "fast"], "unknown recipe 'fast'"),
        (
            ["--preset", "tiny", "--format", "folder", "--iters", "20", "--warmup-iters", "20"],
            "--warmup-iters 20 must be less than --iters 20",
        ),
        (
            ["--preset", "tiny", "--format", "folder", "--warmup-iters", "5", "--poly-end", "5"],
            "--poly-end 5 must come after the warm-up, --warmup-iters 5",
        ),
    ],
)
def test_usage_errors(files: dict[str, Path], args: list[str], fragment: str) -> None:
    needs_data = "--preset" in args and "--format" in args
    extra = ["--data", str(files["data"])] if needs_data else []
    one_error(train(*args, *extra, "--output", str(Path("/nonexistent/never"))), 2, fragment)


def test_a_short_preset_run_scales_its_warm_up(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(
        "--preset", "tiny", "--data", files["data"], "--format", "folder", "--iters", "20",
        "--batch-size", "1", "--crop-size", "32", "--pipeline", "random_crop",
        "--val-split", "none", "--workers", "0", "--threads", "1", "--output", out, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recipe = json.loads((out / "config.json").read_text())["job"]["recipe"]
    # tiny's 100 of 4,000 warm-up iterations, in proportion: 0.5 of 20, rounded to 0
    assert (recipe["iters"], recipe["warmup_iters"], recipe["poly_end"]) == (20, 0, 20)


def test_missing_data_folder(tmp_path: Path) -> None:
    result = train("--preset", "tiny", "--data", tmp_path / "none", "--format", "folder")
    one_error(result, 2, "no such directory")


def test_more_dataset_classes_than_the_head(files: dict[str, Path], tmp_path: Path) -> None:
    args = quick_args(files["model"], files["data"], tmp_path / "run", 1, 1, "--num-classes", "2")
    one_error(
        train(*args[1:]),
        2,
        "the dataset has 3 classes but the model 2; pass --num-classes 3 to train a 3-class head",
    )
    assert not (tmp_path / "run").exists()


def test_a_missing_validation_split(files: dict[str, Path], tmp_path: Path) -> None:
    data = write_shapes_dataset(tmp_path / "data", train=2, val=0)
    args = quick_args(files["model"], data, tmp_path / "run", 1)[1:]
    message = "to train without validation, set no validation split (--val-split none)"
    one_error(train(*args), 1, message)
    assert not (tmp_path / "run").exists()


def test_a_backbone_given_as_the_model(files: dict[str, Path], tmp_path: Path) -> None:
    args = quick_args(Path("sdtv3-19m-imagenet"), files["data"], tmp_path / "run", 1)[1:]
    message = "is a backbone (ImageNet weights): give it as --init-backbone sdtv3-19m-imagenet"
    one_error(train(*args), 2, message)


def test_notes_name_the_options(files: dict[str, Path], tmp_path: Path) -> None:
    """The library's notes name its arguments; the command says its options instead."""
    imagenet_checkpoint(tmp_path / "in1k.pth")
    five = write_small_model(tmp_path / "five.safetensors", num_classes=5)
    args = quick_args(five, files["data"], tmp_path / "run", 2, 2, "--init-backbone")[1:]
    args.remove("-q")
    result = train(*args, tmp_path / "in1k.pth")
    assert result.exit_code == 0, result.output
    notes = [line for line in lines(result.stderr) if line.startswith("note: ")]
    assert notes[0] == (
        "note: the model has 5 class slots and the dataset uses 3; --num-classes 3 would train "
        "a 3-class head"
    )
    assert notes[1].startswith(f"note: --init-backbone {tmp_path / 'in1k.pth'}: ")
    assert notes[1].endswith("backbone tensors loaded; 2 classification-head tensors ignored")
    assert len(notes) == 2


def test_an_existing_run_is_never_overwritten(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("precious\n")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*")}
    one_error(train(*quick_args(files["model"], files["data"], out, 1)[1:]), 2, "already exists")
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*")} == before


def test_resume_errors(files: dict[str, Path], tmp_path: Path) -> None:
    one_error(train("--resume"), 2, "--resume continues the run given with --output RUN")
    one_error(train("--resume", "--output", tmp_path / "none"), 2, "there is no run at")
    (tmp_path / "empty").mkdir()
    one_error(train("--resume", "--output", tmp_path / "empty"), 2, "has no checkpoint to resume")
    one_error(
        train("--resume", "--output", tmp_path / "empty", "--iters", "9", "--lr", "1"),
        2,
        "has no checkpoint to resume",
    )


@pytest.fixture(scope="module")
def finished_run(
    files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[str]]:
    """The folder and the arguments of a finished two-iteration run started with ``--seed 3``."""
    out = tmp_path_factory.mktemp("resume") / "run"
    args = quick_args(files["model"], files["data"], out, 2, 2, "--seed", "3")[1:]
    result = train(*args)
    assert result.exit_code == 0, result.output
    return str(out), args


@pytest.mark.parametrize(
    "extra",
    [
        None,  # the command that started the run: every option as it was
        ["--seed", "3"],  # a run setting, given with the run's value
        ["--threads", "1", "--workers", "0", "--device", "cpu", "--offline", "-q"],  # how to run
    ],
)
def test_resume_accepts_the_run_s_settings(
    finished_run: tuple[str, list[str]], extra: list[str] | None
) -> None:
    out, started = finished_run
    args = [*started, "--resume"] if extra is None else ["--resume", "--output", out, *extra]
    result = train(*args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--seed", "0"],  # the default value, but given
            "saved settings: --seed 0 conflicts with the run's 3; leave it out, or start a new run",
        ),
        (
            ["--seed", "1", "--lr", "0.5", "--crop-size", "64"],
            "saved settings: --crop-size 64x64 conflicts with the run's 32x32, --lr 0.5 conflicts "
            "with the run's 0.001, --seed 1 conflicts with the run's 3; leave them out",
        ),
        (["--amp"], "--amp conflicts with the run (started without it); leave it out"),
        (["--val-split", "none"], "--val-split none conflicts with the run's val"),
    ],
)
def test_resume_refuses_conflicting_options_naming_them(
    finished_run: tuple[str, list[str]], extra: list[str], message: str
) -> None:
    out, _ = finished_run
    one_error(train("--resume", "--output", out, *extra), 2, message)


def test_missing_backbone_file(files: dict[str, Path], tmp_path: Path) -> None:
    args = quick_args(files["model"], files["data"], tmp_path / "run", 1)[1:]
    one_error(train(*args, "--init-backbone", tmp_path / "none.pth"), 2, "no such file")


def test_conventional_runs_train_real_valued_neurons_and_keep_them(
    files: dict[str, Path], tmp_path: Path
) -> None:
    from spike2former.modeling.neuron import SpikingNeuron

    out = tmp_path / "run"
    args = quick_args(files["model"], files["data"], out, 4, 2, "--conventional")
    first = train(*args[1:], "--backbone-lr-mult", "1")
    assert first.exit_code == 0, first.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["spiking"] is False
    assert config["job"]["recipe"]["backbone_lr_mult"] == 1.0
    assert config["job"]["init"]["conventional"] is True
    last = load_model(out / "weights" / "last.safetensors")
    assert last.config.spiking is False
    neurons = [m for m in last.modules() if isinstance(m, SpikingNeuron)]
    assert neurons and not any(neuron.quantize for neuron in neurons)
    # the spiking source model is left as it was
    assert load_model(files["model"]).config.spiking is True
    resumed = train("--resume", "--output", out, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert load_model(out / "weights" / "last.safetensors").config.spiking is False
    again = train("--resume", "--output", out, "--conventional", "-q")  # as the run was started
    assert again.exit_code == 0, again.output
