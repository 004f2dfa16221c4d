"""Dataset evaluation with predictions the test controls, against a hand-computed confusion
matrix; whole-image and sliding-window inference; ``s2f eval`` output and errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner, Result

import s2f_cli.evaluate as eval_cli
from s2f_cli.app import app
from spike2former.config import ModelConfig
from spike2former.inference.preprocess import MEAN_RGB, STD_RGB
from spike2former.training import DataSpec, evaluate
from spike2former.training.evaluate import default_stride, slide_scores, whole_scores
from tests.cli.assertions import assert_one_error_line
from tests.helpers import small_config

NAMES = ("sky", "tree", "road", "boat")
# Two images (2x4 and 3x3): labels (255 = ignore) and the predictions painted into them.
LABELS = [
    np.array([[0, 0, 1, 1], [2, 2, 255, 255]]),
    np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0]]),
]
PREDICTIONS = [
    np.array([[0, 1, 1, 1], [2, 0, 2, 0]]),
    np.array([[1, 1, 1], [1, 1, 0], [0, 0, 2]]),
]
# Confusion over the 15 valid pixels (label rows, prediction columns):
#   sky  [3, 1, 1, 0]   tree [1, 7, 0, 0]   road [1, 0, 1, 0]   boat: never labelled or predicted
# intersection [3, 7, 1, 0], label area [5, 8, 2, 0], predicted area [5, 8, 2, 0],
# union = predicted + label - intersection = [7, 9, 3, 0]
IOU = [300 / 7, 700 / 9, 100 / 3, math.nan]
ACC = [60.0, 87.5, 50.0, math.nan]
MIOU = (300 / 7 + 700 / 9 + 100 / 3) / 3  # boat is left out (NaN)
MACC = (60.0 + 87.5 + 50.0) / 3
AACC = 100 * 11 / 15
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class PaintedPredictor(nn.Module):
    """A stand-in network: predicts at every pixel the class painted into the red channel
    (red = 60 × class), with mask logits at the input resolution."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.anchor = nn.Parameter(torch.zeros(()))  # device and dtype, as a real network

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        classes = self.config.head.num_classes
        red = images[:, 0] * STD_RGB[0] + MEAN_RGB[0]
        painted = torch.round(red / 60).long().clamp(0, classes - 1)  # [B, H, W]
        masks = nn.functional.one_hot(painted, classes).permute(0, 3, 1, 2).float()
        class_logits = torch.full((images.shape[0], classes, classes + 1), -30.0)
        class_logits[:, range(classes), range(classes)] = 30.0  # query q says class q
        return {"class_logits": class_logits, "mask_logits": 60 * masks - 30}


@pytest.fixture
def dataset_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for index, (label, prediction) in enumerate(zip(LABELS, PREDICTIONS, strict=True)):
        image = np.zeros((*label.shape, 3), np.uint8)
        image[..., 0] = 60 * prediction  # RGB red channel
        for folder, array in (("images", image[..., ::-1]), ("annotations", label)):
            path = root / folder / "val" / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), np.ascontiguousarray(array).astype(np.uint8))
    (root / "classes.txt").write_text("\n".join(NAMES))
    return root


@pytest.fixture
def stub() -> PaintedPredictor:
    # test_size 0: images are fed at their own size, so the painted classes reach the network
    return PaintedPredictor(small_config(head={"num_classes": 4}, test_size=0, class_names=NAMES))


def check_scores(scores: object) -> None:
    assert scores.aAcc == pytest.approx(AACC)  # type: ignore[attr-defined]
    assert scores.mIoU == pytest.approx(MIOU)  # type: ignore[attr-defined]
    assert scores.mAcc == pytest.approx(MACC)  # type: ignore[attr-defined]
    assert scores.per_class_iou[:3] == pytest.approx(IOU[:3])  # type: ignore[attr-defined]
    assert scores.per_class_acc[:3] == pytest.approx(ACC[:3])  # type: ignore[attr-defined]
    assert math.isnan(scores.per_class_iou[3]) and math.isnan(scores.per_class_acc[3])  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_metrics_against_the_hand_computed_confusion(
    dataset_root: Path, stub: PaintedPredictor, mode: str
) -> None:
    dataset = DataSpec.of("folder", dataset_root).build("val")
    seen: dict[str, np.ndarray] = {}
    scores = evaluate(
        stub,
        dataset,
        mode=mode,  # type: ignore[arg-type]
        crop_size=(2, 2),
        stride=(1, 1),
        on_prediction=lambda name, labels: seen.__setitem__(name, labels),
    )
    check_scores(scores)
    assert scores.class_names == NAMES
    for index, prediction in enumerate(PREDICTIONS):
        assert np.array_equal(seen[str(index)], prediction)


def test_predictions_are_resized_to_the_label_size(
    dataset_root: Path, stub: PaintedPredictor
) -> None:
    # a 2x4 image at test size 4 runs at 4x8; the scores come back to 2x4 before the arg-max
    dataset = DataSpec.of("folder", dataset_root).build("val")
    shapes = []
    evaluate(stub, dataset, test_size=4, on_prediction=lambda n, p: shapes.append(p.shape))
    assert shapes == [(2, 4), (3, 3)]


def test_slide_windows_cover_the_image_like_mmseg() -> None:
    calls: list[tuple[int, int]] = []

    class Recorder(nn.Module):
        def forward(self, images: Tensor) -> dict[str, Tensor]:
            calls.append(tuple(images.shape[-2:]))
            batch, _, height, width = images.shape
            return {
                "class_logits": torch.zeros(batch, 1, 3),
                "mask_logits": images[:, :1].expand(batch, 1, height, width),
            }

    images = torch.randn(1, 3, 10, 7)
    scores = slide_scores(Recorder(), images, (4, 4), (3, 3))
    # rows: ceil((10 - 4) / 3) + 1 = 3 windows, cols: ceil((7 - 4) / 3) + 1 = 2 windows
    assert calls == [(4, 4)] * 6
    # every window sees the same per-pixel function, so the average equals the whole image's
    torch.testing.assert_close(scores, whole_scores(Recorder(), images))
    assert default_stride((512, 512)) == (341, 341)


def run_eval(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["eval", *map(str, args)])


@pytest.fixture
def patched_cli(monkeypatch: pytest.MonkeyPatch, stub: PaintedPredictor) -> None:
    monkeypatch.setattr(eval_cli, "model_path", lambda spec, offline=False: Path(spec))
    monkeypatch.setattr(eval_cli, "load_model", lambda path, device="cpu": stub)


def test_eval_json(dataset_root: Path, patched_cli: None, tmp_path: Path) -> None:
    predictions = tmp_path / "predictions"
    result = run_eval(
        "--model", "stub", "--data", dataset_root, "--format", "folder", "--json",
        "-o", predictions,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report) == ["mIoU", "mAcc", "aAcc", "per_class"]
    assert report["mIoU"] == pytest.approx(MIOU, abs=1e-4)
    assert report["mAcc"] == pytest.approx(MACC, abs=1e-4)
    assert report["aAcc"] == pytest.approx(AACC, abs=1e-4)
    assert list(report["per_class"]) == list(NAMES)
    assert report["per_class"]["tree"] == {"IoU": pytest.approx(700 / 9, abs=1e-4), "Acc": 87.5}
    assert report["per_class"]["boat"] == {"IoU": None, "Acc": None}
    for index, prediction in enumerate(PREDICTIONS):
        saved = cv2.imread(str(predictions / f"{index}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(saved, prediction)


def test_eval_table(dataset_root: Path, patched_cli: None) -> None:
    result = run_eval("--model", "stub", "--data", dataset_root, "--format", "folder")
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.stdout)
    assert re.search(r"tree\s+│\s+77\.78\s+│\s+87\.50", text), text
    assert re.search(r"boat\s+│\s+n/a\s+│\s+n/a", text)
    assert re.search(rf"mIoU\s+│\s+{MIOU:.2f}", text)
    assert "2 images" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--format", "kitti"], "'kitti' is not one of 'ade20k'"),
        (["--format", "folder", "--mode", "tiles"], "'tiles' is not one of 'whole', 'slide'"),
        (["--format", "folder", "--window", "64"], "apply to --mode slide"),
        (["--format", "folder", "--mode", "slide", "--stride", "0"], "--stride takes S or HxW"),
        (["--format", "folder", "--mode", "slide"], "give --window for --mode slide"),
    ],
)
def test_eval_usage_errors(
    dataset_root: Path, patched_cli: None, args: list[str], fragment: str
) -> None:
    result = run_eval("--model", "stub", "--data", dataset_root, *args)
    assert_one_error_line(result, 2, fragment)


def test_eval_missing_data_and_split(dataset_root: Path, patched_cli: None, tmp_path: Path) -> None:
    missing = run_eval("--model", "stub", "--data", tmp_path / "nope", "--format", "folder")
    assert missing.exit_code == 2 and "no such directory" in missing.stderr
    split = run_eval(
        "--model", "stub", "--data", dataset_root, "--format", "folder", "--split", "x"
    )
    assert split.exit_code == 1 and "does not exist (splits found: val)" in split.stderr
    assert len([line for line in split.stderr.splitlines() if line.strip()]) == 1
