"""The library's arguments as this command line's options.

Library errors and notes name arguments (``num_classes=3``, ``NamesArguments``); the commands
say the option that sets each instead (``--num-classes 3``). An argument takes the option of its
own name (``init_backbone`` -> ``--init-backbone``) unless it is renamed here or by the command;
one that no option sets keeps its Python spelling.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from spike2former.errors import NamesArguments, as_keyword

from .console import EXIT_USAGE, fail, reported_errors
from .options import VOCABULARY

# Library arguments whose option has another name.
_RENAMED = {"root": "--data", "test_size": "--imgsz"}


def option_of(name: str, flags: Mapping[str, str] | None = None) -> str | None:
    """The option that sets the argument ``name``: the command's own (``flags``), else the
    vocabulary's; None where no option does."""
    if flags and name in flags:
        return flags[name]
    flag = _RENAMED.get(name, "--" + name.replace("_", "-"))
    return flag if flag in VOCABULARY else None


def as_option(name: str, value: object, flags: Mapping[str, str] | None = None) -> str:
    """An argument as the command line gives it: ``--num-classes 3``, ``--offline`` for a
    switch that is on, ``--cache-name NAME`` for any value (``...``)."""
    flag = option_of(name, flags)
    if flag is None:
        return as_keyword(name, value)
    if value is True:
        return flag
    return f"{flag} {name.upper() if value is ... else as_text(value)}"


def as_text(value: object) -> str:
    """A value as the command line spells it (``none``, ``512x512``)."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value)


def described(message: NamesArguments, flags: Mapping[str, str] | None = None) -> str:
    """A library error or note with the options of the arguments it names."""
    return message.describe(lambda name, value: as_option(name, value, flags))


@contextmanager
def option_errors(
    flags: Mapping[str, str] | None = None, usage: tuple[type[NamesArguments], ...] = ()
) -> Iterator[None]:
    """``reported_errors`` with the options of the arguments the library names: one red line,
    exit 2 for the kinds of error in ``usage`` and 1 for the other failures."""
    with reported_errors():
        try:
            yield
        except usage as exc:
            raise fail(described(exc, flags), EXIT_USAGE) from None
        except NamesArguments as exc:
            raise fail(described(exc, flags)) from None
