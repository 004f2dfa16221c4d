"""Bytes from a URL or a local file into a partial file, resumable, hashed on the way.

Only the transfer lives here: what the bytes must be (checksum, format) is checked by the caller.
A partial file is kept after failures that a later try can resume (a dropped connection, a
timeout, a server error); it is removed when resuming cannot help (the server has no such file,
or sent a web page). Next to it, ``<partial>.json`` records the URL and the validators (ETag,
Last-Modified) of the response it came from, so that a resumed download never splices two
different versions of a file together.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO

from ..errors import DownloadError

# (bytes done, total bytes or None when the server does not say)
ProgressCallback = Callable[[int, int | None], None]

CHUNK = 1 << 20
# Statuses after which the same request may succeed later: keep the partial file for then.
_TRANSIENT = (408, 425, 429)
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Fetched:
    """A complete partial file: its SHA-256 and size."""

    sha256: str
    size: int


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects (Hugging Face sends downloads to a CDN) but only to http(s) URLs."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise DownloadError(f"{req.full_url}: redirected to a non-HTTP URL ({newurl})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def fetch_url(
    url: str,
    partial: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: ProgressCallback | None = None,
) -> Fetched:
    """Download ``url`` into ``partial``, resuming what an earlier try left there.

    Resumes with ``Range: bytes=N-`` (guarded by ``If-Range``); a server that ignores the range
    and answers 200 is read from the start again. ``timeout`` bounds the connection and every
    single read, in seconds.
    """
    for attempt in range(2):
        offset = _resumable_bytes(url, partial)
        request = urllib.request.Request(url, headers=_headers(partial, offset))
        try:
            response = _OPENER.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and attempt == 0:
                discard_partial(partial)  # the partial does not fit the file any more: start again
                continue
            if exc.code in _TRANSIENT or exc.code >= 500:
                raise DownloadError(
                    f"{url}: HTTP {exc.code} {exc.reason}; {_kept(partial)}"
                ) from None
            discard_partial(partial)
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"{url}: request failed ({_reason(exc, timeout)})") from None
        with response:
            return _receive(url, response, partial, offset, timeout, progress)
    raise DownloadError(f"{url}: the server keeps refusing the byte range; try again later")


def copy_file(source: Path, partial: Path, progress: ProgressCallback | None = None) -> Fetched:
    """Copy a local file into ``partial`` (from the start), hashing it on the way."""
    discard_partial(partial)
    try:
        total = source.stat().st_size
        src = open(source, "rb")
    except OSError as exc:
        raise DownloadError(f"{source}: cannot read the file ({exc.strerror or exc})") from None
    try:
        with src:
            return _stream(src, str(source), partial, "wb", hashlib.sha256(), 0, total, progress)
    except OSError as exc:  # reading on, or writing the copy (a full disk)
        discard_partial(partial)
        raise DownloadError(
            f"{source}: cannot copy the file into the cache ({exc.strerror or exc})"
        ) from None


def _receive(
    url: str,
    response: http.client.HTTPResponse,
    partial: Path,
    offset: int,
    timeout: float,
    progress: ProgressCallback | None,
) -> Fetched:
    if response.headers.get_content_type() == "text/html":
        discard_partial(partial)
        raise DownloadError(html_message(url))
    hasher = hashlib.sha256()
    mode = "wb"
    if response.status == 206 and offset:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
            discard_partial(partial)
            raise DownloadError(
                f"{url}: the server resumed at byte {start}, not {offset}; run again to restart"
            )
        _hash_existing(partial, hasher)
        mode = "ab"
    else:
        offset = 0  # a full answer (200): the server ignored the range, or there was none
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    try:
        _write_meta(partial, url, response)
    except OSError as exc:
        raise DownloadError(f"{url}: cannot write into the cache ({exc.strerror or exc})") from None
    try:
        fetched = _stream(response, url, partial, mode, hasher, offset, total, progress)
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(
            f"{url}: download interrupted ({_reason(exc, timeout)}); {_kept(partial)}"
        ) from None
    if total is not None and fetched.size < total:
        raise DownloadError(
            f"{url}: the connection closed after {fetched.size} of {total} bytes; {_kept(partial)}"
        )
    if total is not None and fetched.size > total:
        discard_partial(partial)
        raise DownloadError(f"{url}: the server sent {fetched.size} bytes, more than {total}")
    return fetched


def _stream(
    source: IO[bytes] | http.client.HTTPResponse,
    label: str,
    partial: Path,
    mode: str,
    hasher: hashlib._Hash,
    done: int,
    total: int | None,
    progress: ProgressCallback | None,
) -> Fetched:
    partial.parent.mkdir(parents=True, exist_ok=True)
    read = getattr(source, "read1", source.read)  # what has arrived, so nothing waits in a buffer
    with open(partial, mode) as out:
        if progress:
            progress(done, total)
        while chunk := read(CHUNK):
            if done == 0 and looks_like_html(chunk):
                out.close()
                discard_partial(partial)
                raise DownloadError(html_message(label))
            out.write(chunk)
            hasher.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return Fetched(hasher.hexdigest(), done)


def _resumable_bytes(url: str, partial: Path) -> int:
    """Bytes of ``partial`` that a range request may continue, 0 to start afresh."""
    meta = _read_meta(partial)
    if not partial.is_file() or meta.get("url") != url:
        discard_partial(partial)
        return 0
    return partial.stat().st_size


def _headers(partial: Path, offset: int) -> dict[str, str]:
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        meta = _read_meta(partial)
        etag = meta.get("etag")
        validator = etag if etag and not etag.startswith("W/") else meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    return headers


def _content_range(value: str | None) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None); (-1, None) when unreadable."""
    try:
        unit, spec = (value or "").split(" ", 1)
        span, total = spec.split("/", 1)
        start = int(span.split("-", 1)[0])
        return (start if unit == "bytes" else -1), (int(total) if total != "*" else None)
    except ValueError:
        return -1, None


def _hash_existing(partial: Path, hasher: hashlib._Hash) -> None:
    with open(partial, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)


def _meta_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def _read_meta(partial: Path) -> dict[str, str]:
    try:
        meta = json.loads(_meta_path(partial).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _write_meta(partial: Path, url: str, response: http.client.HTTPResponse) -> None:
    meta = {"url": url}
    for key, header in (("etag", "ETag"), ("last_modified", "Last-Modified")):
        if value := response.headers.get(header):
            meta[key] = value
    partial.parent.mkdir(parents=True, exist_ok=True)
    _meta_path(partial).write_text(json.dumps(meta), encoding="utf-8")


def discard_partial(partial: Path) -> None:
    """Remove a partial download and its metadata, if there."""
    for path in (partial, _meta_path(partial)):
        path.unlink(missing_ok=True)


def _kept(partial: Path) -> str:
    size = partial.stat().st_size if partial.is_file() else 0
    if not size:
        discard_partial(partial)
        return "run the same command again to retry"
    return f"{size} bytes kept in {partial}; run the same command again to resume"


def looks_like_html(head: bytes) -> bool:
    """Whether a file starts like a web page (a share page or a login page, not a checkpoint)."""
    start = head[:512].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<!--"))


def html_message(url: str) -> str:
    """The error for a web page where a checkpoint was expected."""
    return (
        f"{url}: a web page, not a checkpoint (share links of Google Drive or "
        "Baidu Netdisk are pages: download the file in a browser, then run "
        "`s2f download FILE --cache-name NAME`)"
    )


def _reason(exc: BaseException, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"timed out: no data for {timeout:g} s"
    if isinstance(reason, BaseException):
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    else:
        text = str(reason)
    return " ".join(text.split())


def _user_agent() -> str:
    try:
        return f"s2f/{version('s2f')} (python-urllib)"
    except PackageNotFoundError:
        return "s2f (python-urllib)"
