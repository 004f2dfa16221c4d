"""``s2f segment`` spread over processes: torchrun, ``--shard K/N``, ``--skip-existing``.

The inputs are the example scenes at several sizes (the bundled model finds objects in them, so
label maps hold several classes), two bad files and a short video; the network runs at a small
input size to stay fast. Every sharded result is compared with one process's: label maps and
overlays byte for byte, summary records field for field (timings aside).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from tests.cli.assertions import assert_one_error_line
from tests.training.helpers import cli_env, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAST = ("--imgsz", "64", "--threads", "1", "-q")
TIMEOUT = 240


def segment(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(app, ["segment", *map(str, args)])


def child_env() -> dict[str, str]:
    return {k: v for k, v in cli_env().items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scenes of mixed sizes, a corrupt and an empty file, and a 4-frame video."""
    folder = tmp_path_factory.mktemp("inputs")
    scenes = [cv2.imread(str(path)) for path in sorted(EXAMPLES.glob("scene_*.jpg"))]
    sizes = [(96, 128), (80, 80), (100, 70), (64, 150), (120, 90), (72, 110)]
    for i, (height, width) in enumerate(sizes):
        scene = cv2.resize(scenes[i % len(scenes)], (width, height), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"scene{i}.{'png' if i % 2 else 'jpg'}"), scene)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    for scene in scenes:
        writer.write(cv2.resize(scene, (96, 64), interpolation=cv2.INTER_AREA))
    writer.release()
    return folder


@pytest.fixture(scope="module")
def single(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What one process writes."""
    out = tmp_path_factory.mktemp("single") / "out"
    result = segment(inputs, "-o", out, *FAST)
    assert result.exit_code == 3, result.output  # two bad files
    return out


def records(out: Path) -> list[dict]:
    """The summary's records without timings, file paths relative to ``out``."""
    summary = json.loads((out / "summary.json").read_text())
    return [comparable(record, out) for record in summary["records"]]


def comparable(record: dict, out: Path) -> dict:
    kept = {k: v for k, v in record.items() if k != "timings_ms"}
    kept["files"] = [str(Path(f).relative_to(out)) for f in record.get("files", [])]
    return kept


def result_files(out: Path) -> dict[str, bytes]:
    """Every visible file under ``out`` but the summary, by relative path."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "summary.json" and ".s2f-shards" not in p.parts
    }


def hidden(out: Path) -> list[str]:
    """Temporaries (hidden names) anywhere under ``out``, the shares' record folder aside."""
    return [
        p.relative_to(out).as_posix()
        for p in out.rglob(".*")
        if p.name != ".s2f-shards" and ".s2f-shards" not in p.parent.parts
    ]


def test_the_inputs_give_varied_label_maps(single: Path) -> None:
    """The comparison below would prove little on uniform maps."""
    several = [r for r in records(single) if len(r.get("classes", [])) >= 2]
    assert len(several) >= 3, records(single)
    assert [r["status"] for r in records(single)].count("error") == 2


def test_shards_in_turn_equal_one_process(inputs: Path, single: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = segment(inputs, "-o", out, "--shard", "0/2", *FAST)
    assert not (out / "summary.json").exists()  # share 1 not done yet
    second = segment(inputs, "-o", out, "--shard", "1/2", *FAST)
    assert {first.exit_code, second.exit_code} <= {0, 3}
    assert records(out) == records(single)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["shards"], summary["inputs"], summary["failed"]) == (2, 9, 2)
    assert result_files(out) == result_files(single)
    assert hidden(out) == []


def test_torchrun_two_processes_equal_one(inputs: Path, single: Path, tmp_path: Path) -> None:
    """Two gloo CPU processes under torchrun: same files, same summary, and rank 0 prints the
    whole job's records in input order."""
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", str(free_port()), "-m", "s2f_cli",
        "segment", str(inputs), "-o", str(out), "--json", "--imgsz", "64",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=child_env())
    # Some inputs failed: rank 0 exits 3, which torchrun reports with its own traceback.
    workers, launcher = done.stderr.split("failed (exitcode: 3) local_rank: 0", 1)
    assert done.returncode != 0 and "ChildFailedError" in launcher
    assert "Traceback" not in workers, workers
    assert sorted(line for line in workers.splitlines() if line.startswith("error:")) == [
        f"error: {inputs / 'broken.jpg'}: not an image, or a corrupt/truncated one",
        f"error: {inputs / 'empty.png'}: empty file",
    ]
    streamed = [comparable(json.loads(line), out) for line in done.stdout.splitlines()]
    assert streamed == records(single)
    assert records(out) == records(single)
    assert result_files(out) == result_files(single)
    assert hidden(out) == []


def test_skip_existing_after_kill_completes_the_job(
    inputs: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Share 1 killed (-9) mid-run; its rerun with --skip-existing reuses what was complete,
    computes the rest, and the merged result equals one uninterrupted process."""
    many = tmp_path / "many"
    many.mkdir()
    scene = cv2.imread(str(EXAMPLES / "scene_1.jpg"))
    for i in range(40):
        crop = scene[i : i + 200, 2 * i : 2 * i + 260]
        cv2.imwrite(str(many / f"s{i:02d}.png"), cv2.resize(crop, (80, 64)))
    reference = tmp_path_factory.mktemp("reference") / "out"
    assert segment(many, "-o", reference, *FAST).exit_code == 0
    out = tmp_path / "out"
    assert segment(many, "-o", out, "--shard", "0/2", *FAST).exit_code == 0
    journal = out / ".s2f-shards" / "1-of-2.jsonl"
    victim = subprocess.Popen(
        [sys.executable, "-m", "s2f_cli", "segment", many, "-o", out, "--shard", "1/2", *FAST],
        env=child_env(),
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (journal.exists() and journal.read_text().count("\n") >= 3):
            assert victim.poll() is None, "finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        victim.kill()
    finished_before = journal.read_text().count("\n")
    assert 3 <= finished_before < 20
    assert not (out / "summary.json").exists()

    rerun = segment(many, "-o", out, "--shard", "1/2", "--skip-existing", "--imgsz", "64")
    assert rerun.exit_code == 0, rerun.output
    reused = rerun.stderr.count("(complete from an earlier run)")
    assert finished_before - 1 <= reused <= finished_before  # the last line may be torn
    assert records(out) == records(reference)
    assert result_files(out) == result_files(reference)
    assert hidden(out) == []


def test_skip_existing_redoes_incomplete_and_changed_outputs(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    segment(inputs, "-o", out, *FAST)
    (out / "scene2_overlay.jpg").unlink()
    (out / ".scene3.png.abcd1234.tmp").write_bytes(b"left by a killed process")
    again = segment(inputs, "-o", out, "--skip-existing", "--imgsz", "64", "--threads", "1")
    assert again.exit_code == 3
    redone = [line for line in again.stderr.splitlines() if "earlier run" not in line]
    assert [line.split(":")[0] for line in redone if line.startswith(str(inputs))] == [
        str(inputs / "scene2.jpg")
    ]
    assert sum("error:" in line for line in redone) == 2  # bad files are tried again
    assert (out / "scene2_overlay.jpg").exists()
    assert hidden(out) == []
    # asking for another kind of output makes every input incomplete
    json_too = segment(inputs, "-o", out, "--skip-existing", "--save", "mask,json", *FAST)
    assert json_too.exit_code == 3
    assert (out / "scene0.json").exists()
    assert "earlier run" not in json_too.stderr


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (("--shard", "2/2"), None, "K must be 0 to N-1"),
        (("--shard", "1of2"), None, "use K/N"),
        (("--shard", "0/2", "-o", "x.png"), None, "-o FILE and -o - take exactly one"),
        (("--shard", "0/2"), None, "give it with -o FOLDER"),
        (("--shard", "0/2", "-o", "out"), {"RANK": "1", "WORLD_SIZE": "2"}, "use one or the other"),
        (("-o", "out"), {"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x'"),
        (("-o", "out"), {"RANK": "0"}, "RANK and WORLD_SIZE must be set together"),
        (("-o", "out"), {"RANK": "3", "WORLD_SIZE": "2"}, "need 0 <= RANK < WORLD_SIZE"),
        (("--skip-existing",), None, "--skip-existing continues an earlier run"),
    ],
)
def test_bad_sharding_is_one_usage_line(
    inputs: Path, tmp_path: Path, args: tuple[str, ...], env: dict[str, str] | None, fragment: str
) -> None:
    os.chdir(tmp_path)
    result = segment(inputs, *args, *FAST, env=env)
    assert_one_error_line(result, 2, fragment)
    assert not (tmp_path / "out").exists()


def test_stdin_is_not_split(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["segment", "-", "-o", str(tmp_path / "out"), "--shard", "0/2", *FAST], input=b""
    )
    assert_one_error_line(result, 2, "stdin (-) cannot be split")


def test_environment_share_takes_every_nth_input(inputs: Path, tmp_path: Path) -> None:
    """RANK/WORLD_SIZE without torchrun (a scheduler's array job): the share is theirs and the
    process prints its own records."""
    out = tmp_path / "out"
    result = segment(inputs, "-o", out, "--json", *FAST, env={"RANK": "1", "WORLD_SIZE": "3"})
    assert result.exit_code == 0, result.output
    every = sorted(p.name for p in inputs.iterdir())
    printed = [Path(json.loads(line)["path"]).name for line in result.stdout.splitlines()]
    assert printed == every[1::3]
    assert not (out / "summary.json").exists()  # shares 0 and 2 not run
