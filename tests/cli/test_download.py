"""``s2f download``, ``s2f models`` and the ``--model`` option helper, through the Typer app,
against a real HTTP server on 127.0.0.1 (and once through ``python -m s2f_cli``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from s2f_cli.app import app
from s2f_cli.model_option import model_path
from s2f_cli.options import ModelOption, OfflineOption
from spike2former.model_file import read_model_config
from tests.cli.assertions import assert_one_error_line, lines, run_s2f
from tests.download_helpers import (
    Home,
    Payloads,
    Route,
    WeightsServer,
    sha256,
)
from tests.helpers import small_config


def s2f(*args: str | Path) -> Result:
    return CliRunner().invoke(app, list(map(str, args)))


def test_download_prints_the_path_last(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/iter_160000.pth", Route(payloads.official))
    result = s2f("download", url)
    assert result.exit_code == 0, result.output
    path = home.cache / "models" / "iter_160000.safetensors"
    assert lines(result.stdout) == [str(path)]
    assert sha256(payloads.official) in result.stderr and "converted" in result.stderr
    assert read_model_config(path) == small_config()

    again = s2f("download", url)
    assert again.exit_code == 0 and lines(again.stdout)[-1] == str(path)
    assert "already cached" in again.stderr and len(server.log) == 1


def test_quiet_and_checksum(server: WeightsServer, home: Home, payloads: Payloads) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    result = s2f("download", url, "--sha256", sha256(payloads.official).upper(), "-q")
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == [str(home.cache / "models" / "m.safetensors")]
    assert lines(result.stderr) == []


def test_wrong_checksum(server: WeightsServer, home: Home, payloads: Payloads) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    result = s2f("download", url, "--sha256", "f" * 64)
    assert_one_error_line(result, 1, "SHA-256 mismatch", "not cached")
    assert home.finals() == [] and home.partials() == []


def test_http_404(server: WeightsServer, home: Home) -> None:
    assert_one_error_line(s2f("download", server.url("/gone.pth")), 1, "HTTP 404")
    assert home.finals() == [] and home.partials() == []


def test_connection_closed_mid_file_then_resumed(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    url = server.add("/m.pth", Route(payloads.official, mode="cut", cut=2048))
    assert_one_error_line(s2f("download", url), 1, "closed after 2048", "resume")
    assert home.finals() == [] and home.partials() == ["m.part", "m.part.json"]

    server.routes["/m.pth"] = Route(payloads.official)
    result = s2f("download", url)
    assert result.exit_code == 0, result.output
    assert server.log[-1].range == "bytes=2048-" and home.partials() == []


def test_slow_server_times_out(server: WeightsServer, home: Home, payloads: Payloads) -> None:
    url = server.add("/m.pth", Route(payloads.official, mode="stall", cut=100))
    assert_one_error_line(s2f("download", url, "--timeout", "0.3"), 1, "timed out")
    assert home.finals() == []


def test_web_page(server: WeightsServer, home: Home) -> None:
    url = server.add("/view", Route(b"<html><body>sign in</body></html>", content_type="text/html"))
    assert_one_error_line(s2f("download", url, "--cache-name", "drive"), 1, "web page")
    assert home.finals() == [] and home.partials() == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--cache-name", "../escape"], "invalid weights name"),
        (["--cache-name", "/etc/passwd"], "invalid weights name"),
        (["--sha256", "xyz"], "--sha256 xyz: expected 64 hexadecimal digits"),
    ],
)
def test_usage_errors(
    server: WeightsServer, home: Home, payloads: Payloads, args: list[str], fragment: str
) -> None:
    url = server.add("/m.pth", Route(payloads.official))
    assert_one_error_line(s2f("download", url, *args), 2, fragment)
    assert server.log == [] and not home.cache.exists()


def test_library_arguments_are_named_as_options(
    server: WeightsServer, home: Home, payloads: Payloads
) -> None:
    """``download``'s ``name`` is ``--cache-name`` here (``--name`` names segment's run folder)."""
    url = server.add("/%2e%2e", Route(payloads.official))
    assert_one_error_line(s2f("download", url), 2, "; pass --cache-name NAME")
    registered = s2f("download", "spike2former-sdtv2-ade20k", "--cache-name", "mine")
    assert_one_error_line(registered, 2, "--cache-name mine names only URLs and local files")
    assert server.log == [] and not home.cache.exists()


def test_unknown_name_and_manual_entry(home: Home) -> None:
    assert_one_error_line(s2f("download", "sdtv9-huge"), 2, "unknown weights name")
    assert_one_error_line(
        s2f("download", "sdtv2-15m-imagenet"),
        1,
        "pan.baidu.com/s/1utTHItl5PdcCaKfyZY_XLA",
        "--cache-name sdtv2-15m-imagenet",
    )
    assert not home.cache.exists()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_offline(home: Home, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    args = ["download", "spike2former-sdtv2-ade20k"]
    if how == "flag":
        args.append("--offline")
    else:
        monkeypatch.setenv("S2F_OFFLINE", "1")
    target = home.cache / "models" / "spike2former-sdtv2-ade20k.safetensors"
    assert_one_error_line(s2f(*args), 1, "downloads are off (--offline or", str(target))
    assert not home.cache.exists()


def test_models(server: WeightsServer, home: Home, payloads: Payloads) -> None:
    empty = s2f("models")
    assert empty.exit_code == 0, empty.output
    assert "spike2former-sdtv2-ade20k" in empty.stdout and "Nothing cached" in empty.stdout

    url = server.add("/m.pth", Route(payloads.official))
    assert s2f("download", url, "--cache-name", "mine", "-q").exit_code == 0
    table = s2f("models")
    assert table.exit_code == 0 and "mine" in table.stdout

    result = s2f("models", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cache"] == str(home.cache)
    rows = {row["name"]: row for row in data["weights"]}
    assert rows["spike2former-sdtv2-ade20k"]["sha256"].startswith("6384d6bf")
    assert rows["sdtv3-19m-imagenet"]["direct"] is False
    cached = rows["mine"]["cached"]
    assert cached["path"] == str(home.cache / "models" / "mine.safetensors")
    assert cached["source_sha256"] == sha256(payloads.official) and cached["size"] > 0


def test_model_option_helper(server: WeightsServer, home: Home, payloads: Payloads) -> None:
    """What ``segment``/``eval`` get by declaring ``--model`` and ``--offline`` this way."""
    command = typer.Typer()

    @command.command()
    def show(model: ModelOption, offline: OfflineOption = False) -> None:
        typer.echo(model_path(model, offline))

    url = server.add("/m.pth", Route(payloads.official))
    home.registry({"name": "tiny", "kind": "model", "urls": [url], "source": "https://x.org"})
    target = home.cache / "models" / "tiny.safetensors"

    def run(*args: str) -> Result:
        return CliRunner().invoke(command, list(args))

    offline = run("--model", "tiny", "--offline")
    assert_one_error_line(offline, 1, "downloads are off", str(target))
    first = run("--model", "tiny")
    assert first.exit_code == 0, first.output
    assert lines(first.stdout) == [str(target)]
    assert lines(run("-m", str(target), "--offline").stdout) == [str(target)]
    assert_one_error_line(run("--model", "no such name"), 2, "invalid weights name")
    assert_one_error_line(run("--model", "../x.safetensors"), 2, "no such model file")
    message = "a backbone (ImageNet weights): give it as --init-backbone sdtv2-15m-imagenet"
    assert_one_error_line(run("--model", "sdtv2-15m-imagenet"), 2, message)
    assert len(server.log) == 1


def test_python_m_s2f_cli(tmp_path: Path, payloads: Payloads) -> None:
    """The real entry point in a fresh interpreter: stdout is only the path, from a file URL."""
    source = tmp_path / "official.pth"
    source.write_bytes(payloads.official)
    cache = tmp_path / "cache"
    env = {"S2F_HOME": str(cache), "HOME": str(tmp_path / "user")}
    completed = run_s2f(
        "download", source.as_uri(), "--cache-name", "official", cwd=tmp_path, env=env
    )
    assert completed.returncode == 0, completed.stderr
    assert lines(completed.stdout) == [str(cache / "models" / "official.safetensors")]
    assert "Traceback" not in completed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "official.pth"]
