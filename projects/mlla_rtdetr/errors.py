"""Errors a user can fix. Imports nothing from the project, so every layer can raise them.

Entry points (``tools/*.py``) catch :class:`UserError`, print its message and exit with status 2,
without a traceback; any other exception is a bug and keeps its traceback.
"""

__all__ = ["UserError", "ConfigError", "DataError", "CheckpointError"]


class UserError(Exception):
    """A mistake in what the user gave (config, override, file, dataset, checkpoint); the message
    says what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """The config is inconsistent or cannot be loaded (missing file, bad override, wrong unit,
    class-count mismatch...)."""


class DataError(UserError, ValueError):
    """A dataset cannot be used as given (unreadable annotations, missing or undecodable images...)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be read or does not fit the model."""
