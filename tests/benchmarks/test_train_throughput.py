"""``benchmarks/train_throughput.py``: both cases on a tiny network, the largest-batch search,
and its refusal on a CPU."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "train_throughput.py"
sys.path.insert(0, str(BENCHMARKS))
train_throughput = importlib.import_module("train_throughput")


def _throughput(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("limit", [0, 1, 2, 3, 13, 64, 100])
def test_search_finds_the_largest_batch_that_fits(limit: int) -> None:
    tried: list[int] = []

    def fits(batch: int) -> bool:
        tried.append(batch)
        return batch <= limit

    assert train_throughput.search_largest(2, fits) == limit
    assert len(tried) == len(set(tried)) <= 2 * max(limit, 2).bit_length() + 1


def test_both_cases_one_json_line_each() -> None:
    done = _throughput(
        "--compare-official", "--preset", "tiny", "--size", "64", "--batch", "1",
        "--warmup", "0", "--iters", "1", "--threads", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["case"] for line in lines] == ["s2f", "official"]
    for line in lines:
        assert line["device"] == "cpu" and line["input"] == [1, 3, 64, 64]
        assert line["seconds_per_step"] > 0 and line["peak_rss_mib"] > 0
        assert "peak_device_mib" not in line
    s2f, official = lines
    assert s2f["lean"]["compact_spikes"] and not official["lean"]["compact_spikes"]
    assert s2f["loss"] == pytest.approx(official["loss"], rel=1e-3)


def test_largest_batch_search_needs_a_gpu() -> None:
    done = _throughput("--largest-batch", "--preset", "tiny")
    assert done.returncode == 2
    assert "--largest-batch needs --device cuda" in done.stderr
