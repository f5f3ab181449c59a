"""The background writer of the SQL audit store: a bounded queue, batches, one transaction each.

Sinks put items on the queue and return at once; one thread takes what is queued (up to
``batch_size`` items, or what arrived within ``interval`` seconds), turns it into rows
(:class:`~nirguard.audit_sql._rows.Batch`) and writes it in one transaction. When the queue
is full (the database is slower than the portal for longer than the queue lasts), a sink
waits at most ``max_wait`` seconds, then the item is **dropped**: counted in
:attr:`Writer.dropped` and reported through the ``nirguard.audit`` logger (once per overflow,
with the count). A batch the database refuses is retried three times (after 0.2, 1 and 5 s),
then counted in :attr:`Writer.lost` and reported the same way.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.dialects import postgresql, sqlite

from nirguard.audit_sql._rows import Batch, merge_signals
from nirguard.audit_sql._schema import Tables

__all__ = ["Sealer", "Writer", "upsert"]

_log = logging.getLogger("nirguard.audit")
_RETRIES = (0.2, 1.0, 5.0)
_STOP = object()

#: Seals one record: returns it with its ``seal`` (``nirguard.audit_chain.AuditChain.seal``).
Sealer = Callable[[dict[str, Any]], dict[str, Any]]


def upsert(engine: Engine, table: Any) -> Any:
    """An ``INSERT`` of the engine's dialect that has ``on_conflict_do_*`` (SQLite, PostgreSQL)."""
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class Writer:
    """One thread writing queued sink items in batches (see the module's docstring)."""

    def __init__(
        self,
        engine: Engine,
        tables: Tables,
        *,
        writer_id: str,
        sealer: Sealer | None,
        seal_lock: threading.Lock,
        next_seq: Callable[[], int],
        queue_size: int,
        batch_size: int,
        interval: float,
        max_wait: float,
    ) -> None:
        self._engine = engine
        self._t = tables
        self._writer_id = writer_id
        self._sealer = sealer
        self._seal_lock = seal_lock
        self._next_seq = next_seq
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._interval = interval
        self._max_wait = max_wait
        self._overflowing = False
        self._count_lock = threading.Lock()
        self.dropped = 0
        self.lost = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="nirguard-audit-sql", daemon=True)
        self._thread.start()

    # -- the sinks' side ------------------------------------------------------------------------

    def put(self, kind: str, item: object) -> None:
        """Queue one item; never raises, waits at most ``max_wait`` (see the module)."""
        try:
            self._queue.put((kind, item), timeout=self._max_wait)
        except queue.Full:
            with self._count_lock:
                self.dropped += 1
                first = not self._overflowing
                self._overflowing = True
            if first:
                _log.error(
                    "nirguard SQL audit store: queue full, records are being dropped "
                    "(%d so far); the database is slower than the portal",
                    self.dropped,
                )
            return
        if self._overflowing and self._queue.qsize() < self._queue.maxsize // 2:
            self._overflowing = False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is written; ``False`` on timeout."""
        done = threading.Event()
        if not self._thread.is_alive():
            return self._queue.empty()
        started = time.monotonic()
        try:
            self._queue.put(("flush", done), timeout=timeout)
        except queue.Full:
            return False
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return done.wait(left)

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the thread (waits for the database: every queued
        item is written, or retried and counted as lost)."""
        if self._thread.is_alive():
            self._queue.put(("stop", _STOP))
            self._thread.join(timeout)

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            items = self._take()
            stop = any(kind == "stop" for kind, _ in items)
            real = [(k, v) for k, v in items if k not in ("flush", "stop")]
            if real:
                self._write(real)
            for kind, value in items:
                if kind == "flush":
                    value.set()
            if stop:
                return

    def _take(self) -> list[tuple[str, Any]]:
        items = [self._queue.get()]
        deadline = time.monotonic() + self._interval
        while len(items) < self._batch_size and items[-1][0] not in ("flush", "stop"):
            try:
                left = deadline - time.monotonic()
                items.append(
                    self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return items

    def _batch(self, items: list[tuple[str, Any]]) -> Batch:
        batch = Batch()
        for kind, item in items:
            try:
                if kind == "audit":
                    seq, record = self._seal(item)
                    batch.add_event(item, seq, record, self._writer_id)
                elif kind == "alert":
                    batch.add_alert(item)
                elif kind == "notice":
                    batch.add_notice(item)
                elif kind == "break_glass":
                    batch.add_grant(item)
            except Exception as exc:  # one malformed item never stops the others
                self.lost += 1
                _log.error(
                    "nirguard SQL audit store: a %s item was unusable (%s)",
                    kind,
                    type(exc).__name__,
                )
        return batch

    def _seal(self, event: Any) -> tuple[int, str | None]:
        with self._seal_lock:
            seq = self._next_seq()
            if self._sealer is None:
                return seq, None
            record = self._sealer(event.model_dump(mode="json"))
        return seq, json.dumps(record, separators=(",", ":"), ensure_ascii=False)

    def _write(self, items: list[tuple[str, Any]]) -> None:
        batch = self._batch(items)
        for attempt, pause in enumerate((*_RETRIES, None)):
            try:
                with self._engine.begin() as conn:
                    self._write_batch(conn, batch)
                self.written += batch.items
                return
            except Exception as exc:
                if pause is None:
                    self.lost += batch.items
                    _log.error(
                        "nirguard SQL audit store: a batch of %d records was lost after %d "
                        "tries (%s)",
                        batch.items,
                        attempt + 1,
                        type(exc).__name__,
                    )
                    return
                time.sleep(pause)

    def _write_batch(self, conn: Any, batch: Batch) -> None:
        t, engine = self._t, self._engine
        if batch.events:
            conn.execute(insert(t.events), batch.events)
        if batch.firsts:
            rows = [
                {"practitioner": p, "patient": q, "time": s} for (p, q), s in batch.firsts.items()
            ]
            conn.execute(upsert(engine, t.firsts).on_conflict_do_nothing(), rows)
        if batch.daily:
            stmt = upsert(engine, t.daily)
            stmt = stmt.on_conflict_do_update(
                index_elements=["day", "what"],
                set_={"count": t.daily.c.count + stmt.excluded.count},
            )
            rows = [{"day": d, "what": w, "count": n} for (d, w), n in batch.daily.items()]
            conn.execute(stmt, rows)
        if batch.alerts:
            conn.execute(insert(t.alerts), batch.alerts)
        if batch.cases:
            self._write_cases(conn, batch)
        if batch.notices:
            conn.execute(insert(t.notices), batch.notices)
        if batch.grants:
            conn.execute(insert(t.break_glass), batch.grants)

    def _write_cases(self, conn: Any, batch: Batch) -> None:
        cases = self._t.cases
        known = {
            row.case_id: row
            for row in conn.execute(cases.select().where(cases.c.case_id.in_(list(batch.cases))))
        }
        for case_id, new in batch.cases.items():
            old = known.get(case_id)
            if old is None:
                conn.execute(insert(cases), [new])
                continue
            conn.execute(
                cases.update()
                .where(cases.c.case_id == case_id)
                .values(
                    opened=min(old.opened, new["opened"]),
                    last_alert=max(old.last_alert, new["last_alert"]),
                    alerts=old.alerts + new["alerts"],
                    signals=merge_signals(old.signals, new["signals"]),
                    lockout=bool(old.lockout or new["lockout"]),
                    # a new alert on a closed case opens it again: the account is at it again
                    state="open" if old.state == "closed" else old.state,
                )
            )
