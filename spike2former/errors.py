"""Exceptions with messages meant for the person running the tool."""

from __future__ import annotations


class S2FError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


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
