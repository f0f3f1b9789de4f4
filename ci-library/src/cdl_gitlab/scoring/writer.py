"""A background writer: predictions hand records to a queue and never wait for the database.

Records are written in batches, one transaction each: a batch is full at ``batch_size``
records or ``linger`` seconds after its first record.

Failures (database down, queue full) are counted and logged, never raised to the caller.
:meth:`ScoringWriter.submit_deferred` queues a function that builds the records, run in the
writer's thread: work the caller's response does not need (hashes, input statistics) is
done off its path.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cdl_gitlab.db import redact
from cdl_gitlab.scoring.store import ScoringRecord, ScoringStore

log = logging.getLogger(__name__)

LINGER_SECONDS = 0.1
"""How long the writer waits for more records before it writes a batch: under load, one
transaction per many requests instead of one per request."""


@dataclass(frozen=True)
class _Deferred:
    count: int
    build: Callable[[], list[ScoringRecord]]


class ScoringWriter:
    """Writes scoring records in batches from one daemon thread."""

    def __init__(
        self,
        store_factory: Callable[[], ScoringStore],
        *,
        max_queue: int = 10_000,
        batch_size: int = 200,
        linger: float = LINGER_SECONDS,
        on_failure: Callable[[int], None] | None = None,
    ) -> None:
        self._factory = store_factory
        self._queue: queue.Queue[ScoringRecord | _Deferred | None] = queue.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._linger = linger
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._failed = 0
        self._written = 0
        self._store: ScoringStore | None = None
        self._thread = threading.Thread(target=self._run, name="cdl-scoring", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> int:
        """Records that could not be written (dropped)."""
        with self._lock:
            return self._failed

    @property
    def written(self) -> int:
        with self._lock:
            return self._written

    def submit(self, records: list[ScoringRecord]) -> None:
        """Queue ``records``; drops (and counts) them if the queue is full. Never raises."""
        for index, record in enumerate(records):
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                self._fail(len(records) - index, "scoring queue full")
                return

    def submit_deferred(self, build: Callable[[], list[ScoringRecord]], count: int) -> None:
        """Queue ``build`` (which returns ``count`` records) to run in the writer's thread;
        dropped and counted if the queue is full, counted if it raises. Never raises."""
        try:
            self._queue.put_nowait(_Deferred(count, build))
        except queue.Full:
            self._fail(count, "scoring queue full")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is written or dropped; False on timeout."""
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True)
        waiter.start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (a batch still gathering records at once), stop the thread and
        release the database connections; waits at most about ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:  # the end marker queues behind the records and ends a lingering batch
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._store is not None:
            self._store.dispose()

    def _fail(self, count: int, reason: str) -> None:
        with self._lock:
            self._failed += count
        log.warning("scoring data: %d record(s) not written: %s", count, reason)
        if self._on_failure is not None:
            try:
                self._on_failure(count)
            except Exception:  # a metrics hook must not stop the writer
                log.exception("scoring failure hook failed")

    def _take_batch(self) -> tuple[list[ScoringRecord | _Deferred], bool]:
        first = self._queue.get()
        if first is None:
            self._queue.task_done()
            return [], True
        batch: list[ScoringRecord | _Deferred] = [first]
        stop = False
        deadline = time.monotonic() + self._linger
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    item = self._queue.get(timeout=remaining)
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.task_done()
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        try:  # connect (and migrate) now: neither the first records nor a shutdown wait for it
            self._store = self._factory()
        except Exception as exc:  # retried with the first batch, which counts the failure
            log.warning("scoring data: cannot open the store yet: %s: %s", type(exc).__name__, exc)
        stop = False
        while not stop:
            batch, stop = self._take_batch()
            if batch:
                records = self._build(batch)
                if records:
                    self._write(records)
                for _ in batch:
                    self._queue.task_done()

    def _build(self, batch: list[ScoringRecord | _Deferred]) -> list[ScoringRecord]:
        records: list[ScoringRecord] = []
        for item in batch:
            if not isinstance(item, _Deferred):
                records.append(item)
                continue
            try:
                records.extend(item.build())
            except Exception as exc:  # a bad builder costs its own records only
                self._fail(item.count, f"could not build the records: {type(exc).__name__}: {exc}")
            time.sleep(0)  # let a waiting request thread have the GIL between builds
        return records

    def _write(self, batch: list[ScoringRecord]) -> None:
        try:
            if self._store is None:
                self._store = self._factory()
            self._store.write(batch)
        except Exception as exc:  # never propagate to predictions
            url = redact(self._store.url) if self._store is not None else "scoring store"
            self._fail(len(batch), f"{url}: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            self._written += len(batch)
