"""Shared by the library and CLI download tests: a real HTTP server on 127.0.0.1 with the
misbehaviours the tests need, the files it serves, and an isolated home for the cache.

Each server path is a ``Route``: a body and how to serve it (honouring ``Range`` or not, cutting
the connection, stalling, an error status, a redirect). Every request is logged with its
``Range`` and ``If-Range`` headers so that tests can check what the client asked for.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
import torch

from spike2former import save_model
from tests.helpers import make_model, small_config, write_official_checkpoint

Mode = Literal["range", "ignore-range", "cut", "stall", "status", "redirect"]


@dataclass
class Route:
    body: bytes = b""
    mode: Mode = "range"
    content_type: str = "application/octet-stream"
    cut: int = 0  # "cut" / "stall": bytes sent before closing / stalling
    status: int = 200  # "status": the error status; "redirect": 301/302/307
    location: str = ""  # "redirect": where to
    etag: str | None = None


@dataclass(frozen=True)
class Logged:
    path: str
    range: str | None
    if_range: str | None


class WeightsServer:
    """``ThreadingHTTPServer`` on 127.0.0.1, an ephemeral port, in a daemon thread."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[Logged] = []
        self.release = threading.Event()  # lets stalled handlers finish at shutdown
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: WeightsServer

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up (the timeout tests) are expected; keep the output clean."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silence the per-request log lines."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        owner = self.server.owner
        owner.log.append(Logged(self.path, self.headers.get("Range"), self.headers.get("If-Range")))
        route = owner.routes.get(self.path)
        if route is None:
            self._error(404, "Not Found")
        elif route.mode == "status":
            self._error(route.status, "Nope")
        elif route.mode == "redirect":
            self.send_response(route.status)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route.mode == "range" and self._wanted_range(route) is not None:
            start = self._wanted_range(route)
            body = route.body
            if start >= len(body):  # type: ignore[operator]
                self._error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self._send_body(route, body[start:])
        else:
            self.send_response(200)
            self._send_body(route, route.body)

    def _wanted_range(self, route: Route) -> int | None:
        value = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if not value or not value.startswith("bytes=") or not value.endswith("-"):
            return None
        if if_range is not None and if_range != route.etag:
            return None  # the file changed since: send it whole (RFC 9110 If-Range)
        return int(value[len("bytes=") : -1])

    def _send_body(self, route: Route, body: bytes) -> None:
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(body)))
        if route.etag:
            self.send_header("ETag", route.etag)
        self.end_headers()
        if route.mode in ("cut", "stall"):
            self.wfile.write(body[: route.cut])
            self.wfile.flush()
            if route.mode == "stall":
                self.server.owner.release.wait(10)
            self.close_connection = True
            return
        self.wfile.write(body)

    def _error(self, status: int, reason: str) -> None:
        body = f"{status} {reason}\n".encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# --- what the server serves -------------------------------------------------------------------


@dataclass(frozen=True)
class Payloads:
    """Files as published: official checkpoints (two versions), an official-key safetensors, an
    s2f model file, a backbone and a state dict of some other network, all of ``small_config()``
    where they are Spike2Former weights."""

    official: bytes
    official_v2: bytes
    official_safetensors: bytes
    s2f_model: bytes
    backbone: bytes
    other_network: bytes


def build_payloads(directory: Path) -> Payloads:
    directory.mkdir(parents=True, exist_ok=True)
    save_model(make_model(small_config()), directory / "model.safetensors")
    torch.save({"model": {"patch_embed.weight": torch.ones(2, 3)}}, directory / "backbone.pth")
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, directory / "resnet.pth")
    return Payloads(
        official=write_official_checkpoint(directory / "a.pth").read_bytes(),
        official_v2=write_official_checkpoint(directory / "b.pth", seed=1).read_bytes(),
        official_safetensors=write_official_checkpoint(
            directory / "c.safetensors", fmt="safetensors"
        ).read_bytes(),
        s2f_model=(directory / "model.safetensors").read_bytes(),
        backbone=(directory / "backbone.pth").read_bytes(),
        other_network=(directory / "resnet.pth").read_bytes(),
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- an isolated home ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Home:
    """``S2F_HOME`` (``cache``), plus the directories nothing may be written to: the user's home
    and cache directories, the working directory and the temporary directory. ``inputs`` holds
    what a test serves from disk."""

    root: Path
    cache: Path
    inputs: Path
    untouchable: tuple[Path, ...]
    monkeypatch: pytest.MonkeyPatch

    def finals(self) -> list[str]:
        """Files under models/ and backbones/, relative to the cache."""
        return sorted(
            p.relative_to(self.cache).as_posix()
            for folder in ("models", "backbones")
            for p in (self.cache / folder).glob("*")
        )

    def partials(self) -> list[str]:
        """Unfinished downloads in the partial area (lock files left out)."""
        folder = self.cache / ".partial"
        return sorted(p.name for p in folder.glob("*") if not p.name.endswith(".lock"))

    def registry(
        self, *entries: dict[str, Any], class_lists: dict[str, list[str]] | None = None
    ) -> Path:
        """Write ``entries`` as an extra registry and point ``$S2F_REGISTRY`` at it."""
        path = self.inputs / "registry.json"
        path.write_text(json.dumps({"weights": list(entries), "class_lists": class_lists or {}}))
        self.monkeypatch.setenv("S2F_REGISTRY", str(path))
        return path


@contextmanager
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """Point S2F_HOME, HOME, the XDG cache, the working and the temporary directory into
    ``tmp_path``; afterwards, check that nothing but the cache was written."""
    user, work, temp = tmp_path / "user", tmp_path / "work", tmp_path / "tmp"
    inputs = tmp_path / "inputs"
    for directory in (user, work, temp, inputs):
        directory.mkdir()
    home = Home(tmp_path, tmp_path / "s2f_home", inputs, (user, work, temp), monkeypatch)
    monkeypatch.setenv("S2F_HOME", str(home.cache))
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.setenv("XDG_CACHE_HOME", str(user / ".cache"))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("S2F_OFFLINE", "S2F_REGISTRY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    yield home
    for directory in home.untouchable:
        assert sorted(p.name for p in directory.iterdir()) == [], f"{directory} was written to"
    allowed = {"s2f_home", "user", "work", "tmp", "inputs"}
    assert {p.name for p in tmp_path.iterdir()} <= allowed
