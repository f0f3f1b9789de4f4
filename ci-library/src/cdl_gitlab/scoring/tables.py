"""The scoring database's tables: ``scoring_records`` (written by the serving wrapper, read by
monitoring) and ``scoring_feedback`` (ground truth for logged predictions). Schema
``scoring``; revisions in ``cdl_gitlab/db/migrations/scoring``."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

from cdl_gitlab.db import Schema

SCHEMA = Schema("scoring", "cdl_scoring_revision")
RECORDS_TABLE = "scoring_records"
FEEDBACK_TABLE = "scoring_feedback"
SOURCE_CLI = "cli"

metadata = MetaData()
scoring_records = Table(
    RECORDS_TABLE,
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("item_index", Integer, nullable=False, default=0),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("model", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("input_kind", String(16), nullable=True),
    Column("input_hash", String(64), nullable=True),
    Column("input_text", Text, nullable=True),
    Column("input_stats", JSON, nullable=True),
    Column("predicted", String(256), nullable=True),
    Column("probabilities", JSON, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Index("ix_scoring_model_version_ts", "model", "version", "ts"),
    Index("ix_scoring_request", "request_id"),
)
scoring_feedback = Table(
    FEEDBACK_TABLE,
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("item_index", Integer, nullable=False, default=0),
    Column("truth", String(256), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("source", String(64), nullable=False, default=SOURCE_CLI),
    Index("ix_feedback_request_item", "request_id", "item_index"),
)
