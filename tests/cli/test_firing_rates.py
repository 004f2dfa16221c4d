"""``s2f firing-rates`` through the Typer application (and once through ``python -m s2f_cli``).

The model is a small random network saved with ``save_model``; images are 40 x 56 noise run at
their native size (``--imgsz 0``). One test runs the official fixture's two images end to end and
compares with the official firing table.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from spike2former import build_model, save_model
from spike2former.convert import convert_checkpoint
from spike2former.firing.parts import PARTS
from spike2former.modeling.neuron import SpikingNeuron
from tests.cli.assertions import assert_one_error_line, errors, lines, run_s2f
from tests.golden_fixture import FIXTURE, needs_fixture
from tests.helpers import make_model, random_rgb, small_config, write_image, write_video

NATIVE = ("--imgsz", "0")
# every neuron of small_config() runs once per forward
NEURON_LAYERS = sum(isinstance(m, SpikingNeuron) for m in build_model(small_config()).modules())


def firing_rates(*args: str | Path, input: bytes | None = None) -> Result:
    return CliRunner().invoke(app, ["firing-rates", *map(str, args)], input=input)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(make_model(small_config()), tmp_path_factory.mktemp("model") / "m.st")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    write_image(tmp_path / "in" / "a.jpg", random_rgb(seed=1))
    write_image(tmp_path / "in" / "b.png", random_rgb(seed=2))
    return tmp_path / "in"


def json_report(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_report(model: Path, inputs: Path) -> None:
    report = json_report(firing_rates(inputs, "-m", model, *NATIVE, "--json", "-q"))
    assert set(report["definitions"]) >= {"mean_count", "rate", "zero_frac", "sat_frac", "D"}
    settings = report["settings"]
    assert (settings["images"], settings["failed"], settings["imgsz"]) == (2, 0, 0)
    assert settings["stages"].startswith("all decoder stages")
    assert [r["path"] for r in report["images"]] == [str(inputs / "a.jpg"), str(inputs / "b.png")]
    assert all(r["size"] == [40, 56] and r["spikes"] > 0 for r in report["images"])
    layers = report["layers"]
    assert len(layers) == NEURON_LAYERS
    for layer in layers:
        assert layer["outputs"] > 0 and 0 <= layer["mean_count"] <= layer["D"]
        assert layer["rate"] == pytest.approx(layer["mean_count"] / layer["D"])
        assert layer["mean_count"] == pytest.approx(layer["spikes"] / layer["outputs"])
    assert [p["name"] for p in report["parts"]] == list(PARTS)
    total = report["total"]
    assert total["spikes"] == sum(r["spikes"] for r in report["images"])
    assert total["outputs"] == sum(layer["outputs"] for layer in layers)
    assert "energy" not in report


def test_energy_report(model: Path, inputs: Path) -> None:
    args = (inputs / "a.jpg", "-m", model, *NATIVE, "--json", "--energy", "-q")
    energy = json_report(firing_rates(*args))["energy"]
    assert energy["constants_pj"] == {"mac_pj": 4.6, "ac_pj": 0.9}
    assert {rule["rule"] for rule in energy["accounting"]} >= {"spike x weights", "real"}
    total = energy["total"]
    assert [p["name"] for p in energy["parts"]] == list(PARTS)
    for key in ("macs", "sops", "energy_mj", "conventional_mj"):
        assert sum(p[key] for p in energy["parts"]) == pytest.approx(total[key])
        assert sum(m[key] for m in energy["modules"]) == pytest.approx(total[key])
        assert sum(op[key] for op in energy["operations"]) == pytest.approx(total[key])
    assert total["conventional_mj"] == pytest.approx(4.6e-9 * total["macs"])
    assert total["ratio"] == pytest.approx(total["conventional_mj"] / total["energy_mj"])
    [stem] = [op for op in energy["operations"] if op["rule"] == "real"]
    assert stem["module"] == "backbone.downsample1_1.encode_conv"


def test_table(model: Path, inputs: Path) -> None:
    result = firing_rates(inputs, "-m", model, *NATIVE, "--energy")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("Firing rates of ")
    for heading in ("Firing rates per neuron layer", "Energy per image", "most expensive"):
        assert heading in text
    rows = [line for line in lines(text) if line.startswith("│")]
    names = [row.split("│")[1].strip() for row in rows]
    assert names.count("total") == 2 and set(PARTS) <= set(names)
    assert "backbone.ConvBlock1_1.0.Conv.spike1" in names
    progress = lines(result.stderr)
    assert progress[0].startswith(f"{inputs / 'a.jpg'}: 40x56 -> 40x56, ")
    assert " mJ (conventional " in progress[0]
    assert progress[-1] == "2 image(s) measured"


def test_csv_and_atomic_output_file(model: Path, inputs: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old contents")
    args = (inputs, "-m", model, *NATIVE, "--csv", "-o", target, "--energy")
    assert_one_error_line(firing_rates(*args), 2, "exists; pass --force to replace it")
    assert target.read_text() == "old contents"
    result = firing_rates(*args, "--force")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "report.csv"]  # no temp files
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    sections = [row["section"] for row in rows]
    assert sections.count("layer") == NEURON_LAYERS
    assert sections.count("part") == sections.count("energy-part") == len(PARTS)
    assert sections.count("total") == sections.count("energy-total") == 1
    assert sections.count("operation") > NEURON_LAYERS
    layer = next(row for row in rows if row["section"] == "layer")
    assert float(layer["rate"]) == pytest.approx(float(layer["mean_count"]) / int(layer["D"]))
    [total] = [row for row in rows if row["section"] == "energy-total"]
    assert float(total["ratio"]) > 1


def test_table_to_a_file_and_the_plot(model: Path, inputs: Path, tmp_path: Path) -> None:
    args = ("-o", tmp_path / "rates.txt", "--plot", tmp_path / "rates.png")
    result = firing_rates(inputs, "-m", model, *NATIVE, *args, "-q")
    assert result.exit_code == 0, result.output
    assert "Firing rates per neuron layer" in (tmp_path / "rates.txt").read_text()
    with Image.open(tmp_path / "rates.png") as image:
        image.load()
        assert image.format == "PNG" and image.mode == "RGB"
        width, height = image.size
        pixels = np.asarray(image)
    assert 600 < width < 2000 and height > 16 * NEURON_LAYERS
    colours = {tuple(c) for c in pixels.reshape(-1, 3)[::7]}
    assert (47, 75, 124) in colours and (242, 142, 43) in colours  # stage 1, pixel decoder bars


def test_limit_stdin_and_last_stage(model: Path, inputs: Path) -> None:
    data = (inputs / "b.png").read_bytes()
    report = json_report(
        firing_rates("-", inputs, "-m", model, *NATIVE, "--json", "--limit", "2", "-q", input=data)
    )
    assert [r["path"] for r in report["images"]] == ["<stdin>", str(inputs / "a.jpg")]
    last = json_report(
        firing_rates(inputs / "a.jpg", "-m", model, *NATIVE, "--json", "--stages", "last")
    )
    every = json_report(firing_rates(inputs / "a.jpg", "-m", model, *NATIVE, "--json"))
    assert last["settings"]["stages"].startswith("last decoder stage only")
    outputs = {layer["name"]: layer["outputs"] for layer in every["layers"]}
    for layer in last["layers"]:
        expected = outputs[layer["name"]] // (2 if layer["part"] == "mask embedding" else 1)
        assert layer["outputs"] == expected, layer["name"]  # one decoder layer: 2 stages


def test_video_frames_count_as_images(model: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=3)
    report = json_report(firing_rates(video, "-m", model, *NATIVE, "--json", "-q"))
    assert [r["path"] for r in report["images"]] == [f"{video}#{i}" for i in range(3)]


def test_bad_inputs_fail_alone(model: Path, inputs: Path, tmp_path: Path) -> None:
    good = (inputs / "b.png").read_bytes()
    bad = {
        "empty.png": (b"", "empty file"),
        "text.jpg": (b"hello\n", "not an image"),
        "truncated.png": (good[: len(good) // 2], "corrupt/truncated"),
        "broken.mp4": (b"\x00" * 100, "not a readable video"),
    }
    for name, (data, _) in bad.items():
        (inputs / name).write_bytes(data)
    out = tmp_path / "report.json"
    result = firing_rates(inputs, "-m", model, *NATIVE, "--json", "-o", out)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    shown = errors(result)
    assert len(shown) == len(bad)
    for name, (_, fragment) in bad.items():
        assert any(
            line.startswith(f"error: {inputs / name}: ") and fragment in line for line in shown
        )
    assert lines(result.stderr)[-1] == "2 image(s) measured; 4 of 6 inputs failed"
    report = json.loads(out.read_text())
    assert (report["settings"]["images"], report["settings"]["failed"]) == (2, 4)
    failed = {Path(r["path"]).name: r for r in report["images"] if r["status"] == "error"}
    assert set(failed) == set(bad)
    assert all(bad[name][1] in record["message"] for name, record in failed.items())


def test_nothing_measurable_writes_nothing(model: Path, tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    result = firing_rates(tmp_path / "x.png", "-m", model, "-o", tmp_path / "r.json", "--json")
    assert result.exit_code == 3
    assert errors(result) == [f"error: {tmp_path / 'x.png'}: empty file"]
    assert not (tmp_path / "r.json").exists()


def test_usage_and_fatal_errors(model: Path, inputs: Path, tmp_path: Path) -> None:
    assert_one_error_line(firing_rates(inputs, "-m", "nothing"), 2, "'nothing' is neither a file")
    assert_one_error_line(firing_rates(tmp_path / "absent.jpg", "-m", model), 2, "no such file")
    assert_one_error_line(firing_rates("-m", model), 2, "nothing to measure")
    assert_one_error_line(
        firing_rates(inputs, "-m", model, "--json", "--csv"), 2, "--json and --csv"
    )
    assert_one_error_line(firing_rates(inputs, "-m", model, "--stages", "some"), 2, "--stages")
    assert_one_error_line(firing_rates(inputs, "-m", model, "--plot", "p.jpg"), 2, ".png")
    assert_one_error_line(firing_rates(inputs, "-m", model, "--device", "tpu"), 2, "tpu")
    assert_one_error_line(firing_rates(inputs, "-m", model, "--precision", "fp8"), 2, "fp8")
    same = firing_rates(inputs, "-m", model, "-o", inputs / "b.png")
    assert_one_error_line(same, 2, "would overwrite an input")
    assert_one_error_line(firing_rates(inputs, "-m", "./missing.st"), 2, "no such model file")
    Path("text.st").write_bytes(b"weights\n")
    assert_one_error_line(firing_rates(inputs, "-m", "text.st"), 1, "not a readable")
    (tmp_path / "taken").write_text("a file")
    unwritable = firing_rates(inputs, "-m", model, *NATIVE, "-q", "-o", tmp_path / "taken" / "r")
    assert_one_error_line(unwritable, 2, "a file where", "needs a folder")
    assert (tmp_path / "taken").read_text() == "a file"


@needs_fixture
def test_fixture_images_reproduce_the_official_table(tmp_path: Path) -> None:
    """The official fixture's two images, decoded, preprocessed and run one at a time in
    float64, give the official firing table (measured on the two-image batch) exactly."""
    model = tmp_path / "fixture.st"
    convert_checkpoint(FIXTURE / "weights.safetensors", model)
    images = load_file(str(FIXTURE / "io.safetensors"))["input_image_uint8"].numpy()
    paths = [write_image(tmp_path / f"{i}.png", image) for i, image in enumerate(images)]
    result = firing_rates(*paths, "-m", model, *NATIVE, "--precision", "fp64", "--json")
    layers = {layer["name"]: layer for layer in json_report(result)["layers"]}
    official = json.loads((FIXTURE / "meta.json").read_text())["firing"]
    assert set(layers) == set(official)
    for name, expected in official.items():
        assert layers[name]["outputs"] == expected["numel"], name
        assert layers[name]["spikes"] == round(expected["mean_int_count"] * expected["numel"])
        assert layers[name]["rate"] == pytest.approx(expected["rate"], abs=1e-12), name


def test_python_m_s2f_cli(model: Path, inputs: Path, tmp_path: Path) -> None:
    """The real entry point: one line per bad input, nothing from OpenCV, exit status 3."""
    (inputs / "cut.png").write_bytes((inputs / "b.png").read_bytes()[:100])
    completed = run_s2f("firing-rates", inputs, "-m", model, *NATIVE, "--csv", cwd=tmp_path)
    assert completed.returncode == 3, completed.stderr
    assert completed.stdout.startswith("section,part,name,")
    shown = lines(completed.stderr)
    assert [line for line in shown if line.startswith("error: ")] == [
        f"error: {inputs / 'cut.png'}: not an image, or a corrupt/truncated one"
    ]
    assert shown[-1] == "2 image(s) measured; 1 of 3 inputs failed"


def test_a_conventional_model_is_flagged(inputs: Path, tmp_path: Path) -> None:
    path = save_model(make_model(small_config(spiking=False)), tmp_path / "conventional.st")
    result = firing_rates(inputs / "a.jpg", "-m", path, "--imgsz", "0", "--json")
    assert result.exit_code == 0, result.output
    assert "the model is conventional" in result.stderr
    spiking = save_model(make_model(small_config()), tmp_path / "spiking.st")
    result = firing_rates(inputs / "a.jpg", "-m", spiking, "--imgsz", "0", "--json")
    assert result.exit_code == 0 and "conventional (real-valued" not in result.stderr
