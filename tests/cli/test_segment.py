"""``s2f segment`` through the Typer application (and once through ``python -m s2f_cli``).

Every input is a real file made by the test; the model is a small random network saved with
``save_model``. Images are 40 x 56 and run at their native size (``--imgsz 0``) to stay fast.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from spike2former import load_model, save_model
from spike2former.inference import compiled as compiled_module
from spike2former.inference.predictor import Predictor
from spike2former.inference.sources import read_image
from tests.cli.assertions import (
    assert_failed_inputs,
    assert_one_error_line,
    errors,
    lines,
    run_s2f,
)
from tests.golden_fixture import needs_fixture
from tests.helpers import (
    count_frames,
    make_model,
    random_rgb,
    small_config,
    write_image,
    write_video,
)

NATIVE = ("--imgsz", "0")


def segment(*args: str | Path, input: bytes | str | None = None) -> Result:
    # Click >= 8.2 keeps stderr apart: result.stdout and result.stderr are the two streams.
    return CliRunner().invoke(app, ["segment", *map(str, args)], input=input)


def summary(directory: Path) -> dict:
    return json.loads((directory / "summary.json").read_text())


def listing(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


def assert_complete(directory: Path) -> None:
    """No temporary (hidden) files or folders, and every file decodes as what its name says."""
    hidden = [p for p in directory.rglob(".*")]
    assert hidden == [], hidden
    for path in directory.rglob("*"):
        if path.suffix in (".png", ".jpg"):
            with Image.open(path) as image:
                image.load()
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".npy":
            np.load(path)
        elif path.suffix == ".mp4":
            assert count_frames(path) > 0


def labels_of(model: Path, image: Path, imgsz: int = 0) -> np.ndarray:
    """What the library predicts for ``image`` (the CLI must write exactly this)."""
    predictor = Predictor(load_model(model), device="cpu", imgsz=imgsz)
    return predictor.predict([read_image(image)])[0].labels


def png_array(data_or_path: bytes | Path, mode: str = "P") -> np.ndarray:
    source = data_or_path if isinstance(data_or_path, Path) else io.BytesIO(data_or_path)
    with Image.open(source) as image:
        assert image.format == "PNG" and image.mode == mode
        return np.array(image)


def label_png_written(model: Path, image: Path, out: Path, mode: str = "P") -> np.ndarray:
    """``s2f segment`` of ``image`` at its native size into ``out``; the label PNG it wrote, whose
    mode must be ``mode``."""
    result = segment(image, "-m", model, *NATIVE, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    return png_array(out / f"{image.stem}.png", mode)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every command in the test's own folder, so that a default run folder
    (runs/segment/...) never lands in the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(make_model(small_config()), tmp_path_factory.mktemp("model") / "m.st")


@pytest.fixture(scope="module")
def model_300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    network = make_model(small_config(head={"num_classes": 300}))
    return save_model(network, tmp_path_factory.mktemp("model") / "m300.safetensors")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """in/{a.jpg, b.png}"""
    write_image(tmp_path / "in" / "a.jpg", random_rgb(seed=1))
    write_image(tmp_path / "in" / "b.png", random_rgb(seed=2))
    return tmp_path / "in"


@pytest.fixture
def striped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The network's scores replaced by vertical stripes over every class, so label maps hold
    many classes: column x of a W-wide network input gets class ``x * K // W``."""

    def semantic_scores(self: Predictor, batch: torch.Tensor) -> torch.Tensor:
        batch_size, _, height, width = batch.shape
        columns = torch.arange(width) * self.num_classes // width
        stripes = F.one_hot(columns, self.num_classes).T.to(batch.dtype)
        return stripes[None, :, None, :].expand(batch_size, -1, height, -1)

    monkeypatch.setattr(Predictor, "semantic_scores", semantic_scores)


def stripes(num_classes: int, height: int = 40, width: int = 56) -> np.ndarray:
    return np.tile(np.arange(width) * num_classes // width, (height, 1))


# --- run folders -----------------------------------------------------------------------------


def test_run_folders_never_clobber(model: Path, inputs: Path) -> None:
    first = segment(inputs, "-m", model, *NATIVE)
    assert first.exit_code == 0, first.output
    run = Path("runs/segment/predict")
    assert lines(first.stdout) == [str(run)]
    assert listing(run) == ["a.png", "a_overlay.jpg", "b.png", "b_overlay.jpg", "summary.json"]
    shown = lines(first.stderr)
    assert shown[0].startswith(f"{inputs / 'a.jpg'}: 40x56, ")
    assert shown[-2].startswith("Speed: ") and "(cpu, fp32)" in shown[-2]
    assert shown[-1] == f"Results saved to {run}"

    second = segment(inputs / "a.jpg", "-m", model, *NATIVE, "-q")
    assert second.exit_code == 0, second.output
    assert listing(Path("runs/segment/predict2")) == ["a.png", "a_overlay.jpg", "summary.json"]
    assert listing(run)[-1] == "summary.json" and summary(run)["inputs"] == 2

    reused = segment(inputs / "b.png", "-m", model, *NATIVE, "--exist-ok", "-q")
    assert reused.exit_code == 0, reused.output
    assert sorted(os.listdir("runs/segment")) == ["predict", "predict2"]
    # b.png redone in place, a.jpg's record from the first run kept
    assert [Path(r["path"]).name for r in summary(run)["records"]] == ["a.jpg", "b.png"]

    named = segment(inputs / "b.png", "-m", model, *NATIVE, "--project", "p", "--name", "exp")
    assert named.exit_code == 0, named.output
    assert lines(named.stdout) == [str(Path("p/exp"))]
    assert sorted(os.listdir("p")) == ["exp"]


# --- what is written -------------------------------------------------------------------------


def test_every_output_kind(model: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = segment(
        inputs / "a.jpg",
        "-m",
        model,
        "--imgsz",
        "32",
        "-o",
        out,
        "--save",
        "mask,overlay,json,logits",
    )
    assert result.exit_code == 0, result.output
    assert listing(out) == ["a.json", "a.png", "a_logits.npy", "a_overlay.jpg", "summary.json"]
    assert_complete(out)

    labels = png_array(out / "a.png")
    assert labels.shape == (40, 56)
    assert np.array_equal(labels, labels_of(model, inputs / "a.jpg", imgsz=32))
    with Image.open(out / "a_overlay.jpg") as overlay:
        assert overlay.format == "JPEG" and overlay.size == (56, 40)
    logits = np.load(out / "a_logits.npy")
    assert logits.shape == (5, 32, 45) and logits.dtype == np.float16

    record = json.loads((out / "a.json").read_text())
    assert record["path"] == str(inputs / "a.jpg")
    assert record["status"] == "ok" and record["message"] == ""
    assert record["size"] == [40, 56]
    assert sorted(record["files"]) == sorted(str(out / n) for n in listing(out)[:4])
    assert set(record["timings_ms"]) == {"preprocess", "inference", "postprocess"}
    fractions = {c["id"]: c["fraction"] for c in record["classes"]}
    counts = np.bincount(labels.ravel(), minlength=5)
    assert fractions == {c: round(counts[c] / labels.size, 6) for c in np.flatnonzero(counts)}
    assert all(c["name"] == f"class {c['id']}" for c in record["classes"])

    run = summary(out)
    assert run["records"] == [record]
    assert (run["model"], run["device"], run["precision"], run["imgsz"]) == (
        str(model),
        "cpu",
        "fp32",
        32,
    )
    assert (run["inputs"], run["ok"], run["failed"], run["interrupted"]) == (1, 1, 0, False)
    assert set(run["speed_ms_per_image"]) == {"preprocess", "inference", "postprocess"}


def test_palette_png_holds_class_indices(
    model: Path, inputs: Path, tmp_path: Path, striped: None
) -> None:
    out = tmp_path / "out"
    labels = label_png_written(model, inputs / "b.png", out)
    assert np.array_equal(labels, stripes(5))
    assert np.array_equal(labels, labels_of(model, inputs / "b.png"))
    predictor = Predictor(load_model(model), device="cpu")
    with Image.open(out / "b.png") as image:
        colours = image.getpalette()
    assert [tuple(colours[3 * i : 3 * i + 3]) for i in range(5)] == predictor.palette
    classes = summary(out)["records"][0]["classes"]
    assert sorted(c["id"] for c in classes) == [0, 1, 2, 3, 4]
    assert math.isclose(sum(c["fraction"] for c in classes), 1.0, abs_tol=1e-5)


def test_16_bit_png_for_more_than_256_classes(
    model_300: Path, inputs: Path, tmp_path: Path, striped: None
) -> None:
    labels = label_png_written(model_300, inputs / "b.png", tmp_path / "out", mode="I;16")
    assert labels.max() > 255
    assert np.array_equal(labels, stripes(300))


def test_compile_that_fails_warns_and_runs_eagerly(
    model: Path, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_compiler(module: torch.nn.Module, **_: object):  # noqa: ANN202 - as torch.compile
        def fail(batch: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

        return fail

    monkeypatch.setattr(compiled_module.torch, "compile", no_compiler)
    result = segment(inputs, "-m", model, "--compile", "-o", tmp_path / "c", "--save", "mask")
    assert result.exit_code == 0, result.output
    warnings = [line for line in lines(result.stderr) if line.startswith("warning: ")]
    assert len(warnings) == 1
    assert "cannot compile the network" in warnings[0]
    assert "No working C++ compiler found" in warnings[0]
    assert summary(tmp_path / "c")["compiled"] is False
    assert segment(inputs, "-m", model, "-o", tmp_path / "e", "--save", "mask").exit_code == 0
    assert summary(tmp_path / "e")["compiled"] is False
    for name in ("a.png", "b.png"):
        assert np.array_equal(png_array(tmp_path / "c" / name), png_array(tmp_path / "e" / name))


@needs_fixture
def test_official_fixture_through_the_command(
    tmp_path: Path, fixture_model_file: Path, golden: dict[str, torch.Tensor]
) -> None:
    """The fixture's first image as a PNG file -> exactly the official float64 label map."""
    image = write_image(tmp_path / "official.png", golden["input_image_uint8"][0].numpy())
    out = tmp_path / "out"
    result = segment(
        image, "-m", fixture_model_file, *NATIVE, "--precision", "fp64", "-o", out, "-q"
    )
    assert result.exit_code == 0, result.output
    expected = golden["seg_map_f64"][0].numpy()
    assert np.array_equal(png_array(out / "official.png"), expected)
    record = summary(out)["records"][0]
    assert summary(out)["precision"] == "fp64"
    assert sorted(c["id"] for c in record["classes"]) == sorted(np.unique(expected).tolist())


# --- sources ---------------------------------------------------------------------------------


def test_image_formats_and_layouts(model: Path, tmp_path: Path) -> None:
    folder, rgb = tmp_path / "in", random_rgb()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    write_image(folder / "photo.jpg", rgb)
    write_image(folder / "rotated.jpg", rgb, exif=exif.tobytes())
    for name in ["plain.png", "scan.bmp", "scan.tiff", "web.webp"]:
        write_image(folder / name, rgb)
    for mode, name in [("I;16", "deep"), ("L", "grey"), ("RGBA", "alpha"), ("P", "indexed")]:
        write_image(folder / f"{name}.png", rgb, mode)
    out = tmp_path / "out"
    result = segment(folder, "-m", model, *NATIVE, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    records = {Path(r["path"]).name: r for r in summary(out)["records"]}
    assert len(records) == 10 and all(r["status"] == "ok" for r in records.values())
    for name, record in records.items():
        stem = Path(name).stem
        expected = (56, 40) if stem == "rotated" else (40, 56)
        assert record["size"] == list(expected), name
        assert png_array(out / f"{stem}.png").shape == expected, name
        with Image.open(out / f"{stem}_overlay.jpg") as overlay:
            assert overlay.size == expected[::-1], name


def test_recursive_folder_keeps_relative_names(model: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "top.png", random_rgb())
    write_image(tmp_path / "in" / "sub" / "deep" / "low.jpg", random_rgb())
    flat = segment(tmp_path / "in", "-m", model, *NATIVE, "-o", tmp_path / "flat", "-q")
    assert flat.exit_code == 0, flat.output
    assert listing(tmp_path / "flat") == ["summary.json", "top.png", "top_overlay.jpg"]
    deep = segment(tmp_path / "in", "-r", "-m", model, *NATIVE, "-o", tmp_path / "deep", "-q")
    assert deep.exit_code == 0, deep.output
    assert listing(tmp_path / "deep") == [
        "sub",
        "sub/deep",
        "sub/deep/low.png",
        "sub/deep/low_overlay.jpg",
        "summary.json",
        "top.png",
        "top_overlay.jpg",
    ]
    assert_complete(tmp_path / "deep")


def test_quoted_glob(model: Path, inputs: Path, tmp_path: Path) -> None:
    write_image(inputs / "c.png", random_rgb(seed=3))
    out = tmp_path / "out"
    result = segment(str(inputs / "*.png"), "-m", model, *NATIVE, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in summary(out)["records"]] == [
        str(inputs / "b.png"),
        str(inputs / "c.png"),
    ]


def test_same_names_in_two_folders(model: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "x.jpg", random_rgb(seed=1))
    write_image(tmp_path / "b" / "x.jpg", random_rgb(seed=2))
    out = tmp_path / "out"
    result = segment(tmp_path / "a", tmp_path / "b", "-m", model, *NATIVE, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    files = {r["path"]: r["files"] for r in summary(out)["records"]}
    assert files == {
        str(tmp_path / "a" / "x.jpg"): [str(out / "x.png"), str(out / "x_overlay.jpg")],
        str(tmp_path / "b" / "x.jpg"): [str(out / "x-2.png"), str(out / "x-2_overlay.jpg")],
    }


def test_from_list_file_and_stdin(model: Path, inputs: Path, tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text(f"{inputs / 'b.png'}\n\n  {inputs / 'a.jpg'}  \n")
    out = tmp_path / "file"
    result = segment("--from-list", listed, "-m", model, *NATIVE, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in summary(out)["records"]] == [
        str(inputs / "b.png"),
        str(inputs / "a.jpg"),
    ]

    out = tmp_path / "piped"
    piped = segment(
        "--from-list", "-", "-m", model, *NATIVE, "-o", out, "-q", input=f"{inputs / 'a.jpg'}\n"
    )
    assert piped.exit_code == 0, piped.output
    assert [r["path"] for r in summary(out)["records"]] == [str(inputs / "a.jpg")]

    both = segment("-", "--from-list", "-", "-m", model, input="")
    assert_one_error_line(both, 2, "stdin cannot hold both")
    absent = segment("--from-list", tmp_path / "absent.txt", "-m", model)
    assert_one_error_line(absent, 2, "cannot read the list")


def test_image_on_stdin(model: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = (inputs / "b.png").read_bytes()
    result = segment("-", "-m", model, *NATIVE, "-o", out, "-q", input=data)
    assert result.exit_code == 0, result.output
    assert listing(out) == ["stdin.png", "stdin_overlay.jpg", "summary.json"]
    assert summary(out)["records"][0]["path"] == "<stdin>"
    assert np.array_equal(png_array(out / "stdin.png"), labels_of(model, inputs / "b.png"))


def test_video_round_trip(model: Path, tmp_path: Path) -> None:
    for name, fourcc in [("clip.mp4", "mp4v"), ("clip.avi", "MJPG")]:
        video = write_video(tmp_path / fourcc / name, frames=7, fourcc=fourcc)
        for stride in (1, 2):
            out = tmp_path / f"{fourcc}-{stride}"
            result = segment(video, "-m", model, *NATIVE, "--vid-stride", stride, "-o", out)
            assert result.exit_code == 0, result.output
            expected = math.ceil(7 / stride)
            assert count_frames(out / "clip_overlay.mp4") == expected
            frames = sorted(os.listdir(out / "clip"))
            assert frames == [f"{i:06d}.png" for i in range(0, 7, stride)]
            assert all(png_array(out / "clip" / f).shape == (40, 56) for f in frames)
            record = summary(out)["records"][0]
            assert (record["status"], record["frames"], record["size"]) == (
                "ok",
                expected,
                [40, 56],
            )
            assert record["files"] == [str(out / "clip_overlay.mp4"), str(out / "clip")]
            assert lines(result.stderr)[0].startswith(f"{video}: 40x56, {expected} frames, ")
            assert_complete(out)


def test_images_and_a_video_together_twice(model: Path, inputs: Path, tmp_path: Path) -> None:
    """A rerun into the same folder replaces the results, including the frame folder."""
    write_video(inputs / "clip.mp4", frames=3)
    out = tmp_path / "out"
    for stride in (1, 2):
        result = segment(inputs, "-m", model, *NATIVE, "-o", out, "--vid-stride", stride, "-q")
        assert result.exit_code == 0, result.output
        assert [r["path"] for r in summary(out)["records"]] == [
            str(inputs / n) for n in ("a.jpg", "b.png", "clip.mp4")
        ]
    assert listing(out) == [
        "a.png",
        "a_overlay.jpg",
        "b.png",
        "b_overlay.jpg",
        "clip",
        "clip/000000.png",
        "clip/000002.png",
        "clip_overlay.mp4",
        "summary.json",
    ]
    assert_complete(out)


def test_a_second_job_into_a_folder_keeps_the_first_s_records(
    model: Path, inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    for name in ("a.jpg", "b.png"):
        result = segment(inputs / name, "-m", model, *NATIVE, "-o", out, "-q")
        assert result.exit_code == 0, result.output
    assert [r["path"] for r in summary(out)["records"]] == [
        str(inputs / n) for n in ("a.jpg", "b.png")
    ]
    # made another way: this job's summary alone, the earlier one kept beside it
    result = segment(inputs / "a.jpg", "-m", model, "--imgsz", "32", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in summary(out)["records"]] == [str(inputs / "a.jpg")]
    kept = json.loads((out / "summary.1.json").read_text())
    assert (kept["imgsz"], len(kept["records"])) == (0, 2)
    assert_complete(out)


# --- stdout, -o FILE, --json, -q -------------------------------------------------------------


def test_label_map_to_stdout(model: Path, inputs: Path, tmp_path: Path) -> None:
    data = (inputs / "a.jpg").read_bytes()
    before = listing(tmp_path)
    result = segment("-", "-m", model, *NATIVE, "-o", "-", input=data)
    assert result.exit_code == 0, result.output
    labels = png_array(result.stdout_bytes)
    assert labels.shape == (40, 56)
    assert np.array_equal(labels, labels_of(model, inputs / "a.jpg"))
    assert "error" not in result.stderr
    assert listing(tmp_path) == before

    two = segment(inputs, "-m", model, "-o", "-")
    assert_one_error_line(two, 2, "exactly one image")
    with_json = segment(inputs / "a.jpg", "-m", model, "-o", "-", "--json")
    assert_one_error_line(with_json, 2, "choose one")


def test_label_map_to_a_png_file(model: Path, inputs: Path, tmp_path: Path) -> None:
    target = tmp_path / "maps" / "label.png"
    result = segment(inputs / "a.jpg", "-m", model, *NATIVE, "-o", target)
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == [str(target)]
    assert listing(target.parent) == ["label.png", "label_overlay.jpg"]
    assert np.array_equal(png_array(target), labels_of(model, inputs / "a.jpg"))

    assert_one_error_line(segment(inputs, "-m", model, "-o", target), 2, "exactly one image")
    jpeg = segment(inputs / "a.jpg", "-m", model, "-o", tmp_path / "label.jpg")
    assert_one_error_line(jpeg, 2, "use a .png name")
    itself = segment(inputs / "b.png", "-m", model, "-o", inputs / "b.png")
    assert_one_error_line(itself, 2, "would overwrite an input")
    assert np.array_equal(np.array(Image.open(inputs / "b.png")), random_rgb(seed=2))


def test_json_lines(model: Path, inputs: Path, tmp_path: Path) -> None:
    odd = inputs / "odd [b]:smile:.png"  # rich markup and an emoji code: printed as they are
    odd.write_bytes(b"not a png")
    out = tmp_path / "out"
    result = segment(inputs, "-m", model, *NATIVE, "-o", out, "--json")
    assert result.exit_code == 3, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(inputs / n) for n in ("a.jpg", "b.png")] + [
        str(odd)
    ]
    assert [r["status"] for r in records] == ["ok", "ok", "error"]
    assert records == summary(out)["records"]
    assert errors(result) == [f"error: {odd}: not an image, or a corrupt/truncated one"]


def test_quiet(model: Path, inputs: Path, tmp_path: Path) -> None:
    result = segment(inputs, "-m", model, *NATIVE, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""

    (inputs / "bad.jpg").write_bytes(b"")
    failing = segment(inputs, "-m", model, *NATIVE, "-o", tmp_path / "again", "-q")
    assert failing.exit_code == 3, failing.output
    assert failing.stdout == ""
    assert lines(failing.stderr) == [f"error: {inputs / 'bad.jpg'}: empty file"]


def test_precision_fallback_warning(model: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = segment(inputs / "a.jpg", "-m", model, *NATIVE, "--precision", "fp16", "-o", out)
    assert result.exit_code == 0, result.output
    assert lines(result.stderr)[0] == "warning: fp16 is not supported on cpu; running in fp32"
    assert summary(out)["precision"] == "fp32"


# --- bad inputs and exit codes ---------------------------------------------------------------


def test_bad_inputs_fail_alone(model: Path, inputs: Path, tmp_path: Path) -> None:
    good_png = (inputs / "b.png").read_bytes()
    good_video = write_video(tmp_path / "good.mp4", frames=3).read_bytes()
    bad = {
        "empty.png": (b"", "empty file"),
        "text.jpg": (b"hello, world\n", "not an image"),
        "truncated.png": (good_png[: len(good_png) // 2], "corrupt/truncated"),
        "empty.mp4": (b"", "empty file"),
        "broken.mp4": (good_video[: len(good_video) // 3], "not a readable video"),
    }
    for name, (data, _) in bad.items():
        (inputs / name).write_bytes(data)
    write_video(inputs / "fine.mp4", frames=2)
    before = {p: p.read_bytes() for p in inputs.iterdir()}
    out = tmp_path / "out"

    result = segment(inputs, "-m", model, *NATIVE, "-o", out)

    assert_failed_inputs(result, {inputs / name: fragment for name, (_, fragment) in bad.items()})
    assert "5 of 8 inputs failed" in result.stderr
    run = summary(out)
    assert (run["inputs"], run["ok"], run["failed"]) == (8, 3, 5)
    for record in run["records"]:
        name = Path(record["path"]).name
        assert record["status"] == ("error" if name in bad else "ok"), name
        if name in bad:
            assert record["files"] == [] and bad[name][1] in record["message"]
    assert listing(out) == [
        "a.png",
        "a_overlay.jpg",
        "b.png",
        "b_overlay.jpg",
        "fine",
        "fine/000000.png",
        "fine/000001.png",
        "fine_overlay.mp4",
        "summary.json",
    ]
    assert {p: p.read_bytes() for p in inputs.iterdir()} == before


def test_a_folder_in_the_way_of_the_frames_is_kept(model: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=2)
    out = tmp_path / "out"
    (out / "clip").mkdir(parents=True)
    (out / "clip" / "holiday.jpg").write_bytes(b"precious")
    result = segment(video, "-m", model, *NATIVE, "-o", out)
    assert result.exit_code == 3, result.output
    assert len(errors(result)) == 1 and "not replacing it" in errors(result)[0]
    assert listing(out) == ["clip", "clip/holiday.jpg", "summary.json"]
    assert (out / "clip" / "holiday.jpg").read_bytes() == b"precious"


@pytest.mark.parametrize("case", ["image", "video"])
def test_never_writes_over_an_input(model: Path, inputs: Path, case: str) -> None:
    if case == "video":  # the frame folder clip/ would replace clip/frame.jpg
        write_video(inputs / "clip.mp4", frames=2)
        write_image(inputs / "clip" / "frame.jpg", random_rgb())
        (inputs / "b.png").unlink()
    else:  # a.jpg's label map a.png is an input itself
        write_image(inputs / "a.png", random_rgb(seed=4))
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    result = segment(inputs, "-r", "-m", model, *NATIVE, "-o", inputs)
    assert_one_error_line(result, 2, "would overwrite an input")
    assert {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} == before


def test_interrupted_run_keeps_only_complete_files(
    model: Path, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(inputs / "c.png", random_rgb(seed=3))
    write_video(inputs / "d.mp4", frames=5)
    calls, stop_at = 0, 2  # the second image: b.png
    predict = Predictor.predict

    def interrupted(self: Predictor, *args: object, **kwargs: object) -> list:
        nonlocal calls
        calls += 1
        if calls == stop_at:
            raise KeyboardInterrupt
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", interrupted)
    out = tmp_path / "out"
    kinds = ("--save", "mask,overlay,json")

    result = segment(inputs, "-m", model, *NATIVE, "-o", out, *kinds)
    assert result.exit_code == 130, result.output
    assert errors(result)[-1].startswith("error: interrupted")
    assert listing(out) == ["a.json", "a.png", "a_overlay.jpg", "summary.json"]
    assert_complete(out)
    run = summary(out)
    assert run["interrupted"] is True
    assert [r["path"] for r in run["records"]] == [str(inputs / "a.jpg")]

    calls, stop_at = 0, 5  # a.jpg, b.png, c.png, then the second frame of d.mp4
    again = segment(inputs, "-m", model, *NATIVE, "-o", out, *kinds)
    assert again.exit_code == 130, again.output
    assert [name for name in os.listdir(out) if name.startswith("d")] == []
    assert_complete(out)
    run = summary(out)
    assert run["interrupted"] is True
    assert [Path(r["path"]).name for r in run["records"]] == ["a.jpg", "b.png", "c.png"]


def test_unknown_model_name(inputs: Path) -> None:
    result = segment(inputs, "-m", "no-such-model")
    assert_one_error_line(
        result, 2, "'no-such-model' is neither a file nor the name of a segmentation model"
    )


def test_bad_device_or_precision_is_a_usage_error(model: Path, inputs: Path) -> None:
    assert_one_error_line(segment(inputs, "-m", model, "--device", "tpu"), 2, "tpu")
    assert_one_error_line(segment(inputs, "-m", model, "--precision", "fp8"), 2, "fp8")
    assert not Path("runs").exists()


def test_corrupt_model_creates_nothing(model: Path, inputs: Path) -> None:
    data = model.read_bytes()
    for name, content in [("short.st", data[: len(data) * 9 // 10]), ("text.st", b"weights\n")]:
        Path(name).write_bytes(content)
        assert_one_error_line(segment(inputs, "-m", name), 1, name, "not a readable")
    assert_one_error_line(segment(inputs, "-m", "./missing.st"), 2, "no such model file")
    assert not Path("runs").exists()


def test_usage_errors(model: Path, inputs: Path, tmp_path: Path) -> None:
    unknown = segment(inputs, "-m", model, "--bogus")
    assert unknown.exit_code == 2 and "No such option" in unknown.stderr
    assert_one_error_line(segment(tmp_path / "absent.jpg", "-m", model), 2, "no such file")
    (tmp_path / "empty.txt").write_text("")
    nothing = segment("--from-list", tmp_path / "empty.txt", "-m", model)
    assert_one_error_line(nothing, 2, "nothing to segment")
    (tmp_path / "empty").mkdir()
    assert_one_error_line(segment(tmp_path / "empty", "-m", model), 2, "no images or videos")
    assert_one_error_line(segment(inputs, "-m", model, "--save", "mask,bogus"), 2, "--save")
    negative = segment(inputs, "-m", model, "--vid-stride", "0")
    assert negative.exit_code == 2
    assert not (tmp_path / "runs").exists()


def test_output_folder_that_is_a_file(model: Path, inputs: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    result = segment(inputs, "-m", model, *NATIVE, "-o", tmp_path / "taken")
    assert_one_error_line(result, 1, "cannot create the output folder")
    assert (tmp_path / "taken").read_text() == "a file"


def test_python_m_s2f_cli(model: Path, inputs: Path, tmp_path: Path) -> None:
    """The real entry point in a fresh interpreter: OpenCV and FFmpeg add nothing to the one
    line per bad input."""
    good = (inputs / "b.png").read_bytes()
    (inputs / "truncated.png").write_bytes(good[: len(good) // 2])
    video = write_video(tmp_path / "v.mp4", frames=3).read_bytes()
    (inputs / "cut.mp4").write_bytes(video[: len(video) // 3])
    completed = run_s2f("segment", inputs, "-m", model, *NATIVE, "-o", "out", cwd=tmp_path)
    assert completed.returncode == 3, completed.stderr
    assert lines(completed.stdout) == ["out"]
    shown = lines(completed.stderr)
    assert [line for line in shown if line.startswith("error: ")] == [
        f"error: {inputs / 'cut.mp4'}: not a readable video",
        f"error: {inputs / 'truncated.png'}: not an image, or a corrupt/truncated one",
    ]
    others = [line for line in shown if not line.startswith("error: ")]
    assert [line.split(":")[0] for line in others] == [
        str(inputs / "a.jpg"),
        str(inputs / "b.png"),
        "Speed",
        "Results saved to out",
    ]


def test_speed_line_keeps_compiling_passes_apart() -> None:
    from spike2former.inference.job import Record
    from spike2former.inference.journal import stage_speeds

    records = [
        Record("a", timings_ms={"preprocess": 2.0, "compile": 9000.0, "postprocess": 1.0}),
        Record("b", timings_ms={"preprocess": 4.0, "inference": 30.0, "postprocess": 3.0}),
        Record("c", timings_ms={"preprocess": 6.0, "inference": 50.0, "postprocess": 5.0}),
        Record("v", timings_ms={"inference": 70.0, "compile": 1000.0}, frames=9),
        Record("bad", status="error", timings_ms={"inference": 1e6}),
    ]
    speed = stage_speeds(records)
    assert speed == {"compile": 10000.0, "preprocess": 4.0, "inference": 50.0, "postprocess": 3.0}


def test_o_naming_a_folder_or_an_existing_file(model: Path, inputs: Path, tmp_path: Path) -> None:
    image = inputs / "a.jpg"
    (tmp_path / "d.png").mkdir()
    assert_one_error_line(segment(image, "-m", model, "-o", "d.png"), 2, "is a folder")
    assert listing(tmp_path / "d.png") == []
    assert not list(tmp_path.glob("d_*"))

    existing = tmp_path / "notes.png"
    existing.write_bytes(b"the user's own file")
    refused = segment(image, "-m", model, *NATIVE, "-o", existing)
    assert_one_error_line(refused, 2, "exists; pass --force")
    assert existing.read_bytes() == b"the user's own file"
    replaced = segment(image, "-m", model, *NATIVE, "-o", existing, "--force", "-q")
    assert replaced.exit_code == 0, replaced.output
    assert np.array_equal(png_array(existing), labels_of(model, image))


def test_video_outputs_are_checked_up_front(model: Path, inputs: Path, tmp_path: Path) -> None:
    write_video(inputs / "clip.mp4", frames=3)
    out = tmp_path / "out"
    refused = segment(inputs, "-m", model, *NATIVE, "-o", out, "--save", "mask,logits")
    assert_one_error_line(refused, 2, "clip.mp4: videos get mask, overlay and json outputs")
    assert not out.exists()
    result = segment(inputs, "-m", model, *NATIVE, "-o", out, "--save", "mask,json", "-q")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "clip.json").read_text())
    assert record["frames"] == 3 and record["files"][-1] == str(out / "clip.json")
    assert record == next(r for r in summary(out)["records"] if r["path"].endswith("clip.mp4"))
    assert_complete(out)


def test_an_input_s_results_are_all_written_or_none(
    model: Path, inputs: Path, tmp_path: Path
) -> None:
    """The overlay's name is taken by a folder: the label map is not left alone either, the
    input is a failed record, and the closing lines say what happened."""
    out = tmp_path / "out"
    (out / "a_overlay.jpg").mkdir(parents=True)
    result = segment(inputs / "a.jpg", "-m", model, *NATIVE, "-o", out)
    assert result.exit_code == 3
    assert listing(out) == ["a_overlay.jpg", "summary.json"]
    assert summary(out)["records"][0]["status"] == "error"
    assert "cannot write" in errors(result)[0]
    assert lines(result.stderr)[-1] == "No results: the input failed"
    assert result.stdout == ""


def test_sizes_beyond_memory_are_refused(model: Path, inputs: Path, tmp_path: Path) -> None:
    """An impossible --imgsz stops before anything is made; an input too large for
    --max-memory fails alone; a batch too large for it runs one image at a time."""
    huge = segment(inputs, "-m", model, "--imgsz", "100000", "-o", "out")
    assert_one_error_line(huge, 2, "--imgsz 100000 does not fit", "needs about")
    assert not (tmp_path / "out").exists()

    for i in range(4):
        write_image(inputs / f"big{i}.png", random_rgb(100, 140, seed=i))
    eight_mb = str(8 / 1024)
    out = tmp_path / "batched"
    batched = segment(inputs, "-m", model, *NATIVE, "--batch-size", "4", "--max-memory", eight_mb,
                      "-o", out, "-q")  # fmt: skip
    assert batched.exit_code == 0, batched.output
    assert summary(out)["ok"] == 6
    write_image(inputs / "huge.png", random_rgb(400, 560))
    one_fails = segment(inputs, "-m", model, *NATIVE, "--max-memory", eight_mb, "-o", out, "-q")
    assert_one_error_line(one_fails, 3, "huge.png: a 400x560 image", "raise max_memory")
    assert not (out / "huge.png").exists() and (out / "big0.png").exists()


def test_videos_get_the_legend_too(model: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=2, size=(120, 160))
    firsts = []
    for name, extra in (("plain", ()), ("legend", ("--legend",))):
        out = tmp_path / name
        result = segment(clip, "-m", model, *NATIVE, "-o", out, "-q", *extra)
        assert result.exit_code == 0, result.output
        capture = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
        ok, frame = capture.read()
        capture.release()
        assert ok
        firsts.append(frame.astype(int))
    plain, legend = firsts
    assert np.abs(plain[:30, :60] - legend[:30, :60]).mean() > 20  # the legend box, top left
    assert np.abs(plain[80:, 100:] - legend[80:, 100:]).mean() < 3  # the rest unchanged
