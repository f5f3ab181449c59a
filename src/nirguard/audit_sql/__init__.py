"""An audit store you can query: the guard's audit, alerts, notices and break-glass grants in SQL.

:class:`SqlAuditStore` is a set of sinks for :class:`~nirguard.LookupGuard` on SQLAlchemy 2:
SQLite as the embedded default (one file, nothing to run) or PostgreSQL for a portal with
many hosts. It writes in batches, off the request path (a background thread with a bounded
queue; see :mod:`nirguard.audit_sql._writer` and ``docs/console.md`` for what happens when
it falls behind), stores pseudonyms only, and seals each audit record with the portal's MAC
chain when it is given one. The security console (``nirguard.console``) reads from it.

>>> from nirguard import LookupGuard
>>> store = SqlAuditStore("sqlite://")          # in memory; a file: "sqlite:///audit.db"
>>> guard = LookupGuard(audit=store.audit, alert=store.alert, on_break_glass=store.break_glass)
>>> with guard.lookup("10003456789", "1 85 05 78 006 084 91") as lookup:
...     _ = lookup.record({"name": "Jeanne Martin"})
>>> store.flush()
True
>>> [row["outcome"] for row in store.reader.lookups_of(["nobody"])]
[]
>>> store.reader.count_events()
1
>>> store.close()

Needs the ``sql`` extra (``pip install '.[sql]'`` in the checkout; the ``postgres`` extra adds the
PostgreSQL driver).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from nirguard.audit_sql._rows import DAY, mask_nirs, stored_case_id
from nirguard.audit_sql._sql import open_engine
from nirguard.audit_sql._writer import Sealer, Writer
from nirguard.errors import ConfigurationError

__all__ = ["SqlAuditStore", "mask_nirs"]

_log = logging.getLogger("nirguard.audit")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,30}")


class SqlAuditStore:
    """Sinks into a SQL database, and the reader the console uses.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///path/audit.db`` (created if missing),
            ``sqlite://`` (in memory, for tests), ``postgresql://user@host/db``
            (the ``postgres`` extra's psycopg driver is used unless the URL names one).
        prefix: table name prefix (letters, digits, ``_``), default ``nirguard_``.
        schema: PostgreSQL schema of the tables (created if missing); ``None``: the default.
        chain: seals each audit record before it is stored: the ``seal`` method of the
            portal's ``nirguard.audit_chain.AuditChain`` (contract 5). The sealed record is
            kept as text beside the row; :meth:`sealed_lines` gives them back in order for
            ``nirguard audit verify``. ``None``: records are stored unsealed.
        writer: this process's writer id in the store (default: host name and pid).
        queue_size: items the queue holds before sinks start waiting.
        batch_size: most items written in one transaction.
        interval: seconds the writer waits to fill a batch.
        max_wait: seconds a sink waits on a full queue before dropping the item.
        clock: POSIX seconds, for officer actions and purges.

    Raises:
        ConfigurationError: not a usable URL or database (the URL is never echoed),
            a missing extra, or bad arguments.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "nirguard_",
        schema: str | None = None,
        chain: Sealer | Any | None = None,
        writer: str | None = None,
        queue_size: int = 10_000,
        batch_size: int = 500,
        interval: float = 0.2,
        max_wait: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _NAME.fullmatch(prefix) or (schema is not None and not _NAME.fullmatch(schema)):
            raise ConfigurationError(
                "prefix and schema must be short SQL names (letters, digits, _)"
            )
        if min(queue_size, batch_size) < 1 or interval < 0 or max_wait < 0:
            raise ConfigurationError("queue_size and batch_size must be positive, waits >= 0")
        sealer = getattr(chain, "seal", chain)
        if sealer is not None and not callable(sealer):
            raise ConfigurationError("chain must be an AuditChain (or its seal method)")
        from nirguard.audit_sql._query import Reader
        from nirguard.audit_sql._schema import make_tables

        self._engine = open_engine(url, schema)
        self._tables = make_tables(prefix, schema)
        try:
            self._tables.metadata.create_all(self._engine)
        except Exception as exc:
            self._engine.dispose()
            raise ConfigurationError(
                f"cannot create the audit tables ({type(exc).__name__})"
            ) from None
        self._clock = clock
        self._writer_id = (writer or f"{os.uname().nodename}-{os.getpid()}")[:64]
        self._sealer: Sealer | None = sealer
        self._seal_lock = threading.Lock()
        self.reader = Reader(self._engine, self._tables)
        self._seq = self.reader.last_seq(self._writer_id)
        self._writer = Writer(
            self._engine,
            self._tables,
            writer_id=self._writer_id,
            sealer=sealer,
            seal_lock=self._seal_lock,
            next_seq=self._next_seq,
            queue_size=queue_size,
            batch_size=batch_size,
            interval=interval,
            max_wait=max_wait,
        )

    def __repr__(self) -> str:
        return f"SqlAuditStore(dialect={self._engine.dialect.name!r}, writer={self._writer_id!r})"

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- sinks (each returns at once; the writer thread does the I/O) ---------------------------

    def audit(self, event: Any) -> None:
        """Sink for ``LookupGuard(audit=...)``: one :class:`~nirguard.AuditEvent`."""
        self._writer.put("audit", event)

    def alert(self, alert: Any) -> None:
        """Sink for ``LookupGuard(alert=...)``: one :class:`~nirguard.alerts.Alert` (a case).

        An alert of the portal-wide signal ``hot_cohort`` is stored as a notice."""
        if getattr(alert, "signal", None) == "hot_cohort":
            self._writer.put("notice", alert)
        else:
            self._writer.put("alert", alert)

    def notice(self, notice: Any) -> None:
        """Sink for ``LookupGuard(notice=...)``: one portal-level notice (a hot cohort)."""
        self._writer.put("notice", notice)

    def break_glass(self, grant: Any) -> None:
        """Sink for ``LookupGuard(on_break_glass=...)``: one grant, with its free text
        (the only place the store keeps free text; NIR-shaped runs in it are masked)."""
        self._writer.put("break_glass", grant)

    @property
    def dropped(self) -> int:
        """Items dropped because the queue stayed full (see the module's docstring)."""
        return self._writer.dropped

    @property
    def lost(self) -> int:
        """Items the database refused after retries, or that could not be read."""
        return self._writer.lost

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything queued so far is written; ``False`` if ``timeout`` passed."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Write everything queued, stop the writer and close the connections.

        It waits as long as the database takes (a database that refuses a batch costs the
        three retries, about 6 s, then the batch is counted in :attr:`lost`)."""
        self._writer.close()
        self._engine.dispose()

    def __enter__(self) -> SqlAuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- officer actions (written at once, sealed in the same chain) ----------------------------

    def record_action(
        self,
        officer: str,
        action: str,
        target: str | None,
        reason: str | None,
        *,
        when: float | None = None,
    ) -> None:
        """Record what an officer did (who, what, on what, why), synchronously.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database refused it (the action must not
                happen unrecorded: the console refuses it then).
        """
        now = self._clock() if when is None else when
        # a case's id is the guard's digest, kept whole; any other target is masked
        stored = stored_case_id(target) if action == "case" else mask_nirs(target)
        row = {
            "time": now,
            "officer": mask_nirs(officer)[:256],  # type: ignore[index]
            "action": action[:32],
            "target": None if stored is None else stored[:256],
            "reason": None if reason is None else mask_nirs(reason)[:2000],  # type: ignore[index]
            "writer": self._writer_id,
        }
        with self._seal_lock:
            row["seq"] = self._next_seq()
            row["record"] = None
            if self._sealer is not None:
                sealed = self._sealer({"kind": "officer_action", **row, "writer": None})
                row["record"] = json.dumps(sealed, separators=(",", ":"), ensure_ascii=False)
            with self._engine.begin() as conn:
                conn.execute(self._tables.actions.insert(), [row])

    def sealed_lines(self) -> Iterator[str]:
        """The sealed records of every writer, in sealing order (for ``nirguard audit verify``)."""
        return self.reader.sealed_lines()

    # -- retention and import -------------------------------------------------------------------

    def purge(self, older_than_days: float, *, now: float | None = None) -> dict[str, int]:
        """Delete what is older than ``older_than_days`` days; returns rows deleted per table.

        Raises:
            ConfigurationError: ``older_than_days`` is not positive.
        """
        if not older_than_days > 0:
            raise ConfigurationError("older_than_days must be positive")
        cutoff = (self._clock() if now is None else now) - older_than_days * DAY
        self.flush()
        return self.reader.purge(cutoff)

    def import_jsonl(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Read a JSON-lines audit trail (``JsonLinesSink``) into the store.

        Returns ``(imported, skipped)``: lines that are not audit events are skipped
        (their content is never echoed).
        """
        from nirguard.audit import AuditEvent

        imported = skipped = 0
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    record.pop("seal", None)
                    event = AuditEvent.model_validate(record)
                except (ValueError, TypeError, RecursionError, AttributeError):
                    skipped += 1
                    continue
                self._writer.put("audit", event)
                imported += 1
        self.flush(None)
        return imported, skipped
