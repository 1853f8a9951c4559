"""The one exception family for mistakes a user can make.

The command line prints the message of a `DescendError` and exits with status 2, without a
traceback; every message says what is wrong and what to do about it.
"""

from __future__ import annotations


class DescendError(Exception):
    """A problem the user can fix: bad input, a missing file, an invalid option."""


class ConfigError(DescendError, ValueError):
    """An invalid option or config value."""


class DataError(DescendError):
    """A dataset that cannot be found, read or used."""


class CheckpointError(DescendError):
    """A checkpoint that is missing, broken, or does not fit."""


class WriteError(DescendError, OSError):
    """A file that could not be written (disk full, no permission); the old one is intact."""


class MissingExtraError(DescendError, ImportError):
    """A command whose optional packages are not installed (`descend.extras`)."""
