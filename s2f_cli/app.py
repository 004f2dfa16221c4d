"""The ``s2f`` Typer application: one sub-command per module in this package."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import typer

from spike2former.inference.allocator import keep_freed_memory

from . import convert, download, evaluate, firing_rates, models, segment, train

app = typer.Typer(
    name="s2f",
    help="Spike2Former spiking transformers for semantic segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command("convert")(convert.convert)
app.command("download")(download.download)
app.command("models")(models.models)
app.command("segment")(segment.segment)
app.command("train")(train.train_command)
app.command("eval")(evaluate.evaluate_command)
app.command("firing-rates")(firing_rates.firing_rates)


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"s2f {version('s2f')}")
        except PackageNotFoundError:
            typer.echo("s2f (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Spike2Former spiking transformers for semantic segmentation."""
    keep_freed_memory()  # a command runs one job: reuse activation memory instead of re-faulting


def main() -> None:
    app()
