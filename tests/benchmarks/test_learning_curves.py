"""``benchmarks/learning_curves.py``: the table and the plot of segmentation and pretraining runs,
and a refusal to put both kinds in one table."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "learning_curves.py"
sys.path.insert(0, str(BENCHMARKS))
learning_curves = importlib.import_module("learning_curves")


def _run_folder(root: Path, score: str, values: list[float]) -> Path:
    root.mkdir()
    lines = []
    for index, value in enumerate(values, start=1):
        lines.append({"iter": 10 * index, "event": "train", "lr": 1e-3, "loss": 3.0 / index})
        lines.append({"iter": 10 * index, "event": "val", score: value, f"best_{score}": value})
    (root / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def _curves(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_pretraining_runs_are_read_by_top1(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "pre", "top1", [12.5, 40.0])
    assert learning_curves.read_metrics(run) == (
        "top1", [(10, 12.5), (20, 40.0)], [(10, 3.0), (20, 1.5)]
    )  # fmt: skip


def test_table_and_plot_of_two_pretraining_runs(tmp_path: Path) -> None:
    spiking = _run_folder(tmp_path / "spiking", "top1", [12.5, 40.0, 55.0])
    conventional = _run_folder(tmp_path / "conventional", "top1", [20.0, 50.0])
    picture = tmp_path / "plots" / "curves.png"
    result = _curves(spiking, conventional, "--labels", "spk", "conv", "--plot", picture)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert rows[0] == "| iteration | spk | conv |"
    assert rows[2:5] == ["| 10 | 12.50 | 20.00 |", "| 20 | 40.00 | 50.00 |", "| 30 | 55.00 | nan |"]
    with Image.open(picture) as image:
        assert image.size[0] > 2 * learning_curves._PANEL_W


def test_segmentation_and_pretraining_runs_are_not_mixed(tmp_path: Path) -> None:
    seg = _run_folder(tmp_path / "seg", "mIoU", [10.0])
    pre = _run_folder(tmp_path / "pre", "top1", [30.0])
    result = _curves(seg, pre)
    assert result.returncode == 2
    assert "different kinds" in result.stderr


def test_a_run_that_scored_zero_and_one_decade_of_loss_is_drawn(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "seg", "mIoU", [0.0, 0.0])
    lines = (run / "metrics.jsonl").read_text().replace('"loss": 1.5', '"loss": 3.0')
    (run / "metrics.jsonl").write_text(lines)  # every loss 3.0: a single power of ten
    result = _curves(run, "--plot", tmp_path / "zero.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "zero.png").is_file()
