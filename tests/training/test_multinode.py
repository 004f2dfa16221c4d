"""Two nodes on one machine: two ``torchrun`` agents of one gloo process each, meeting at a
rendezvous on 127.0.0.1, train exactly as one process on the same global batch; after ``kill -9``
of either node's worker both nodes stop (neither waits on its dead peer), and ``--resume`` on both
ends with the uninterrupted weights.

Each node runs ``torchrun --nnodes 2 --nproc-per-node 1`` with either rendezvous: ``static``
(``--node-rank N --master-addr HOST --master-port PORT``; node 0 hosts the store and holds rank 0)
or ``c10d`` (``--rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID``; the ranks go to the
nodes in the order they arrive).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from spike2former.training import TrainJob
from tests.training.helpers import (
    REPO,
    assert_same_tensors,
    cli_env,
    ddp_reference,
    free_port,
    quick_args,
    read_tensors,
    state_of,
    torchrun,
    write_preset_model,
    write_shapes_dataset,
)

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")

HOST = "127.0.0.1"
WAIT = 180  # seconds a run (or a stop) may take on a busy two-core machine


def rendezvous_options(kind: str, node: int, port: int) -> list[str]:
    if kind == "static":
        return ["--node-rank", str(node), "--master-addr", HOST, "--master-port", str(port)]
    return ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"{HOST}:{port}", "--rdzv-id", "s2f-test"]


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from Linux's ``/proc``)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # fields after "(comm)": state, ppid
            children.append(int(entry.name))
    return children


class Nodes:
    """The two agents of one run; each node's stdout and stderr go to files in ``folder`` (a pipe
    left unread could block a node, and its peer with it)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.agents: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], rendezvous: str) -> None:
        port = free_port()
        for node in range(2):
            launch = ["--nnodes", "2", "--nproc-per-node", "1"]
            command = torchrun(*launch, *rendezvous_options(rendezvous, node, port))
            with open(self.folder / f"{node}.out", "wb") as out:
                with open(self.folder / f"{node}.err", "wb") as err:
                    self.agents.append(
                        subprocess.Popen(
                            [*command, "-m", "s2f_cli", *args],
                            env=cli_env(),
                            cwd=REPO,
                            stdout=out,
                            stderr=err,
                        )
                    )

    def stdout(self, node: int) -> str:
        return (self.folder / f"{node}.out").read_text()

    def errors(self) -> str:
        """The end of both nodes' stderr, for assertion messages."""
        return "\n".join(
            f"node {node}: {(self.folder / f'{node}.err').read_text()[-2000:]}" for node in range(2)
        )

    def wait(self, timeout: float = WAIT) -> list[int]:
        """Both agents' exit codes; fails the test if they take longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            return [agent.wait(max(deadline - time.monotonic(), 0)) for agent in self.agents]
        except subprocess.TimeoutExpired:
            pytest.fail(f"the nodes still run after {timeout} s\n{self.errors()}")

    def running(self) -> bool:
        return all(agent.poll() is None for agent in self.agents)

    def kill_worker(self, node: int) -> None:
        """``kill -9`` the training process of ``node`` (its agent stays)."""
        deadline = time.monotonic() + 30
        while not (workers := child_pids(self.agents[node].pid)):
            assert time.monotonic() < deadline, f"node {node} has no worker process"
            time.sleep(0.01)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """Kill every agent still running and its workers. torchrun starts each worker in a
        session of its own, so they are found by parent (the agent stopped meanwhile, so that
        it neither starts nor reaps one) and killed one by one."""
        for agent in self.agents:
            if agent.poll() is not None:
                continue
            os.kill(agent.pid, signal.SIGSTOP)
            for pid in child_pids(agent.pid):
                os.kill(pid, signal.SIGKILL)
            agent.kill()
            agent.wait(WAIT)


@contextmanager
def two_nodes(folder: Path, args: list[str], rendezvous: str = "static") -> Iterator[Nodes]:
    """``s2f`` with ``args`` on two nodes; whatever still runs at the end is killed."""
    nodes = Nodes(folder)
    try:
        nodes.start(args, rendezvous)
        yield nodes
    finally:
        nodes.kill()


def wait_for(path: Path, nodes: Nodes, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert nodes.running(), f"a node stopped before {path.name} was written\n{nodes.errors()}"
        assert time.monotonic() < deadline, f"no {path.name} within {timeout} s"
        time.sleep(0.005)


@pytest.fixture
def start(tmp_path: Path) -> tuple[Path, Path]:
    """A small dataset (4 training images: two per node and epoch) and a fresh ``tiny`` network
    for its 3 classes."""
    data = write_shapes_dataset(tmp_path / "data", train=4, val=0)
    return data, write_preset_model(tmp_path / "start.safetensors", "tiny")


def train_args(model_file: Path, data: Path, run: Path, iters: int) -> list[str]:
    """``quick_args`` at batch 1 per process, without validation (``test_distributed`` checks
    it under data parallelism): checkpoints every 2 iterations, log lines every 2."""
    return quick_args(model_file, data, run, iters, 1, "--val-split", "none")


@pytest.mark.parametrize("rendezvous", ["static", "c10d"])
def test_two_nodes_train_as_one_process(
    tmp_path: Path, start: tuple[Path, Path], one_thread: None, rendezvous: str
) -> None:
    data, model_file = start
    run = tmp_path / "run"
    with two_nodes(tmp_path / "nodes", train_args(model_file, data, run, 3), rendezvous) as nodes:
        assert nodes.wait() == [0, 0], nodes.errors()
    assert sorted(nodes.stdout(node).strip() for node in range(2)) == ["", str(run)]  # rank 0's
    saved = json.loads((run / "config.json").read_text())
    assert (saved["processes"], saved["total_batch_size"]) == (2, 2)

    expected = ddp_reference(model_file, TrainJob.from_dict(saved["job"]), world_size=2)
    assert_same_tensors(state_of(expected), read_tensors(run / "weights" / "last.safetensors"))


@pytest.mark.parametrize("victim", [0, 1], ids=["node0", "node1"])
def test_kill_9_on_one_node_then_resume_on_both(
    tmp_path: Path, start: tuple[Path, Path], one_thread: None, victim: int
) -> None:
    data, model_file = start
    run, iters = tmp_path / "run", 6
    checkpoint = run / "checkpoint"
    # Killed once checkpoint 4's weights exist: checkpoint 2 is complete by then, so the resume
    # starts at 2 or 4, wherever rank 0 (node 0, which writes) was.
    with two_nodes(tmp_path / "killed", train_args(model_file, data, run, iters)) as nodes:
        wait_for(checkpoint / "iter_00000004.safetensors", nodes)
        nodes.kill_worker(victim)
        codes = nodes.wait()  # the other node fails too, instead of waiting on its dead peer
    assert 0 not in codes, nodes.errors()
    assert not (checkpoint / f"iter_{iters:08d}.safetensors").exists()
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    assert state["iteration"] in (2, 4)

    resume = ["train", "--resume", "--output", str(run), "--workers", "0", "--threads", "1", "-q"]
    with two_nodes(tmp_path / "resumed", resume) as nodes:
        assert nodes.wait() == [0, 0], nodes.errors()
    assert [nodes.stdout(node).strip() for node in range(2)] == [str(run), ""]

    job = TrainJob.from_dict(json.loads((run / "config.json").read_text())["job"])
    expected = ddp_reference(model_file, job, world_size=2)
    assert_same_tensors(state_of(expected), read_tensors(run / "weights" / "last.safetensors"))
    # every log line once, and one checkpoint left
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r["iter"]) for r in records] == [("train", 2), ("train", 4), ("train", 6)]
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        f"iter_{iters:08d}.safetensors",
        "state.pt",
    ]
