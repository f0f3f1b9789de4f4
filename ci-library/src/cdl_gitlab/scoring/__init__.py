"""Scoring Data: every prediction request, its input summary, prediction and model version.

    store = open_scoring_store(settings)         # SQLite locally, PostgreSQL on the cluster
    store.read(model="classifier", version="3")

The serving wrapper gets the store's URL from ``$CDL_SCORING_URL`` and writes through a
:class:`ScoringWriter`, so that storing scoring data never fails or blocks a prediction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdl_gitlab.db import normalize_url, redact
from cdl_gitlab.scoring.store import (
    STATUS_OK,
    STATUS_REJECTED,
    ScoringError,
    ScoringRecord,
    ScoringStore,
)
from cdl_gitlab.scoring.writer import ScoringWriter

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

SCORING_URL_ENV = "CDL_SCORING_URL"
SQLITE_FILE = "scoring.sqlite"

__all__ = [
    "SCORING_URL_ENV",
    "STATUS_OK",
    "STATUS_REJECTED",
    "ScoringError",
    "ScoringRecord",
    "ScoringStore",
    "ScoringWriter",
    "normalize_url",
    "open_scoring_store",
    "redact",
    "scoring_url",
]


def scoring_url(settings: Settings) -> str:
    """The profile's store: ``<state_dir>/scoring.sqlite`` locally, the PostgreSQL DSN on the
    cluster (from the variable named by ``cluster.postgres_dsn_env``)."""
    if settings.profile == "cluster":
        env = settings.config.cluster.postgres_dsn_env
        return normalize_url(settings.secret(env, "the scoring data store (PostgreSQL)"))
    return f"sqlite:///{settings.state_dir / SQLITE_FILE}"


def open_scoring_store(settings: Settings) -> ScoringStore:
    return ScoringStore(scoring_url(settings))
