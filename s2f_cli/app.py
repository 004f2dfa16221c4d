"""The ``s2f`` Typer application: one sub-command per module in this package."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from spike2former.inference.allocator import keep_freed_memory

from . import convert, download, evaluate, firing_rates, models, pretrain, segment, train
from .console import EXIT_USAGE, stderr

try:  # recent Typer carries its own Click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - Typer on Click
    from click.exceptions import ClickException, NoArgsIsHelpError


class OneLineErrors(TyperGroup):
    """Usage errors (unknown option, bad value) printed like every other failure: one
    ``error:`` line and one hint, not a framed box."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as exc:
            stderr.print(exc.ctx.get_help() if exc.ctx else str(exc), highlight=False)
            sys.exit(EXIT_USAGE)
        except ClickException as exc:
            message = " ".join(exc.format_message().split())  # choices come one per line
            stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
            context = getattr(exc, "ctx", None)
            if context is not None:
                stderr.print(f"Try '{context.command_path} --help'.", highlight=False)
            sys.exit(exc.exit_code)
        except typer.Abort:
            stderr.print("[bold red]error:[/] interrupted", highlight=False)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
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
app.command("pretrain")(pretrain.pretrain_command)
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
