"""``benchmarks/fashion_recipe.sh`` end to end on tiny sets (two iterations a stage): the run
folders, the test score, a rerun that only confirms, the conventional network throughout, and
a refusal of an unknown network kind. Needs ``dataset-fashion-mnist`` and ``opencv-doc``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "fashion_recipe.sh"
sys.path.insert(0, str(BENCHMARKS))
fashion_scenes = pytest.importorskip("fashion_scenes")


def _recipe(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRETRAIN_ITERS": "2", "SEG_ITERS": "2", "THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this venv's s2f
    return subprocess.run(
        ["bash", str(SCRIPT), str(work), *args],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (fashion_scenes.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    if not (fashion_scenes.OPENCV_EXAMPLES_DIR / fashion_scenes.OPENCV_TRAIN_PHOTOS[0]).is_file():
        pytest.skip("opencv-doc photos not installed: apt-get install opencv-doc")
    root = tmp_path_factory.mktemp("recipe")
    # small sets in place of the full ones the script would build
    python = sys.executable
    subprocess.run(
        [python, str(BENCHMARKS / "fashion_scenes.py"), str(root / "scenes"), "--train", "4",
         "--val", "2", "--test", "2", "--size", "256", "--seed", "0"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    subprocess.run(
        [python, str(BENCHMARKS / "fashion_products.py"), str(root / "products"), "--train",
         "130", "--val", "10", "--size", "32", "--seed", "0"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return root


def test_conventional_recipe_runs_through_and_a_rerun_only_confirms(work: Path) -> None:
    first = _recipe(work, "conventional")
    assert first.returncode == 0, first.stderr
    segmenter = work / "runs" / "seg-conventional"
    assert first.stdout.splitlines()[-1] == "runs/seg-conventional/test.json"
    scores = json.loads((segmenter / "test.json").read_text())
    assert 0 <= scores["mIoU"] <= 100 and "background" in scores["per_class"]
    for run in ("pretrain-conventional", "seg-conventional"):
        config = json.loads((work / "runs" / run / "config.json").read_text())
        conventional = config["job"].get("conventional", config["job"].get("init", {}))
        assert conventional is True or conventional.get("conventional") is True
    weights = (segmenter / "weights" / "last.safetensors").read_bytes()
    again = _recipe(work, "conventional")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("The run is complete") == 2
    assert (segmenter / "weights" / "last.safetensors").read_bytes() == weights


def test_an_unknown_network_kind_is_refused(tmp_path: Path) -> None:
    result = _recipe(tmp_path / "work", "quantum")
    assert result.returncode == 2
    assert "spiking or conventional" in result.stderr
    assert not (tmp_path / "work").exists()


def test_error_breakdown_agrees_with_eval(work: Path) -> None:
    """``fashion_errors.py`` scores what ``s2f eval`` scores, and its breakdown adds up."""
    scenes = str(work / "scenes")
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fashion_errors.py"), "s2f-tiny-fashion", scenes,
         "--threads", "1"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(run.stdout)
    s2f = Path(sys.executable).parent / "s2f"
    evaluated = subprocess.run(
        [str(s2f), "eval", "--data", scenes, "--format", "folder", "--split", "test", "--json",
         "--threads", "1"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert report["mIoU"] == round(json.loads(evaluated.stdout)["mIoU"], 2)  # the same network
    confusion = report["confusion"]
    assert len(confusion) == len(report["class_names"]) == 11
    assert sum(map(sum, confusion)) == report["scenes"] * 256 * 256 == 2 * 256 * 256
    assert report["mIoU_right_classes"] >= report["mIoU"]
    assert 0 <= report["object_accuracy"] <= report["object_found"] <= 100
    objects = (work / "scenes" / "objects.csv").read_text().splitlines()
    assert 0 < report["objects"] <= sum(line.startswith("test,") for line in objects)


def test_study_table_reads_the_runs(work: Path, tmp_path: Path) -> None:
    """``fashion_study.py`` puts each finished stage's numbers in its network's row, says
    "not run" for the rest, and draws the curves of the stages that ran."""
    assert _recipe(work, "conventional").returncode == 0
    seg = work / "runs" / "seg-conventional"
    (seg / "errors.json").write_text(json.dumps({"foreground_iou": 12.345, "object_accuracy": 6.7}))
    study = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fashion_study.py"), str(work), "--plots",
         str(tmp_path / "plots")],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    lines = study.stdout.splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[2:4]}
    test_miou = json.loads((seg / "test.json").read_text())["mIoU"]
    conventional = rows["conventional"]
    assert conventional[2] == f"{test_miou:.2f}"
    assert conventional[4:6] == ["12.35", "6.70"]
    assert "(2)" in conventional[0] and "(2)" in conventional[1]  # best at the last iteration
    assert rows["spiking"][:6] == ["not run"] * 6
    for name in ("pretraining_curves.png", "segmentation_curves.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_error_breakdown_asks_the_backbone_too(work: Path) -> None:
    """``--backbone``: the pretrained classifier names the same objects the segmenter's
    object accuracy counts; a file that is no backbone is one error line."""
    assert _recipe(work, "conventional").returncode == 0
    runs = work / "runs"
    segmenter = runs / "seg-conventional" / "weights" / "best.safetensors"
    command = [sys.executable, str(BENCHMARKS / "fashion_errors.py"), str(segmenter),
               str(work / "scenes"), "--threads", "1", "--backbone-crop", "32",
               "--backbone"]  # fmt: skip
    backbone = runs / "pretrain-conventional" / "weights" / "best.safetensors"
    run = subprocess.run(
        [*command, str(backbone)], capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(run.stdout)
    assert 0 <= report["backbone_object_accuracy"] <= 100
    assert set(report["backbone_object_accuracy_per_class"]) <= set(report["class_names"][1:])
    assert report["backbone_object_accuracy_per_class"].keys() == (
        report["object_accuracy_per_class"].keys()
    )  # the same objects, so the same classes
    refused = subprocess.run(
        [*command, str(segmenter)], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and len(refused.stderr.splitlines()) == 1
    assert "not a backbone file" in refused.stderr
