"""``s2f models``: the registry of known weights and what is in the cache."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from spike2former.weights import Cache, catalog

from .console import reported_errors, stdout
from .options import option


def models(
    json_output: Annotated[bool, option("--json", "Registry fields plus 'cached'.")] = False,
) -> None:
    """List the known weights and the cached files (size, SHA-256, path)."""
    cache = Cache()
    with reported_errors():
        rows = catalog(cache)
    if json_output:
        typer.echo(json.dumps({"cache": str(cache.root), "weights": rows}, indent=2))
        return
    stdout.print(_registry_table(rows))
    stdout.print(_cache_table(rows, str(cache.root)))


def _registry_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Known weights", title_justify="left")
    table.add_column("Name", no_wrap=True)
    for column in ("Kind", "Trained on", "T", "Checksum", "Download", "Cached"):
        table.add_column(column)
    for row in rows:
        if row["registered"]:
            table.add_row(
                escape(row["name"]),
                row["kind"],
                escape(re.split(r" \(|,", row.get("dataset") or "-")[0]),
                str(row["time_steps"]) if row["kind"] == "model" else "-",
                "published" if row["sha256"] else "[yellow]unpublished[/]",
                "[green]bundled[/]" if row["bundled"] else _download(row),
                "[green]bundled[/]" if row["bundled"] else _yes_no(row["cached"]),
            )
    return table


def _yes_no(cached: object) -> str:
    return "[green]yes[/]" if cached else "no"


def _download(row: dict[str, Any]) -> str:
    host = escape(urllib.parse.urlsplit(row["urls"][0]).netloc.removeprefix("www."))
    return f"{host}" if row["direct"] else f"[yellow]manual[/] ({host})"


def _cache_table(rows: list[dict[str, Any]], root: str) -> Table | str:
    cached = [row for row in rows if row["cached"]]
    if not cached:
        return f"Nothing cached yet in {escape(root)}"
    table = Table(title=f"Cached in {escape(root)}", title_justify="left")
    table.add_column("Name", no_wrap=True)
    table.add_column("Size", justify="right")
    table.add_column("SHA-256")
    table.add_column("Path", overflow="fold")
    for row in cached:
        info = row["cached"]
        table.add_row(
            escape(row["name"]),
            f"{info['size'] / 1e6:.1f} MB",
            info["sha256"][:16] + "…",
            escape(info["path"]),
        )
    return table
