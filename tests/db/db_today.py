"""Fixture data: the schemas and rows CDL wrote before migrations existed (release 0.2.0).

The DDL is copied from that code: the registry's and the experiment tracker's ``_SCHEMA``
(raw sqlite3), and what SQLAlchemy's ``create_all`` emitted for the labels, scoring and
feedback tables on SQLite and PostgreSQL. The rows are written with plain SQL, as that code
wrote them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

REGISTRY_SQLITE = [
    """CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL,
    last_version INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL REFERENCES models(name),
    version INTEGER NOT NULL,
    checkpoint_uuid TEXT NOT NULL,
    created TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (model, version)
)""",
]

TRACKING_SQLITE = [
    """CREATE TABLE IF NOT EXISTS experiments (
        id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, config TEXT NOT NULL,
        labels TEXT NOT NULL, state TEXT NOT NULL, started TEXT NOT NULL, ended TEXT)""",
    """CREATE TABLE IF NOT EXISTS trials (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id),
        hparams TEXT NOT NULL, state TEXT NOT NULL, started TEXT NOT NULL, ended TEXT)""",
    """CREATE TABLE IF NOT EXISTS metrics (
        trial_id INTEGER NOT NULL REFERENCES trials(id), grp TEXT NOT NULL,
        steps_completed INTEGER NOT NULL, metrics TEXT NOT NULL, reported TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        trial_id INTEGER NOT NULL REFERENCES trials(id), uuid TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL, steps_completed INTEGER NOT NULL, metadata TEXT NOT NULL,
        reported TEXT NOT NULL)""",
]

LABELS_TABLE = "news_labels"
_LABELS = """CREATE TABLE news_labels (
	split VARCHAR(16) NOT NULL,
	id VARCHAR(100) NOT NULL,
	file_path TEXT NOT NULL,
	label VARCHAR(200) NOT NULL,
	labeler VARCHAR(200) NOT NULL,
	created VARCHAR(40) NOT NULL,
	data_repo VARCHAR(100) NOT NULL,
	data_branch VARCHAR(100) NOT NULL,
	data_commit VARCHAR(100) NOT NULL,
	imported_at VARCHAR(40) NOT NULL,
	PRIMARY KEY (split, id)
)"""
LABELS = {"sqlite": [_LABELS], "postgresql": [_LABELS]}


def _scoring(serial: str, timestamp: str) -> list[str]:
    return [
        f"""CREATE TABLE scoring_records (
	id {serial} NOT NULL,
	request_id VARCHAR(64) NOT NULL,
	item_index INTEGER NOT NULL,
	ts {timestamp} NOT NULL,
	model VARCHAR(128) NOT NULL,
	version VARCHAR(64) NOT NULL,
	status VARCHAR(16) NOT NULL,
	error TEXT,
	input_kind VARCHAR(16),
	input_hash VARCHAR(64),
	input_text TEXT,
	input_stats JSON,
	predicted VARCHAR(256),
	probabilities JSON,
	latency_ms FLOAT,
	PRIMARY KEY (id)
)""",
        "CREATE INDEX ix_scoring_model_version_ts ON scoring_records (model, version, ts)",
        "CREATE INDEX ix_scoring_request ON scoring_records (request_id)",
    ]


def _feedback(serial: str, timestamp: str) -> list[str]:
    return [
        f"""CREATE TABLE scoring_feedback (
	id {serial} NOT NULL,
	request_id VARCHAR(64) NOT NULL,
	item_index INTEGER NOT NULL,
	truth VARCHAR(256) NOT NULL,
	ts {timestamp} NOT NULL,
	source VARCHAR(64) NOT NULL,
	PRIMARY KEY (id)
)""",
        "CREATE INDEX ix_feedback_request_item ON scoring_feedback (request_id, item_index)",
    ]


SCORING = {
    "sqlite": _scoring("INTEGER", "DATETIME"),
    "postgresql": _scoring("SERIAL", "TIMESTAMP WITH TIME ZONE"),
}
FEEDBACK = {
    "sqlite": _feedback("INTEGER", "DATETIME"),
    "postgresql": _feedback("SERIAL", "TIMESTAMP WITH TIME ZONE"),
}

CREATED = "2026-11-01T09:00:00+00:00"
REGISTRY_ROWS: list[tuple[str, dict[str, Any]]] = [
    (
        "INSERT OR IGNORE INTO models (name, description, labels, created) "
        "VALUES (:n, '', '[]', :c)",
        {"n": "news", "c": CREATED},
    ),
    *(
        (
            "INSERT INTO versions (model, version, checkpoint_uuid, created, metadata) "
            "VALUES (:m, :v, :u, :c, :meta)",
            {"m": "news", "v": v, "u": f"ck-{v}", "c": CREATED, "meta": json.dumps({"v": v})},
        )
        for v in (1, 2)
    ),
    ("UPDATE models SET last_version = :v WHERE name = :n", {"v": 2, "n": "news"}),
]

TRACKING_ROWS: list[tuple[str, dict[str, Any]]] = [
    (
        "INSERT INTO experiments (name, config, labels, state, started) "
        "VALUES ('news', :config, '{}', 'COMPLETED', :t)",
        {"config": json.dumps({"searcher": {"metric": "loss"}}), "t": CREATED},
    ),
    *(
        (
            "INSERT INTO trials (experiment_id, hparams, state, started, ended) "
            "VALUES (1, :h, 'COMPLETED', :t, :t)",
            {"h": json.dumps({"lr": lr}), "t": CREATED},
        )
        for lr in (0.1, 0.01)
    ),
    *(
        (
            "INSERT INTO metrics (trial_id, grp, steps_completed, metrics, reported) "
            "VALUES (:trial, 'validation', :steps, :m, :t)",
            {"trial": trial, "steps": steps, "m": json.dumps({"loss": loss}), "t": CREATED},
        )
        for trial, steps, loss in ((1, 10, 0.9), (1, 20, 0.7), (2, 10, 0.5))
    ),
    (
        "INSERT INTO checkpoints (trial_id, uuid, path, steps_completed, metadata, reported) "
        "VALUES (2, 'ck-2', '/tmp/ck-2', 10, '{}', :t)",
        {"t": CREATED},
    ),
]

LABEL_ROWS: list[tuple[str, dict[str, Any]]] = [
    (
        "INSERT INTO news_labels (split, id, file_path, label, labeler, created, data_repo, "
        "data_branch, data_commit, imported_at) VALUES (:s, :i, :p, :l, 'ann@example.org', "
        ":c, 'news-train', 'dev', 'abc123', :c)",
        {"s": "train", "i": str(i), "p": f"{label}/{i:03d}.txt", "l": label, "c": CREATED},
    )
    for i, label in enumerate(("sport", "tech", "business"), start=1)
]

SCORED_AT = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def scoring_rows(dialect: str) -> list[tuple[str, dict[str, Any]]]:
    """Three scoring records (one rejected) as the serving wrapper wrote them: SQLAlchemy stored
    DateTime as naive UTC text on SQLite and JSON as text."""
    ts: Any = SCORED_AT.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else SCORED_AT
    json_value = "CAST(:{} AS JSON)" if dialect == "postgresql" else ":{}"
    statement = (
        "INSERT INTO scoring_records (request_id, item_index, ts, model, version, status, "
        "error, input_kind, input_stats, predicted, probabilities, latency_ms) VALUES "
        f"(:r, :i, :ts, 'news', '1', :status, :error, 'text', {json_value.format('stats')}, "
        f":pred, {json_value.format('probs')}, 1.5)"
    )
    rows = []
    for index, (predicted, status) in enumerate((("sport", "ok"), ("tech", "ok"), (None, "x"))):
        rows.append(
            (
                statement,
                {
                    "r": f"req-{index}",
                    "i": 0,
                    "ts": ts,
                    "status": "rejected" if status == "x" else status,
                    "error": "EMPTY_INPUT: no texts" if status == "x" else None,
                    "stats": json.dumps({"n_chars": 10 + index}),
                    "pred": predicted,
                    "probs": json.dumps({predicted: 0.9} if predicted else None),
                },
            )
        )
    return rows


def feedback_rows(dialect: str) -> list[tuple[str, dict[str, Any]]]:
    ts: Any = SCORED_AT.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else SCORED_AT
    return [
        (
            "INSERT INTO scoring_feedback (request_id, item_index, truth, ts, source) "
            "VALUES ('req-0', 0, 'sport', :ts, 'cli')",
            {"ts": ts},
        )
    ]


def write_today(url: str, ddl: list[str], rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Create a database the way the code before migrations did: its DDL, then its rows."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in ddl:
                conn.exec_driver_sql(statement)
            for statement, params in rows:
                conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()
