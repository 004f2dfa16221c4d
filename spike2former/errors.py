"""Exceptions, and notes, with messages meant for the person running the tool."""

from __future__ import annotations

import re
from collections.abc import Callable

Spelling = Callable[[str, object], str]

_ARGUMENT = re.compile(r"\{(\w+)\}")


def as_keyword(name: str, value: object) -> str:
    """An argument as a Python call writes it: ``num_classes=3`` (``name=...`` for any value)."""
    return f"{name}=..." if value is ... else f"{name}={value!r}"


class NamesArguments(Exception):
    """A message that names arguments of the library: ``{name}`` in ``template`` stands for
    the argument ``name`` and ``fields[name]`` for its value. ``str()`` writes them as a Python
    call does (``num_classes=3``), ``describe`` as a front end does (``--num-classes 3``): the
    library speaks of its arguments, and each front end names its own options."""

    def __init__(self, template: str = "", **fields: object) -> None:
        self.template = template
        self.fields = fields
        super().__init__(self.describe(as_keyword))

    def describe(self, spell: Spelling) -> str:
        """The message with each argument it names written as ``spell(name, value)``."""

        def argument(match: re.Match[str]) -> str:
            name = match[1]
            return spell(name, self.fields[name]) if name in self.fields else match[0]

        return _ARGUMENT.sub(argument, self.template)


class S2FError(NamesArguments):
    """Base class: the message says what went wrong and what to do about it, naming arguments
    as ``NamesArguments`` does."""


class Note(NamesArguments, UserWarning):
    """Something the person running the tool should know about work that goes ahead anyway,
    naming arguments as errors do."""


class OutputError(S2FError):
    """A result file cannot be written."""


class CheckpointError(S2FError):
    """A weights file is missing, unreadable, unsafe, or does not match the model."""


class ConfigError(S2FError, ValueError):
    """A model configuration no network is built from: the message names the field (also a
    ``ValueError``, as configuration errors were before)."""


class WeightsSpecError(S2FError):
    """A weights name, URL or option is unusable as given (a usage error, not a failure)."""


class DownloadError(S2FError):
    """A download failed, or what arrived is not the promised file; nothing was cached."""


class OfflineError(S2FError):
    """Weights are needed that are not cached, and downloads are switched off."""


class DatasetError(S2FError):
    """A dataset is missing, laid out differently than expected, or has a bad file.

    The message names the file or folder concerned and what was expected there.
    """
