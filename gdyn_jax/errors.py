"""The errors the command line reports in one line: bad user input and a missing extra."""

__all__ = ["MissingExtraError", "UsageError"]


class UsageError(ValueError):
    """Bad input from the user: the message names the argument and what was expected."""


class MissingExtraError(ImportError, ValueError):
    """An optional dependency is missing (a ValueError too, so the CLI reports it in a line)."""
