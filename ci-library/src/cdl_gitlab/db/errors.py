"""Errors of the database layer."""

from cdl_gitlab.errors import CDLError


class DatabaseError(CDLError):
    """A database cannot be opened, migrated or used."""
