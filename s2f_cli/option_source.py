"""Which options a command was given, told apart from defaults by Click's parameter source (an
option left at its default is not given, whatever its value; one given its default value is)."""

from __future__ import annotations

import typer

# Typer ships its own copy of Click, so its ``ParameterSource`` is matched by member name.
_GIVEN = frozenset({"COMMANDLINE", "ENVIRONMENT"})


def given_options(ctx: typer.Context) -> list[str]:
    """Names of the parameters given on the command line or through the environment, in the
    order the command declares them."""
    names = [param.name for param in ctx.command.params if param.name is not None]
    return [name for name in names if getattr(ctx.get_parameter_source(name), "name", "") in _GIVEN]


def option_flags(ctx: typer.Context) -> dict[str, str]:
    """Each parameter's name and its long flag (``dataset_format`` -> ``--format``)."""
    return {param.name: max(param.opts, key=len) for param in ctx.command.params if param.name}
