"""Errors that the CLI turns into a one-line message and a non-zero exit code."""


class CDLError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""

    exit_code = 1


class ConfigError(CDLError):
    """cdl.yaml is missing, unreadable or invalid."""

    exit_code = 2
