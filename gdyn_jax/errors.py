"""The error raised for bad user input, which the command line reports in one line."""

__all__ = ["UsageError"]


class UsageError(ValueError):
    """Bad input from the user: the message names the argument and what was expected."""
