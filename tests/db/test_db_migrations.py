"""Schema migrations: databases written before migrations are adopted without losing a row, on
SQLite and on the PostgreSQL server; the baselines reproduce that schema; the tracker's
second revision upgrades a baseline database; concurrent first use migrates once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import db_today as today
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cdl_gitlab.data.labels import ImportReport, LabelRecord, LabelStore, label_schema, make_table
from cdl_gitlab.db import (
    DatabaseError,
    Schema,
    create_engine,
    current_revision,
    ensure_schema,
    head_revision,
)
from cdl_gitlab.monitor.feedback import FeedbackStore, live_accuracy
from cdl_gitlab.registry import Checkpoint, LocalRegistry
from cdl_gitlab.registry import tables as registry_tables
from cdl_gitlab.scoring import ScoringError, ScoringRecord, ScoringStore
from cdl_gitlab.scoring import tables as scoring_tables
from cdl_gitlab.tracking import ExperimentRegistry
from cdl_gitlab.tracking import tables as tracking_tables

SRC = Path(__file__).resolve().parents[2] / "ci-library" / "src"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``database(name) -> url`` of a new empty database on SQLite or the PostgreSQL server."""
    if request.param == "sqlite":
        yield lambda name: f"sqlite:///{tmp_path / name}.sqlite"
        return
    server = request.getfixturevalue("postgres_server")
    stack: list[Any] = []

    def make(_name: str) -> str:
        context = server.database("cdl_migrate")
        stack.append(context)
        return context.__enter__()

    try:
        yield make
    finally:
        for context in reversed(stack):
            context.__exit__(None, None, None)


def _shape(url: str, skip: str) -> dict[str, Any]:
    """What reflection sees of every table but the version table ``skip``."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        shape = {}
        for table in sorted(set(inspector.get_table_names()) - {skip, "sqlite_sequence"}):
            shape[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(table)
                ],
                "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                "fks": [
                    (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
                    for fk in inspector.get_foreign_keys(table)
                ],
                "indexes": sorted(
                    (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                    for ix in inspector.get_indexes(table)
                ),
                "unique": sorted(
                    tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
                ),
            }
        return shape
    finally:
        engine.dispose()


def _sqlite_sql(path: Path, table: str) -> str:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        sql = conn.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}
        ).scalar_one()
    engine.dispose()
    return str(sql)


def _no_drift(url: str, metadata: sa.MetaData, version_table: str) -> None:
    """The tables the code declares are what the migrations built."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert [d for d in diffs if not (d[0] == "remove_table" and d[1].name == version_table)] == []


# -- the baselines reproduce today's schema ------------------------------------------------


def test_baselines_reproduce_todays_sqlite_schema(tmp_path: Path) -> None:
    cases: list[tuple[list[str], Callable[[Path], Any], str]] = [
        (today.REGISTRY_SQLITE, lambda p: LocalRegistry(p.parent), "registry.sqlite"),
        (today.TRACKING_SQLITE, ExperimentRegistry, "experiments.sqlite"),
        (
            today.LABELS["sqlite"],
            lambda p: LabelStore(f"sqlite:///{p}", today.LABELS_TABLE),
            "labels.sqlite",
        ),
        (
            today.SCORING["sqlite"] + today.FEEDBACK["sqlite"],
            lambda p: ScoringStore(f"sqlite:///{p}"),
            "scoring.sqlite",
        ),
    ]
    for index, (ddl, open_new, filename) in enumerate(cases):
        old = tmp_path / f"old-{index}" / filename
        new = tmp_path / f"new-{index}" / filename
        old.parent.mkdir()
        today.write_today(f"sqlite:///{old}", ddl, [])
        open_new(new)
        old_shape = _shape(f"sqlite:///{old}", "")
        new_shape = _shape(f"sqlite:///{new}", "")
        version_tables = [t for t in new_shape if t.startswith("cdl_")]
        assert len(version_tables) == 1, new_shape.keys()
        del new_shape[version_tables[0]]
        if filename == "experiments.sqlite":  # revision 0002 adds indexes on purpose
            for table in new_shape.values():
                table["indexes"] = [ix for ix in table["indexes"] if not ix[0].startswith("ix_")]
        assert new_shape == old_shape, filename
    assert "AUTOINCREMENT" in _sqlite_sql(tmp_path / "new-1" / "experiments.sqlite", "trials")


@pytest.mark.postgres
def test_baselines_reproduce_todays_postgres_schema(postgres_server) -> None:
    cases = [
        (today.LABELS["postgresql"], lambda url: LabelStore(url, today.LABELS_TABLE)),
        (today.SCORING["postgresql"] + today.FEEDBACK["postgresql"], ScoringStore),
    ]
    for ddl, open_new in cases:
        with postgres_server.database("cdl_old") as old, postgres_server.database("cdl_new") as new:
            today.write_today(old, ddl, [])
            open_new(new).engine.dispose()
            old_shape = _shape(old, "")
            new_shape = {k: v for k, v in _shape(new, "").items() if not k.startswith("cdl_")}
            assert new_shape == old_shape


# -- today's databases are adopted: no row lost, the tables work ---------------------------


def test_registry_database_is_adopted(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    root.mkdir()
    today.write_today(
        f"sqlite:///{root / 'registry.sqlite'}", today.REGISTRY_SQLITE, today.REGISTRY_ROWS
    )
    registry = LocalRegistry(root)
    assert current_revision(registry.engine, registry_tables.SCHEMA) == head_revision(
        registry_tables.SCHEMA
    )
    assert registry.list_models() == ["news"]
    versions = registry.list_versions("news")
    assert [(v.version, v.checkpoint_uuid, v.metadata) for v in versions] == [
        (1, "ck-1", {"v": 1}),
        (2, "ck-2", {"v": 2}),
    ]
    folder = tmp_path / "ck-3"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"3")
    assert registry.register_version("news", Checkpoint("ck-3", folder)).version == 3
    assert registry.add_metadata("news", 1, {"test": 1}).metadata == {"v": 1, "test": 1}
    _no_drift(
        f"sqlite:///{root / 'registry.sqlite'}",
        registry_tables.metadata,
        registry_tables.SCHEMA.version_table,
    )


def test_tracking_database_is_adopted_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "experiments.sqlite"
    today.write_today(f"sqlite:///{path}", today.TRACKING_SQLITE, today.TRACKING_ROWS)
    tracker = ExperimentRegistry(path)
    assert current_revision(tracker.engine, tracking_tables.SCHEMA) == "0002"
    experiment = tracker.get_experiment(1)
    assert experiment.config == {"searcher": {"metric": "loss"}}
    assert [t.hparams for t in experiment.trials] == [{"lr": 0.1}, {"lr": 0.01}]
    assert [r.steps_completed for r in experiment.trials[0].metrics["validation"]] == [10, 20]
    assert experiment.trials[1].latest_checkpoint.uuid == "ck-2"
    assert tracker.best_trial(1, "loss", smaller_is_better=True).id == 2
    assert tracker.create_trial(1, {"lr": 1.0}) == 3  # AUTOINCREMENT goes on after the old rows
    _no_drift(f"sqlite:///{path}", tracking_tables.metadata, tracking_tables.SCHEMA.version_table)


def test_second_revision_upgrades_a_baseline_database(tmp_path: Path) -> None:
    """A database the baseline built (stamped 0001, no indexes) gets revision 0002."""
    path = tmp_path / "experiments.sqlite"
    version_table = tracking_tables.SCHEMA.version_table
    stamped = [
        f"CREATE TABLE {version_table} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        f"INSERT INTO {version_table} VALUES ('0001')",
    ]
    today.write_today(f"sqlite:///{path}", today.TRACKING_SQLITE + stamped, today.TRACKING_ROWS)
    assert _shape(f"sqlite:///{path}", version_table)["trials"]["indexes"] == []
    tracker = ExperimentRegistry(path)
    assert current_revision(tracker.engine, tracking_tables.SCHEMA) == "0002"
    shape = _shape(f"sqlite:///{path}", version_table)
    assert shape["trials"]["indexes"] == [("ix_trials_experiment_id", ("experiment_id",), False)]
    assert shape["metrics"]["indexes"] == [
        ("ix_metrics_trial_id", ("trial_id", "steps_completed"), False)
    ]
    assert len(tracker.get_experiment(1).trials) == 2


def test_labels_database_is_adopted(database: Callable[[str], str]) -> None:
    url = database("labels")
    dialect = sa.make_url(url).get_backend_name()
    today.write_today(url, today.LABELS[dialect], today.LABEL_ROWS)
    store = LabelStore(url, today.LABELS_TABLE)
    schema = label_schema(today.LABELS_TABLE)
    try:
        assert current_revision(store.engine, schema) == head_revision(schema)
        rows = store.rows("train")
        assert [(r.id, r.label, r.data_commit) for r in rows] == [
            ("1", "sport", "abc123"),
            ("2", "tech", "abc123"),
            ("3", "business", "abc123"),
        ]
        report = ImportReport()
        changed = LabelRecord(**{**rows[0].__dict__, "label": "tech"})
        store.upsert([changed, rows[1]], report)
        assert (report.updated, report.unchanged) == (1, 1)
        assert [r.label for r in store.rows("train")] == ["tech", "tech", "business"]
    finally:
        store.close()
    _no_drift(url, make_table(today.LABELS_TABLE, sa.MetaData()).metadata, schema.version_table)


@pytest.mark.parametrize("with_feedback", [True, False], ids=["feedback", "no-feedback-yet"])
def test_scoring_database_is_adopted(database: Callable[[str], str], with_feedback: bool) -> None:
    url = database("scoring")
    dialect = sa.make_url(url).get_backend_name()
    ddl = today.SCORING[dialect] + (today.FEEDBACK[dialect] if with_feedback else [])
    rows = today.scoring_rows(dialect) + (today.feedback_rows(dialect) if with_feedback else [])
    today.write_today(url, ddl, rows)
    store = ScoringStore(url)
    try:
        assert current_revision(store.engine, scoring_tables.SCHEMA) == "0001"
        records = store.read(model="news")
        assert [(r.request_id, r.status, r.predicted) for r in records] == [
            ("req-0", "ok", "sport"),
            ("req-1", "ok", "tech"),
            ("req-2", "rejected", None),
        ]
        assert records[0].ts == today.SCORED_AT and records[0].input_stats == {"n_chars": 10}
        assert records[1].probabilities == {"tech": 0.9}
        feedback = FeedbackStore(store)
        feedback.write([{"request_id": "req-1", "item_index": 0, "truth": "sport"}])
        accuracy = live_accuracy(
            store.engine, model="news", version="1", since=today.SCORED_AT - timedelta(hours=1)
        )
        assert (accuracy.labels, accuracy.correct) == ((2, 1) if with_feedback else (1, 0))
        store.write([ScoringRecord(request_id="req-3", model="news", version="1")])
        assert store.count(model="news") == 4
    finally:
        store.dispose()
    _no_drift(url, scoring_tables.metadata, scoring_tables.SCHEMA.version_table)


def test_a_foreign_table_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'scoring.sqlite'}"
    today.write_today(url, ["CREATE TABLE scoring_records (id INTEGER PRIMARY KEY, what TEXT)"], [])
    with pytest.raises(ScoringError, match="scoring_records exists but lacks the columns"):
        ScoringStore(url)


def test_unknown_schema_is_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with pytest.raises(DatabaseError, match="no migrations for schema 'nothing'"):
        ensure_schema(engine, Schema("nothing", "cdl_nothing_revision"))


# -- concurrent first use --------------------------------------------------------------------

FIRST_USE = """
import sys, time
from cdl_gitlab.db import create_engine, ensure_schema
from cdl_gitlab.scoring.tables import SCHEMA
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together
ensure_schema(create_engine(sys.argv[1]), SCHEMA)
"""


def test_concurrent_first_use_migrates_once(database: Callable[[str], str]) -> None:
    url = database("race")
    start = time.time() + 4.0
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_USE, url, str(start)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [(p.wait(120), p.stderr.read() if p.stderr else "") for p in processes]
    assert all(code == 0 for code, _ in errors), errors
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(
                sa.text(f"SELECT version_num FROM {scoring_tables.SCHEMA.version_table}")
            ).all()
        assert [tuple(v) for v in versions] == [("0001",)]
        store = ScoringStore(url)
        store.write([ScoringRecord(request_id="r", model="news", version="1")])
        assert store.count() == 1
        store.dispose()
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", ["labels", "registry", "scoring", "tracking"])
def test_declared_head_is_alembics_head(name: str) -> None:
    from cdl_gitlab.db.migrate import MIGRATIONS, declared_head

    assert declared_head(MIGRATIONS / name) == head_revision(Schema(name, f"cdl_{name}_revision"))


def _revision_files(folder: Path, chain: dict[str, str | None]) -> Path:
    (folder / "versions").mkdir(parents=True)
    (folder / "versions" / "__init__.py").write_text('"""Revisions."""\n')
    for revision, parent in chain.items():
        down = "None" if parent is None else f'"{parent}"'
        (folder / "versions" / f"{revision}_step.py").write_text(
            f'"""Step {revision}."""\n\nrevision = "{revision}"\ndown_revision = {down}\n'
        )
    return folder


def test_declared_head_reads_a_chain_and_leaves_the_rest_to_alembic(tmp_path: Path) -> None:
    from cdl_gitlab.db.migrate import declared_head

    chain = {"0001": None, "0002": "0001", "0003": "0002"}
    assert declared_head(_revision_files(tmp_path / "chain", chain)) == "0003"
    branch = {"0001": None, "0002": "0001", "0003": "0001"}  # two heads
    assert declared_head(_revision_files(tmp_path / "branch", branch)) is None
    merge = _revision_files(tmp_path / "merge", {"0001": None})
    (merge / "versions" / "0002_merge.py").write_text(
        'revision = "0002"\ndown_revision = ("0001",)\n'
    )
    assert declared_head(merge) is None  # an assignment it does not read
