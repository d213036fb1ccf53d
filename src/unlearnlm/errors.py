"""User-facing errors: one clear line, exit status 2, no traceback."""
from __future__ import annotations


class UnlearnError(Exception):
    """Bad input or configuration. The message says what, where and how to fix it.

    The CLI prints ``error: <message>`` and exits with status 2.
    """

    exit_code = 2


class DataError(UnlearnError):
    """A data file is missing or malformed (message names file, line and field)."""


class ConfigError(UnlearnError):
    """An option has an unknown name or an invalid value."""


class ModelError(UnlearnError):
    """A model spec cannot be resolved or loaded."""


class NumericalError(UnlearnError):
    """Training produced a NaN or infinite loss."""
