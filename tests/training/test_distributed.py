"""Two gloo processes under torchrun update the network exactly as one process does on the same
global batch: ``helpers.ddp_reference`` says what that one process has to reproduce (averaged
gradients, the averaged mask count, BatchNorm per process with rank 0's statistics kept).

The launcher's variables are checked before a group is joined (each bad one is a usage error,
named in one line, for every command), and a process whose peer dies stops with one line instead
of the backend's trace.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist
from typer.testing import CliRunner

from s2f_cli.app import app
from spike2former.training import TrainJob, evaluate
from spike2former.training.distributed import (
    DistributedError,
    ProcessGroupError,
    group_failure,
    init_distributed,
)
from tests.cli.assertions import assert_one_error_line, lines
from tests.training.helpers import (
    REPO,
    assert_same_tensors,
    cli_env,
    ddp_reference,
    free_port,
    kill_when,
    quick_args,
    read_tensors,
    run_torchrun,
    state_of,
    write_shapes_dataset,
    write_small_model,
)

LAUNCHER = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
GROUP = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "LOCAL_RANK": "0"}
# Launcher variables no process group can be made of, and what the line about them says.
BAD_LAUNCHES = [
    ({"RANK": "abc", "WORLD_SIZE": "2", **GROUP}, "RANK='abc' in the environment is not a number"),
    ({"RANK": "0", "WORLD_SIZE": "two", **GROUP}, "WORLD_SIZE='two'"),
    ({"RANK": "2", "WORLD_SIZE": "2", **GROUP}, "need 0 <= RANK < WORLD_SIZE"),
    ({"RANK": "0", "WORLD_SIZE": "0", **GROUP}, "need 0 <= RANK < WORLD_SIZE"),
    ({"RANK": "0", **GROUP}, "RANK and WORLD_SIZE must be set together"),
    ({"RANK": "0", "WORLD_SIZE": "2", **GROUP, "LOCAL_RANK": "x"}, "LOCAL_RANK='x'"),
    ({"RANK": "0", "WORLD_SIZE": "2", **GROUP, "LOCAL_RANK": "-1"}, "need LOCAL_RANK >= 0"),
    ({"RANK": "0", "WORLD_SIZE": "2", **GROUP, "LOCAL_WORLD_SIZE": "x"}, "LOCAL_WORLD_SIZE='x'"),
    ({"RANK": "0", "WORLD_SIZE": "2", **GROUP, "MASTER_PORT": "abc"}, "not a TCP port"),
    ({"RANK": "0", "WORLD_SIZE": "2", **GROUP, "MASTER_PORT": "70000"}, "not a TCP port"),
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "MASTER_ADDR and MASTER_PORT"),
]
# The cases that concern the process group, which ``s2f segment`` does not join.
GROUP_ONLY = ("not a TCP port", "MASTER_ADDR and MASTER_PORT")


def launched(variables: dict[str, str]) -> dict[str, str | None]:
    """An environment with exactly ``variables`` of the launcher's (the others unset)."""
    return {name: variables.get(name) for name in LAUNCHER}


ITERS = 3


def test_two_gloo_processes_match_one_process(tmp_path: Path, one_thread: None) -> None:
    data = write_shapes_dataset(tmp_path / "data", train=4, val=3)
    model_file = write_small_model(tmp_path / "start.safetensors")
    run = tmp_path / "ddp"
    args = quick_args(model_file, data, run, ITERS, 1)
    result = run_torchrun(2, args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(run)  # rank 0 alone prints
    saved = json.loads((run / "config.json").read_text())
    assert (saved["processes"], saved["total_batch_size"]) == (2, 2)

    job = TrainJob.from_dict(saved["job"])
    expected = ddp_reference(model_file, job, world_size=2)
    assert_same_tensors(state_of(expected), read_tensors(run / "weights" / "last.safetensors"))
    # validation: 3 images split 2 + 1 over the processes, areas summed with all_reduce
    expected.config = expected.config.replace(test_size=saved["model"]["test_size"])
    scores = evaluate(expected, job.data.build(job.data.val_split))
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (val,) = [record for record in logged if record["event"] == "val"]
    assert (val["mIoU"], val["mAcc"], val["aAcc"]) == (scores.mIoU, scores.mAcc, scores.aAcc)


@pytest.mark.parametrize(("variables", "fragment"), BAD_LAUNCHES)
def test_bad_launcher_variables_stop_train_and_segment(
    tmp_path: Path, variables: dict[str, str], fragment: str
) -> None:
    data = write_shapes_dataset(tmp_path / "data", train=2, val=1, size=32)
    model = write_small_model(tmp_path / "small.safetensors")
    env = launched(variables)
    commands = [quick_args(model, data, tmp_path / "run", 1, 1)]
    if not any(part in fragment for part in GROUP_ONLY):
        commands.append(
            ["segment", str(data / "images"), "-m", str(model), "-o", str(tmp_path / "seg")]
        )
    for args in commands:
        result = CliRunner(env=env).invoke(app, list(map(str, args)))
        assert_one_error_line(result, 2, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "small.safetensors"]


def test_one_process_joins_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in launched({"RANK": "0", "WORLD_SIZE": "1"}).items():
        monkeypatch.delenv(name, raising=False) if value is None else monkeypatch.setenv(
            name, value
        )
    context = init_distributed("cpu")
    assert (context.rank, context.world_size, context.distributed) == (0, 1, False)
    assert not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "port")
    with pytest.raises(DistributedError, match="MASTER_PORT='port'"):
        init_distributed("cpu")


def test_backend_errors_of_a_lost_peer_become_one_line() -> None:
    gloo = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
        "[127.0.0.1]:31872: Connection reset by peer. This is typically caused by a remote "
        "worker hanging or bugs in the application."
    )
    assert group_failure(gloo) is None  # no group: not a peer's doing
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        lost = group_failure(gloo)
        assert isinstance(lost, ProcessGroupError)
        assert str(lost) == (
            "another process of the group died or can no longer be reached, so this one stops "
            "too (Connection reset by peer)"
        )
        store = dist.DistStoreError(
            "[/pytorch/torch/csrc/distributed/c10d/TCPStore.cpp:120] timeout\nmore"
        )
        assert "(timeout)" in str(group_failure(store))
        assert group_failure(RuntimeError("shape mismatch")) is None
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("victim", [0, 1], ids=["rank0", "rank1"])
def test_the_survivor_of_a_killed_peer_says_so_in_one_line(tmp_path: Path, victim: int) -> None:
    """Two training processes as srun starts them (no torchrun agent to stop the survivor):
    ``kill -9`` of one, once training runs, and the other ends with one line and exit 1."""
    data = write_shapes_dataset(tmp_path / "data", train=4, val=0, size=32)
    model = write_small_model(tmp_path / "small.safetensors")
    run = tmp_path / "run"
    args = quick_args(model, data, run, 5000, 1, "--val-split", "none")
    args += ["--checkpoint-interval", "10000", "--log-interval", "10000"]
    port = str(free_port())
    processes = []
    for rank in range(2):
        env = dict(cli_env(), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
        env.update(LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "s2f_cli", *args],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    survivor = processes[1 - victim]
    try:
        kill_when(processes[victim], run / "checkpoint" / "state.pt")
        stdout, stderr = survivor.communicate(timeout=120)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.communicate()
    assert survivor.returncode == 1, stderr
    assert lines(stdout) == [] and "Traceback" not in stderr
    [line] = lines(stderr)
    assert line.startswith(
        "error: another process of the group died or can no longer be reached, so this one "
        "stops too (Connection "
    ), line
