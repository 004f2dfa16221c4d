"""Weights downloads, the cache and ``resolve_model``, against a real HTTP server on 127.0.0.1.

After every failure: no new file in ``models/`` or ``backbones/``, a partial file only where a
later try can resume it, an error message on one line, and nothing written outside ``$S2F_HOME``
(``isolated_home`` checks the user's home, cache, working and temporary directories).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from spike2former.config import ModelConfig
from spike2former.errors import (
    CheckpointError,
    DownloadError,
    OfflineError,
    S2FError,
    WeightsSpecError,
)
from spike2former.model_file import read_model_config
from spike2former.presets import PRESETS
from spike2former.training.recipe import RECIPES
from spike2former.weights import (
    DEFAULT_MODEL,
    Cache,
    cache_dir,
    catalog,
    check_name,
    default_cache_dir,
    download,
    fit_class_names,
    is_offline,
    load_registry,
    resolve_backbone,
    resolve_model,
)
from tests.download_helpers import (
    Home,
    Payloads,
    Route,
    WeightsServer,
    sha256,
)
from tests.helpers import small_config

FAST = 0.3  # seconds: the timeout of the slow-server tests


def model_entry(name: str, url: str, **fields: object) -> dict[str, object]:
    return {"name": name, "kind": "model", "urls": [url], "source": "https://example.org", **fields}


def one_line(exc: pytest.ExceptionInfo[S2FError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# --- downloads that work ----------------------------------------------------------------------


def test_official_checkpoint_is_downloaded_checked_and_converted(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/weights/iter_160000.pth", Route(payloads.official))
    seen: list[tuple[int, int | None]] = []

    result = download(url, progress=lambda done, total: seen.append((done, total)))

    assert result.path == home.cache / "models" / "iter_160000.safetensors"
    assert (result.converted, result.cached, result.checksum) == (True, False, "recorded")
    assert result.sha256 == sha256(payloads.official)
    assert read_model_config(result.path) == small_config()
    assert home.finals() == ["models/iter_160000.safetensors"]
    assert home.partials() == []
    assert seen[-1] == (len(payloads.official), len(payloads.official))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    record = Cache(home.cache).read_index()["iter_160000"]
    assert record["source"] == url and record["source_sha256"] == sha256(payloads.official)
    assert record["sha256"] == sha256(result.path.read_bytes())


def test_registered_model_gets_checksum_time_steps_and_class_names(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/ade.pth", Route(payloads.official))
    entry = model_entry(
        "tiny-ade",
        url,
        sha256=sha256(payloads.official),
        time_steps=4,
        num_classes=5,
        test_size=1024,
        class_names="three",
    )
    home.registry(entry, class_lists={"three": ["sky", "road", "tree"]})

    result = download("tiny-ade")

    assert result.checksum == "published" and result.path.name == "tiny-ade.safetensors"
    names = ("sky", "road", "tree", "unused_3", "unused_4")
    expected = small_config({"time_steps": 4}, class_names=names, test_size=1024)
    assert read_model_config(result.path) == expected


def test_s2f_model_file_is_cached_as_it_is(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/ready.s2f.safetensors", Route(payloads.s2f_model))
    result = download(url)
    assert result.path.name == "ready.safetensors" and not result.converted
    assert result.path.read_bytes() == payloads.s2f_model


def test_file_url_and_local_path(home: Home, payloads: Payloads) -> None:
    source = home.inputs / "official.safetensors"
    source.write_bytes(payloads.official_safetensors)

    by_url = download(source.as_uri(), name="from-url")
    by_path = download(str(source), name="from-path")

    for result in (by_url, by_path):
        assert result.converted and read_model_config(result.path) == small_config()
    assert source.read_bytes() == payloads.official_safetensors
    assert home.finals() == ["models/from-path.safetensors", "models/from-url.safetensors"]


def test_registry_entry_with_a_file_url(home: Home, payloads: Payloads) -> None:
    mirror = home.inputs / "mirror" / "ade.pth"
    mirror.parent.mkdir()
    mirror.write_bytes(payloads.official)
    home.registry(model_entry("mirrored", mirror.as_uri(), sha256=sha256(payloads.official)))
    result = download("mirrored")
    assert result.checksum == "published" and result.source == str(mirror)


def test_redirects_are_followed(server: WeightsServer, home: Home, payloads: Payloads) -> None:
    target = server.add("/cdn/blob", Route(payloads.official))
    url = server.add("/resolve/main/m.pth", Route(mode="redirect", status=302, location=target))
    assert download(url).path.name == "m.safetensors"
    assert [entry.path for entry in server.log] == ["/resolve/main/m.pth", "/cdn/blob"]


def test_cached_weights_are_reused_and_force_downloads_again(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    first = download(url)
    again = download(url)
    assert again.cached and again.path == first.path and len(server.log) == 1
    assert again.sha256 == sha256(payloads.official)

    forced = download(url, force=True)
    assert forced.checksum == "seen" and not forced.cached and len(server.log) == 2


# --- downloads that fail: nothing new in the cache ---------------------------------------------


@pytest.mark.parametrize("where", ["given", "published"])
def test_wrong_checksum(server: WeightsServer, home: Home, payloads: Payloads, where: str) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    wrong = "0" * 64
    with pytest.raises(DownloadError) as exc:
        if where == "given":
            download(url, sha256=wrong)
        else:
            home.registry(model_entry("m", url, sha256=wrong))
            download("m")
    message = one_line(exc)
    assert "SHA-256 mismatch" in message and wrong in message
    assert sha256(payloads.official) in message
    assert home.finals() == [] and home.partials() == []


def test_http_404(server: WeightsServer, home: Home) -> None:
    with pytest.raises(DownloadError) as exc:
        download(server.url("/missing.pth"))
    assert "HTTP 404" in one_line(exc)
    assert home.finals() == [] and home.partials() == []


def test_connection_closed_mid_file_then_resumed(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    body, cut = payloads.official, len(payloads.official) // 3
    url = server.add("/m.pth", Route(body, mode="cut", cut=cut))

    with pytest.raises(DownloadError) as exc:
        download(url)
    message = one_line(exc)
    assert f"closed after {cut} of {len(body)} bytes" in message and "resume" in message
    assert home.finals() == [] and home.partials() == ["m.part", "m.part.json"]
    assert (home.cache / ".partial" / "m.part").stat().st_size == cut

    server.routes["/m.pth"] = Route(body)
    result = download(url)
    assert server.log[-1].range == f"bytes={cut}-"
    assert result.sha256 == sha256(body) and read_model_config(result.path) == small_config()
    assert home.partials() == []


def test_server_that_ignores_range_is_read_from_the_start(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    body = payloads.official
    url = server.add("/m.pth", Route(body, mode="cut", cut=1000))
    with pytest.raises(DownloadError):
        download(url)
    server.routes["/m.pth"] = Route(body, mode="ignore-range")

    result = download(url, sha256=sha256(body))

    assert server.log[-1].range == "bytes=1000-"
    assert result.size == len(body) and result.checksum == "given"


def test_changed_file_is_not_spliced_onto_a_partial(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/m.pth", Route(payloads.official, mode="cut", cut=5000, etag='"v1"'))
    with pytest.raises(DownloadError):
        download(url)
    server.routes["/m.pth"] = Route(payloads.official_v2, etag='"v2"')

    result = download(url)

    assert (server.log[-1].range, server.log[-1].if_range) == ("bytes=5000-", '"v1"')
    assert result.sha256 == sha256(payloads.official_v2)


def test_slow_server_times_out(server: WeightsServer, home: Home, payloads: Payloads) -> None:
    url = server.add("/m.pth", Route(payloads.official, mode="stall", cut=4096))
    start = time.monotonic()
    with pytest.raises(DownloadError) as exc:
        download(url, timeout=FAST)
    assert time.monotonic() - start < 5
    message = one_line(exc)
    assert "timed out" in message and "4096 bytes kept" in message
    assert home.finals() == [] and home.partials() == ["m.part", "m.part.json"]


@pytest.mark.parametrize("content_type", ["text/html", "application/octet-stream"])
def test_web_page_is_refused(server: WeightsServer, home: Home, content_type: str) -> None:
    page = b"<!DOCTYPE html>\n<html><body>Google Drive - Virus scan warning</body></html>\n"
    url = server.add("/uc", Route(page, content_type=content_type))
    with pytest.raises(DownloadError) as exc:
        download(url, name="drive")
    assert "web page" in one_line(exc)
    assert home.finals() == [] and home.partials() == []


def bad_config_model(directory: Path) -> bytes:
    path = directory / "bad-config.safetensors"
    config = json.dumps({"head": {"num_classes": 0}})
    metadata = {"format": "s2f", "format_version": "1", "config": config}
    save_file({"x": torch.zeros(1)}, str(path), metadata=metadata)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("junk", "not a checkpoint"),
        ("other-network", "not a usable Spike2Former checkpoint"),
        ("truncated-s2f", "not a usable Spike2Former checkpoint"),
        ("bad-config-s2f", "a damaged s2f model file"),
    ],
)
def test_files_that_are_no_spike2former_checkpoint(
    server: WeightsServer, home: Home, payloads: Payloads, kind: str, fragment: str
) -> None:
    body = {
        "junk": b"\x00just some bytes\n" * 100,
        "other-network": payloads.other_network,
        "truncated-s2f": payloads.s2f_model[: len(payloads.s2f_model) // 2],
        "bad-config-s2f": bad_config_model(home.inputs),
    }[kind]
    url = server.add("/m.safetensors", Route(body))
    with pytest.raises(S2FError) as exc:
        download(url)
    message = one_line(exc)
    assert fragment in message and ".partial" not in message
    assert home.finals() == [] and home.partials() == []
    if kind == "bad-config-s2f":
        with pytest.raises(CheckpointError, match="invalid configuration"):
            resolve_model(str(home.inputs / "bad-config.safetensors"))


def test_registry_size_and_class_count_are_checked(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    home.registry(
        model_entry("sized", url, size=len(payloads.official) + 1),
        model_entry("classes", url, num_classes=7),
    )
    with pytest.raises(DownloadError, match="the registry says"):
        download("sized")
    with pytest.raises(CheckpointError, match="5 classes, the registry says 7"):
        download("classes")
    assert home.finals() == [] and home.partials() == []


def test_changed_upstream_file_is_detected(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    cached = download(url).path
    before = cached.read_bytes()
    server.routes["/m.pth"] = Route(payloads.official_v2)

    with pytest.raises(DownloadError) as exc:
        download(url, force=True)

    message = one_line(exc)
    assert "has changed" in message and f"sha256='{sha256(payloads.official_v2)}'" in message
    assert cached.read_bytes() == before and home.partials() == []
    accepted = download(url, force=True, sha256=sha256(payloads.official_v2))
    assert accepted.checksum == "given"
    assert download(url, force=True).checksum == "seen"


def test_interrupted_download_keeps_its_partial_for_the_next_try(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/m.pth", Route(payloads.official))

    def interrupt(done: int, total: int | None) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download(url, progress=interrupt)
    assert home.finals() == [] and home.partials() == ["m.part", "m.part.json"]
    kept = (home.cache / ".partial" / "m.part").stat().st_size
    assert download(url).sha256 == sha256(payloads.official)
    assert server.log[-1].range == f"bytes={kept}-"


def test_concurrent_download_of_the_same_name_is_refused(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    with Cache(home.cache).downloading("m"):
        with pytest.raises(DownloadError, match="another s2f process"):
            download(url)
    assert server.log == []


# --- names that would leave the cache ----------------------------------------------------------

UNSAFE = ["../evil", "..", "a/b", "/abs/x", ".hidden", "a\\b", "x/../../y", "", "a\x00b", "C:x"]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_names_are_refused(
    server: WeightsServer, home: Home, payloads: Payloads, name: str
) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    with pytest.raises(WeightsSpecError) as exc:
        download(url, name=name)
    assert "invalid weights name" in one_line(exc)
    with pytest.raises(WeightsSpecError):
        check_name(name)
    assert server.log == [] and not home.cache.exists()


def test_a_url_whose_file_name_would_escape_needs_a_name(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/%2e%2e", Route(payloads.official))
    with pytest.raises(WeightsSpecError, match=r"pass name=\.\.\.$"):
        download(url)
    assert download(url, name="fine").path.parent == home.cache / "models"


def test_unsupported_sources(home: Home) -> None:
    for source, fragment in [
        ("ftp://example.org/m.pth", "unsupported URL scheme"),
        ("./absent.pth", "no such file"),
        ("not-registered", "unknown weights name"),
    ]:
        with pytest.raises(WeightsSpecError, match=fragment):
            download(source)
    with pytest.raises(WeightsSpecError, match="64 hexadecimal"):
        download("spike2former-sdtv2-ade20k", sha256="abc")
    assert not home.cache.exists()


# --- registry entries that need a browser, offline mode, resolve_model ------------------------


def test_manual_download_entry(home: Home, payloads: Payloads) -> None:
    with pytest.raises(DownloadError) as exc:
        download("sdtv3-19m-imagenet")
    message = one_line(exc)
    assert "drive.google.com/file/d/1pSGCOzrZNgHDxQXAp-Uelx61snIbQC1H" in message
    assert "s2f download FILE --cache-name sdtv3-19m-imagenet" in message
    assert not home.cache.exists()

    local = home.inputs / "E_19M_T4_checkpoint-197.pth"
    local.write_bytes(payloads.backbone)
    result = download(str(local), name="sdtv3-19m-imagenet")

    assert result.kind == "backbone" and result.checksum == "recorded"
    assert home.finals() == ["backbones/sdtv3-19m-imagenet.pth"]
    assert resolve_backbone("sdtv3-19m-imagenet", offline=True) == result.path
    with pytest.raises(WeightsSpecError, match="a backbone"):
        resolve_model("sdtv3-19m-imagenet")


def test_offline_mode_names_the_file_and_the_place(
    server: WeightsServer, home: Home, payloads: Payloads, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    home.registry(model_entry("tiny", url))
    target = home.cache / "models" / "tiny.safetensors"
    monkeypatch.setenv("S2F_OFFLINE", "1")

    for call in (lambda: resolve_model("tiny"), lambda: download("tiny")):
        with pytest.raises(OfflineError) as exc:
            call()
        message = one_line(exc)
        assert url in message and str(target) in message
        assert "s2f download FILE --cache-name tiny" in message
    with pytest.raises(OfflineError):
        resolve_model("tiny", offline=True)
    assert server.log == [] and not home.cache.exists()

    assert resolve_model("tiny", offline=False) == target  # the argument beats the variable
    assert resolve_model("tiny") == target  # cached: fine offline
    assert len(server.log) == 1


def test_resolve_model_paths_and_names(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    model_file = home.inputs / "mine.safetensors"
    model_file.write_bytes(payloads.s2f_model)
    official = home.inputs / "official.pth"
    official.write_bytes(payloads.official)

    assert resolve_model(str(model_file)) == model_file
    with pytest.raises(CheckpointError, match="s2f convert"):
        resolve_model(str(official))
    with pytest.raises(WeightsSpecError, match="no such model file"):
        resolve_model(str(home.inputs / "absent.safetensors"))
    with pytest.raises(WeightsSpecError, match="spike2former-sdtv2-ade20k"):
        resolve_model("no-such-model")

    url = server.add("/m.pth", Route(payloads.official))
    home.registry(model_entry("tiny", url))
    path = resolve_model("tiny")
    assert path == resolve_model("tiny") and len(server.log) == 1
    download(url, name="alias")
    assert resolve_model("alias") == home.cache / "models" / "alias.safetensors"


# --- the shipped registry, the cache location, the catalogue -----------------------------------


def test_shipped_registry() -> None:
    registry = load_registry()
    bundled = registry.pop(DEFAULT_MODEL)  # tests/test_bundled_model.py checks it
    assert bundled.bundled and not any(e.bundled for e in registry.values())
    models = {n: e for n, e in registry.items() if e.kind == "model"}
    backbones = {n: e for n, e in registry.items() if e.kind == "backbone"}
    assert len(models) == 5 and set(backbones) == {"sdtv2-15m-imagenet", "sdtv3-19m-imagenet"}
    for entry in registry.values():
        assert check_name(entry.name) == entry.name
        assert entry.source.startswith("https://")
        assert all(url.startswith("https://") for url in entry.urls)
        assert entry.notes
    for entry in models.values():
        assert entry.direct and entry.sha256 and len(entry.sha256) == 64
        assert entry.urls[0].startswith("https://huggingface.co/ZhenXXXXXin/Spike2Former/")
        assert entry.checksum_source and entry.config and entry.num_classes
        assert entry.class_names and len(entry.class_names) <= entry.num_classes
        assert entry.time_steps in (1, 4)
    for entry in backbones.values():
        assert not entry.direct and entry.sha256 is None and entry.size is None
    sizes = {e.class_list: len(e.class_names or ()) for e in models.values()}
    assert sizes == {"ade20k": 150, "cityscapes": 19, "voc": 21}
    assert registry["spike2former-sdtv2-voc-1x4"].class_names[:2] == ("background", "aeroplane")


def test_every_registered_model_names_its_preset() -> None:
    """A model's preset exists and has a training recipe; its classes, time steps and test size
    are the preset's, or differences stated in its overrides, which state nothing else."""
    models = {n: e for n, e in load_registry().items() if e.kind == "model"}
    assert models[DEFAULT_MODEL].preset == "tiny"
    for name, entry in models.items():
        assert entry.preset in PRESETS and entry.preset in RECIPES, name
        preset, built = PRESETS[entry.preset].to_dict(), entry.network_config().to_dict()
        stated = dict(_dotted(entry.overrides or {}))
        assert all(_at(preset, key) != value for key, value in stated.items()), name
        facts = {
            "head.num_classes": entry.num_classes,
            "backbone.time_steps": entry.time_steps,
            "test_size": entry.test_size or ModelConfig().test_size,
        }
        for key, value in facts.items():
            assert _at(built, key) == value, (name, key)
            assert value == _at(preset, key) or stated.get(key) == value, (name, key)


def _dotted(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _at(tree: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        tree = tree[key]
    return tree


U = "https://example.org/x.pth"


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"name": "../x", "kind": "model", "urls": [U], "source": "s"}, "invalid weights name"),
        ({"name": "x", "kind": "model", "urls": ["ftp://h/x"], "source": "s"}, "http"),
        ({"name": "x", "kind": "model", "urls": [U], "source": "s", "mirror": 1}, "unknown"),
        ({"name": "x", "kind": "checkpoint", "urls": [U], "source": "s"}, "kind must be"),
        ({"name": "x", "kind": "model", "urls": [U], "source": "s", "sha256": "AB"}, "sha256"),
        ({"name": "x", "kind": "model", "urls": [], "source": "s"}, "only for a bundled file"),
        ({"name": "x", "kind": "model", "urls": [], "source": "s", "bundled": "../m"}, "plain"),
        ({"name": "x", "kind": "model", "urls": [U], "source": "s", "class_names": "z"}, "z"),
        ({"name": "x", "kind": "model", "urls": [U]}, "every entry needs"),
        ({"name": "x", "kind": "model", "urls": [U], "source": "s", "test_size": 10**6}, "8192"),
        ({"name": "x", "kind": "model", "urls": [U], "source": "s", "num_classes": 10**6}, "most"),
        ({"name": "x", "kind": "model", "urls": [U], "source": "s", "time_steps": 10**4}, "most"),
        (
            {"name": "x", "kind": "model", "urls": [U], "source": "s", "class_names": ["x" * 300]},
            "256",
        ),
        (model_entry("x", U, preset="sdtv4"), "'preset' must name one of the presets: sdtv3b"),
        (model_entry("x", U, overrides={"head": {}}), "'overrides' needs a 'preset'"),
        (model_entry("x", U, preset="tiny", kind="backbone"), "only a model names a 'preset'"),
        (model_entry("x", U, preset="tiny", overrides={"class_names": []}), "object of backbone"),
        (model_entry("x", U, preset="tiny", overrides={"head": {"queries": 2}}), "HeadConfig"),
        (model_entry("x", U, preset="tiny", overrides={"test_size": -1}), "test_size"),
        (
            model_entry("x", U, preset="tiny", num_classes=11),
            "'num_classes' is 11 but preset 'tiny' with the overrides gives 150; state the",
        ),
        (model_entry("x", U, preset="sdtv2-cocostuff10k"), "'time_steps' is 1 but .* gives 4"),
        (model_entry("x", U, preset="sdtv2-cityscapes", test_size=512), "'test_size' is 512"),
    ],
)
def test_extra_registry_is_validated(home: Home, entry: dict[str, object], fragment: str) -> None:
    home.registry(entry)
    with pytest.raises(WeightsSpecError, match=fragment):
        load_registry()


def test_a_bundled_entry_without_its_file(home: Home) -> None:
    home.registry({"name": "ghost", "kind": "model", "urls": [], "source": "s", "bundled": "g.st"})
    with pytest.raises(WeightsSpecError, match="'ghost' should be shipped with s2f .* reinstall"):
        resolve_model("ghost")


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user = tmp_path / "user"
    monkeypatch.setenv("HOME", str(user))
    assert cache_dir({"S2F_HOME": "~/weights"}) == user / "weights"
    assert cache_dir({"S2F_HOME": "rel"}) == Path.cwd() / "rel"
    linux = default_cache_dir({}, "linux", home=user)
    assert linux == user / ".cache" / "s2f"
    assert default_cache_dir({"XDG_CACHE_HOME": "/xdg"}, "linux", user) == Path("/xdg/s2f")
    assert default_cache_dir({"XDG_CACHE_HOME": "relative"}, "linux", user) == linux
    assert default_cache_dir({}, "darwin", user) == user / "Library" / "Caches" / "s2f"
    assert default_cache_dir({"LOCALAPPDATA": "L"}, "win32", user) == Path("L", "s2f", "Cache")
    windows = user / "AppData" / "Local" / "s2f" / "Cache"
    assert default_cache_dir({}, "win32", user) == windows


def test_catalog_lists_registry_and_cache(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    download(url, name="mine")
    placed = home.cache / "models" / "by-hand.safetensors"
    placed.write_bytes(payloads.s2f_model)

    rows = {row["name"]: row for row in catalog()}

    assert set(load_registry()) < set(rows)
    assert rows["spike2former-sdtv2-ade20k"]["cached"] is None
    mine = rows["mine"]
    assert not mine["registered"] and mine["kind"] == "model"
    assert mine["cached"]["source"] == url
    assert mine["cached"]["source_sha256"] == sha256(payloads.official)
    assert mine["cached"]["sha256"] == sha256((home.cache / "models/mine.safetensors").read_bytes())
    assert rows["by-hand"]["cached"]["sha256"] == sha256(payloads.s2f_model)
    json.dumps(list(rows.values()))


@pytest.mark.parametrize(
    ("value", "offline"), [("1", True), ("true", True), ("On", True), ("0", False), ("", False)]
)
def test_offline_variable(value: str, offline: bool) -> None:
    assert is_offline(None, {"S2F_OFFLINE": value}) is offline
    assert is_offline(False, {"S2F_OFFLINE": value}) is False
    assert is_offline(True, {}) is True


def test_fit_class_names() -> None:
    assert fit_class_names(None, 3) is None
    assert fit_class_names(("a",), 3) == ("a", "unused_1", "unused_2")
    with pytest.raises(CheckpointError):
        fit_class_names(("a", "b"), 1)


def test_backbone_payload_is_a_real_checkpoint(payloads: Payloads, tmp_path: Path) -> None:
    """Guards the fixture: the backbone bytes load as a torch file."""
    path = tmp_path / "b.pth"
    path.write_bytes(payloads.backbone)
    assert "model" in torch.load(path, weights_only=True)
