"""``create_model`` and ``list_models``: presets, registered weights (bundled and downloaded),
cached names, paths, and the errors for names that are none of these."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import spike2former
from spike2former import PRESETS, Predictor, create_model, list_models, save_model
from spike2former.errors import OfflineError, WeightsSpecError
from spike2former.model_file import load_model, read_model_config
from spike2former.weights import DEFAULT_MODEL, download, get_entry, load_registry
from tests.download_helpers import Home, Payloads, Route, WeightsServer, sha256
from tests.helpers import make_model, small_config


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_package_exports() -> None:
    assert spike2former.Predictor is Predictor
    assert {"Predictor", "create_model", "list_models"} <= set(spike2former.__all__)


def test_list_models_names_presets_then_registered_models() -> None:
    names = list_models()
    registry = load_registry()
    models = [n for n, e in registry.items() if e.kind == "model"]
    assert list(names) == [*PRESETS, *models]
    assert {names[n] for n in PRESETS} == {"preset"}
    assert {names[n] for n in models} == {"weights"}
    assert "sdtv2-15m-imagenet" not in names  # a backbone: create_model cannot build it


def test_a_preset_is_built_freshly_initialised() -> None:
    model = create_model("tiny")
    assert model.config == PRESETS["tiny"] and model.training
    assert next(model.parameters()).device == torch.device("cpu")


def test_the_bundled_model_is_loaded_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2F_OFFLINE", "1")
    bundled = load_model(get_entry(DEFAULT_MODEL).bundled_path())
    model = create_model(DEFAULT_MODEL)
    assert not model.training and model.config == bundled.config
    assert same_weights(model, bundled)
    assert same_weights(create_model("tiny", pretrained=True), bundled)  # its preset's weights


def test_pretrained_false_builds_a_registered_model_as_released() -> None:
    bundled = read_model_config(get_entry(DEFAULT_MODEL).bundled_path())
    fresh = create_model(DEFAULT_MODEL, pretrained=False)
    assert fresh.training and fresh.config == bundled.replace(palette=None)
    large = create_model("spike2former-sdtv2-voc-1x4", pretrained=False).config
    assert (large.head.num_classes, large.backbone.version) == (150, "sdtv2")
    assert large.class_names[20:22] == ("tvmonitor", "unused_21")


def test_a_path_is_loaded_or_its_configuration_built(tmp_path: Path) -> None:
    saved = save_model(make_model(small_config()), tmp_path / "m.safetensors")
    assert same_weights(create_model(saved), load_model(saved))  # a Path
    assert same_weights(create_model(str(saved)), load_model(saved))  # a string that is a path
    fresh = create_model(saved, pretrained=False)
    assert fresh.config == small_config() and not same_weights(fresh, load_model(saved))
    with pytest.raises(WeightsSpecError, match="no such model file"):
        create_model(tmp_path / "missing.safetensors")


def test_a_registered_model_is_downloaded_once_and_then_works_offline(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/mine.pth", Route(payloads.official))
    entry = {"name": "mine", "kind": "model", "urls": [url], "source": "s"}
    home.registry({**entry, "sha256": sha256(payloads.official)})
    with pytest.raises(OfflineError, match="mine"):
        create_model("mine", offline=True)
    seen: list[tuple[int, int | None]] = []
    model = create_model(
        "mine", offline=False, progress=lambda done, total: seen.append((done, total))
    )
    assert model.config == small_config() and not model.training
    assert seen and len(server.log) == 1
    again = create_model("mine", offline=True)
    assert same_weights(again, model) and len(server.log) == 1
    with pytest.raises(WeightsSpecError, match="'mine' names no preset"):
        create_model("mine", pretrained=False)


def test_a_cached_name_is_loaded(home: Home, payloads: Payloads) -> None:
    source = home.inputs / "weights.pth"
    source.write_bytes(payloads.official)
    download(str(source), name="cached-one")
    assert create_model("cached-one", offline=True).config == small_config()
    assert "cached-one" not in list_models()  # the registry's names only


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("sdtv3-ade20k", "unknown model 'sdtv3-ade20k'; did you mean 'sdtv3b-ade20k'"),
        ("SDTV2-VOC", "did you mean 'sdtv2-voc'"),
        ("s2f-tiny-fasion", "did you mean 's2f-tiny-fashion'"),
        ("nothing-like-it", "unknown model 'nothing-like-it' \\(spike2former.list_models\\(\\)"),
        ("sdtv2-15m-imagenet", "an ImageNet backbone, not a segmentation model"),
    ],
)
def test_names_that_are_not_models(home: Home, name: str, fragment: str) -> None:
    with pytest.raises(WeightsSpecError, match=fragment) as info:
        create_model(name)
    assert "\n" not in str(info.value)


def test_pretrained_preset_needs_exactly_one_registered_model() -> None:
    with pytest.raises(WeightsSpecError, match="several registered weights .*voc-1x4.*voc-4x4"):
        create_model("sdtv2-voc", pretrained=True)
    with pytest.raises(WeightsSpecError, match="no registered weights for preset 'sdtv3b-ade20k'"):
        create_model("sdtv3b-ade20k", pretrained=True)
