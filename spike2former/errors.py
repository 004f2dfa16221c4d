"""Exceptions with messages meant for the person running the tool."""

from __future__ import annotations


class S2FError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class CheckpointError(S2FError):
    """A weights file is missing, unreadable, unsafe, or does not match the model."""
