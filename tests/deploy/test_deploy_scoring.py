"""The Scoring Data store and its background writer, on SQLite and the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdl_gitlab.config import load_settings
from cdl_gitlab.scoring import (
    ScoringRecord,
    ScoringStore,
    ScoringWriter,
    normalize_url,
    redact,
    scoring_url,
)


def _record(i: int, **fields) -> ScoringRecord:
    return ScoringRecord(
        request_id=f"r{i}",
        model="news",
        version="1",
        item_index=0,
        predicted="sport",
        probabilities={"sport": 0.9, "tech": 0.1},
        input_kind="text",
        input_text="goal",
        input_stats={"chars": 4, "words": 1},
        latency_ms=1.5,
        **fields,
    )


def _roundtrip(url: str) -> None:
    store = ScoringStore(url)
    ScoringStore(url)  # a second creator finds the table
    old = datetime.now(UTC) - timedelta(days=2)
    store.write([_record(1, ts=old), _record(2), _record(3, status="rejected", error="X: y")])
    rows = store.read(model="news")
    assert [r.request_id for r in rows] == ["r1", "r2", "r3"]
    assert rows[1].probabilities == {"sport": 0.9, "tech": 0.1}
    assert rows[1].input_stats == {"chars": 4, "words": 1}
    assert rows[1].ts.tzinfo is not None
    assert [r.request_id for r in store.read(since=old + timedelta(days=1))] == ["r2", "r3"]
    assert store.count(model="news", status="rejected") == 1
    assert store.read(model="other") == []
    store.dispose()


def test_sqlite_store(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'deep' / 'scoring.sqlite'}")


@pytest.mark.postgres
def test_postgres_store(postgres_url: str) -> None:
    _roundtrip(postgres_url)


def test_writer_batches_and_flushes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    writer = ScoringWriter(lambda: ScoringStore(url), batch_size=7)
    for i in range(30):
        writer.submit([_record(i)])
    assert writer.flush(10)
    assert writer.written == 30 and writer.failed == 0
    writer.close()
    assert ScoringStore(url).count() == 30


class _CountingStore(ScoringStore):
    """A real SQLite store that records the size of every transaction."""

    def __init__(self, url: str, transactions: list[int]) -> None:
        super().__init__(url)
        self.transactions = transactions

    def write(self, records) -> int:
        self.transactions.append(len(records))
        return super().write(records)


def test_writer_gathers_records_into_one_transaction_per_batch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    transactions: list[int] = []
    writer = ScoringWriter(lambda: _CountingStore(url, transactions), batch_size=25, linger=60)
    for i in range(50):  # one request at a time, as a busy server submits them
        writer.submit([_record(i)])
    assert writer.flush(10)  # two full batches: neither waited for the linger time
    assert transactions == [25, 25]
    writer.submit([_record(50)])
    writer.close(10)  # a partial batch is written at shutdown, not lost
    assert transactions == [25, 25, 1]
    assert ScoringStore(url).count() == 51


def test_writer_writes_a_lone_record_after_the_linger_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    transactions: list[int] = []
    writer = ScoringWriter(lambda: _CountingStore(url, transactions), linger=0.05)
    writer.submit([_record(1)])
    assert writer.flush(10)
    assert transactions == [1] and writer.written == 1
    writer.close()


def test_writer_failures_are_counted_never_raised(tmp_path: Path) -> None:
    failures: list[int] = []
    dead = "postgresql+psycopg://postgres:pw@127.0.0.1:1/none?connect_timeout=1"
    writer = ScoringWriter(lambda: ScoringStore(dead), on_failure=failures.append)
    writer.submit([_record(1), _record(2)])
    assert writer.flush(30)
    assert writer.failed == 2 and sum(failures) == 2 and writer.written == 0
    full = ScoringWriter(lambda: ScoringStore(f"sqlite:///{tmp_path / 'x.sqlite'}"), max_queue=1)
    full.submit([_record(i) for i in range(50)])  # the queue overflows: dropped and counted
    assert full.flush(10)
    assert full.failed + full.written == 50 and full.failed > 0
    full.close()
    writer.close()


def test_urls_and_redaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert normalize_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert "secret" not in redact("postgresql+psycopg://user:secret@host/db")
    (tmp_path / "cdl.yaml").write_text(
        "version: 1\nproject: {name: D, slug: demo}\nmodel: {name: demo, framework: pytorch, "
        "task: text}\ndata: {repo_prefix: demo}\ncluster: {postgres_dsn_env: MY_DSN}\n"
    )
    local = load_settings(tmp_path / "cdl.yaml")
    assert scoring_url(local) == f"sqlite:///{tmp_path / '.cdl' / 'scoring.sqlite'}"
    cluster = load_settings(tmp_path / "cdl.yaml", profile="cluster")
    monkeypatch.delenv("MY_DSN", raising=False)
    with pytest.raises(Exception, match="MY_DSN"):
        scoring_url(cluster)
    monkeypatch.setenv("MY_DSN", "postgres://u:p@db/scoring")
    assert scoring_url(cluster) == "postgresql+psycopg://u:p@db/scoring"
