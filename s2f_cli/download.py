"""``s2f download``: weights by registry name, URL or path into the cache, checked."""

from __future__ import annotations

from typing import Annotated

import typer

from spike2former.errors import WeightsSpecError
from spike2former.weights import DEFAULT_TIMEOUT, DownloadResult
from spike2former.weights import download as download_weights

from .api_options import option_errors
from .console import stderr, stdout
from .download_progress import download_progress
from .options import OfflineOption, QuietOption, option

# ``download``'s arguments whose option has another name.
_FLAGS = {"name": "--cache-name"}
_CHECKS = {
    "published": "published SHA-256 verified",
    "given": "SHA-256 verified (--sha256)",
    "seen": "SHA-256 matches the first download",
    "recorded": "no published checksum; SHA-256 recorded for later downloads",
}


def download(
    source: Annotated[
        str,
        typer.Argument(
            metavar="NAME|URL|PATH",
            help="A registry name (see `s2f models`), an http(s):// or file:// URL, or a local "
            "file.",
            show_default=False,
        ),
    ],
    sha256: Annotated[str | None, option("--sha256", metavar="HEX")] = None,
    name: Annotated[
        str | None,
        option(
            "--cache-name",
            "A registry name also applies that entry's checksum, time steps and class names.",
            show_default="the file name without its suffix",
        ),
    ] = None,
    force: Annotated[bool, option("--force", "(The cached file: download it again.)")] = False,
    offline: OfflineOption = False,
    timeout: Annotated[float, option("--timeout", min=0.01)] = DEFAULT_TIMEOUT,
    quiet: QuietOption = False,
) -> None:
    """Download checked weights into the cache; print the cached file's path last on stdout.

    Official checkpoints are converted to s2f model files on the way in.
    """
    with (
        option_errors(_FLAGS, usage=(WeightsSpecError,)),
        download_progress(_label(source), enabled=not quiet) as progress,
    ):
        result = download_weights(
            source,
            name=name,
            sha256=sha256,
            force=force,
            offline=offline or None,
            timeout=timeout,
            progress=progress,
        )
    if not quiet:
        stderr.print(_summary(result), highlight=False, markup=False)
    stdout.print(str(result.path), highlight=False, markup=False)


def _label(source: str) -> str:
    """A short progress-bar label: the file name of a URL or path, or the registry name."""
    return source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or source


def _summary(result: DownloadResult) -> str:
    if result.cached:
        return f"{result.name}: already cached (use --force to download again)"
    size = f"{result.size / 1e6:.1f} MB" if result.size is not None else "unknown size"
    check = _CHECKS.get(result.checksum, result.checksum)
    converted = ", converted to an s2f model file" if result.converted else ""
    return f"{result.name}: {size}, sha256 {result.sha256}, {check}{converted}"
