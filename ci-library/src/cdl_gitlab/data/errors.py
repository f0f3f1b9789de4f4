"""Errors of the data pipeline."""

from __future__ import annotations

from cdl_gitlab.errors import CDLError


class DataError(CDLError):
    """A data repository, commit, file or step is missing or invalid."""


class NotFoundError(DataError):
    """A repo, branch, commit or file does not exist."""


class SpecError(DataError):
    """A pipeline spec does not pass the linter or cannot be run."""


class MissingDataError(DataError):
    """A split that training or evaluation needs was never collected, or holds no items."""
