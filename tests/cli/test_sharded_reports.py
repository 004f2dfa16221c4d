"""``s2f firing-rates`` and ``s2f eval`` on two gloo CPU processes under torchrun report exactly
what one process reports; without a process group to join they refuse in one line.

The model is a small random network, the images noise of mixed sizes (plus a bad file and a short
video for firing-rates), the dataset shapes of mixed sizes; every process runs one thread, as the
one-process reference does, so even the floating sums are compared for equality.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from spike2former import save_model
from tests.cli.assertions import assert_one_error_line, lines
from tests.helpers import make_model, random_rgb, small_config, write_image, write_video
from tests.training.helpers import REPO, cli_env, shapes_sample

TIMEOUT = 180
ONE_THREAD = ("--threads", "1")
LAUNCHER = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
NO_GROUP = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": None, "MASTER_PORT": None}
IMAGE_SIZES = [(40, 56), (48, 32), (36, 60), (44, 44), (32, 48)]
LABEL_SIZES = [(48, 64), (56, 40), (44, 44), (60, 52), (40, 72)]


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """The in-process runs set torch's thread count; give the rest of the session its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def invoke(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner(env=env).invoke(app, [*map(str, args)])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``s2f ARGS`` on two processes of this machine; killed, workers too, if not done in time."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", str(free_port()), "-m", "s2f_cli", *map(str, args),
    ]  # fmt: skip
    env = {k: v for k, v in cli_env().items() if k not in LAUNCHER}
    launcher = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = launcher.communicate(timeout=TIMEOUT)
    finally:
        _stop(launcher)
    return subprocess.CompletedProcess(command, launcher.returncode, stdout, stderr)


def _stop(launcher: subprocess.Popen[str]) -> None:
    """torchrun stops its workers on SIGTERM; the workers still running after that are killed."""
    if launcher.poll() is not None:
        return
    workers = _children(launcher.pid)
    launcher.terminate()
    try:
        launcher.wait(timeout=30)
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.wait(timeout=30)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = task / "children"
        found += [int(child) for child in children.read_text().split()] if children.exists() else []
    return found


def worker_errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


# firing-rates ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(make_model(small_config()), tmp_path_factory.mktemp("model") / "m.st")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five noise images of mixed sizes, a corrupt file and a 3-frame video (one input, three
    images): the two processes take 4 inputs and 3."""
    folder = tmp_path_factory.mktemp("inputs")
    for index, (height, width) in enumerate(IMAGE_SIZES):
        suffix = "jpg" if index % 2 else "png"
        write_image(folder / f"img{index}.{suffix}", random_rgb(height, width, seed=index))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    write_video(folder / "clip.mp4", frames=3, size=(32, 40))
    return folder


def timeless(report: dict) -> dict:
    for record in report["images"]:
        record.pop("time_ms", None)
    return report


def test_firing_rates_of_two_processes_equal_one(model: Path, inputs: Path, tmp_path: Path) -> None:
    """Counts, floating sums, per-image records (input order) and failures: all equal; rank 0
    alone writes the report and the plot."""
    options = ("-m", model, "--imgsz", "0", "--energy", "--json", *ONE_THREAD)
    one = invoke("firing-rates", inputs, *options, "-o", tmp_path / "one.json")
    assert one.exit_code == 3, one.output  # the corrupt file
    plot = tmp_path / "two.png"
    two = torchrun("firing-rates", inputs, *options, "-o", tmp_path / "two.json", "--plot", plot)
    # rank 0 exits 3 as one process does, which torchrun reports with its own traceback
    workers, launcher = two.stderr.split("failed (exitcode: 3) local_rank: 0", 1)
    assert "ChildFailedError" in launcher and "Traceback" not in workers, workers
    expected = timeless(json.loads((tmp_path / "one.json").read_text()))
    actual = timeless(json.loads((tmp_path / "two.json").read_text()))
    assert actual == expected
    assert [Path(r["path"]).name for r in actual["images"]] == [
        "broken.jpg", "clip.mp4#0", "clip.mp4#1", "clip.mp4#2",
        "img0.png", "img1.jpg", "img2.png", "img3.jpg", "img4.png",
    ]  # fmt: skip
    assert (actual["settings"]["images"], actual["settings"]["failed"]) == (8, 1)
    bad = f"error: {inputs / 'broken.jpg'}: not an image, or a corrupt/truncated one"
    assert worker_errors(two) == [bad]  # once, from the process that had it
    assert lines(two.stderr).count(lines(one.stderr)[-1]) == 1  # the summary, from rank 0
    assert two.stdout == ""
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.json", "two.json", "two.png"]


def test_firing_rates_limit_over_two_processes(model: Path, inputs: Path) -> None:
    """``--limit`` takes the first inputs of the job before they are shared out (CSV on
    stdout, only from rank 0)."""
    files = [inputs / name for name in ("img0.png", "broken.jpg", "img1.jpg", "img2.png")]
    options = ("-m", model, "--imgsz", "0", "--csv", "--limit", "3", *ONE_THREAD)
    one = invoke("firing-rates", *files, *options)
    assert one.exit_code == 3, one.output
    two = torchrun("firing-rates", *files, *options)
    assert "failed (exitcode: 3) local_rank: 0" in two.stderr
    assert two.stdout == one.stdout
    assert lines(two.stderr).count("2 image(s) measured; 1 of 3 inputs failed") == 1


# eval -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five ``folder`` validation images of mixed sizes: shapes on a dark background."""
    root = tmp_path_factory.mktemp("data")
    for index, (height, width) in enumerate(LABEL_SIZES):
        image, label = shapes_sample(index, 72)
        for folder, array in (("images", image[..., ::-1]), ("annotations", label)):
            path = root / folder / "val" / f"{index:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), np.ascontiguousarray(array[:height, :width]))
    (root / "classes.txt").write_text("background\nbox\ndisc\n")
    return root


def test_eval_of_two_processes_equals_one(tmp_path: Path, dataset: Path) -> None:
    network = save_model(make_model(small_config(head={"num_classes": 3})), tmp_path / "m.st")
    options = ("--model", network, "--data", dataset, "--format", "folder", "--imgsz", "40")
    args = ("eval", *options, "--device", "cpu", "--json", *ONE_THREAD)
    one = invoke(*args)
    assert one.exit_code == 0, one.output
    expected = json.loads(one.stdout)
    assert len({score["IoU"] for score in expected["per_class"].values()}) > 1  # not degenerate
    two = torchrun(*args)
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads(two.stdout) == expected  # rank 0 alone prints


# without a process group ----------------------------------------------------------------------


def test_eval_without_master_is_one_usage_line(dataset: Path, tmp_path: Path) -> None:
    args = ("eval", "--model", tmp_path / "m.st", "--data", dataset, "--format", "folder")
    result = invoke(*args, "--device", "cpu", env=NO_GROUP)
    assert_one_error_line(result, 2, "MASTER_ADDR and MASTER_PORT", "launch with torchrun")


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        ((), NO_GROUP, "launch with torchrun (or srun with MASTER_ADDR and MASTER_PORT exported)"),
        ((), {**NO_GROUP, "MASTER_ADDR": "127.0.0.1"}, "set but not MASTER_PORT,"),
        ((), {"RANK": "0", "WORLD_SIZE": None}, "RANK and WORLD_SIZE must be set together"),
        ((), {"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
        (("-",), {**NO_GROUP, "RANK": "0"}, "stdin (-) cannot be split"),
        (("--limit", "2"), NO_GROUP, "--limit counts video frames"),
    ],
)
def test_firing_rates_without_a_group_is_one_usage_line(
    model: Path,
    inputs: Path,
    args: tuple[str, ...],
    env: dict[str, str | None],
    fragment: str,
) -> None:
    result = invoke("firing-rates", inputs, "-m", model, *args, env=env)
    assert_one_error_line(result, 2, fragment)
