"""A sealed audit trail: each record carries a MAC chained to the previous record of its writer.

After a breach, the attacker's first move is to erase their traces. With
:class:`SealedAuditLog` as the guard's audit sink, each line of the JSON-lines
trail carries a ``seal``: the writer's id (one per process and chain), a
sequence number, the previous record's MAC and its own, HMAC-SHA-256 under the
**audit key** (an :class:`AuditKey`, never the pseudonym key). The writer also
writes an ``open`` record, a ``checkpoint`` when idle, and a ``close`` record
when it is closed (at exit too). :func:`verify_files` (``nirguard audit
verify``) then reports, per writer and with its position, any record changed,
removed, reordered, duplicated or inserted, and a chain cut short. Several
processes can append to one file, and a writer follows the file's rotation:
verify the files oldest first.

>>> import pathlib, tempfile
>>> from nirguard import AuditEvent
>>> key = AuditKey.generate("audit-2026")
>>> path = pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl"
>>> sink = SealedAuditLog(path, key, checkpoint=None)
>>> for t in range(3):
...     sink(AuditEvent(time=t, practitioner="10003456789", patient="k1:ab12", outcome="allowed"))
>>> sink.close()
>>> verify_files([path], key).ok
True
>>> lines = path.read_text().splitlines()
>>> del lines[2]                                 # someone erases one lookup
>>> print(verify_lines(lines, key).problems[0])  # doctest: +ELLIPSIS
line 3: removed: writer ...: seq 3..3 missing (1 record) between line 2 and line 3

What it cannot see: a writer's last records cut before its next checkpoint
(within two checkpoint periods of the end of the trail), and anything done by
someone who holds the audit key. Ship the lines off the host as they are
written; ``docs/audit.md`` (*Sealed audit trail*) says how to keep the key.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from nirguard._audit_seal import AuditChain, AuditKey
from nirguard._audit_verify import Files, Problem, Report, WriterSummary, verify_lines
from nirguard._hook_files import iso_time
from nirguard._hooks import flush_all
from nirguard.audit import AuditEvent, JsonLinesSink

__all__ = [
    "AuditChain",
    "AuditKey",
    "Problem",
    "Report",
    "SealedAuditLog",
    "WriterSummary",
    "verify_files",
    "verify_lines",
]

#: Default seconds between checkpoints of an idle writer.
CHECKPOINT = 60.0


class SealedAuditLog(JsonLinesSink):
    """A :class:`~nirguard.audit.JsonLinesSink` that seals each line: ``LookupGuard(audit=...)``.

    Lines are written as by :class:`~nirguard.audit.JsonLinesSink` (mode 0600,
    ``O_APPEND``, whole lines, rotation followed), each event with its ``seal``,
    in the chain of this process (:class:`AuditChain`; a forked child starts its
    own). A chain starts with an ``open`` record, and ends with a ``close``
    record when :meth:`close` is called (at interpreter exit too); a thread
    writes a ``checkpoint`` record when the writer has been idle for half of
    ``checkpoint`` seconds, so that ``nirguard audit verify`` can tell a cut
    tail from a quiet writer.

    Args:
        path: the trail, a JSON-lines file.
        key: the audit key (:class:`AuditKey`; a pseudonym key is refused).
        writer: a name for this writer in the trail (default: the host name).
        checkpoint: seconds between checkpoints of an idle writer (``None``: none,
            and a cut tail is found only by ``--require-closed``).
        clock: POSIX seconds, for the times of the chain's own records.

    Raises:
        InvalidKey: ``key`` is not an :class:`AuditKey`.
        ValueError: a bad ``writer`` name, or ``checkpoint`` not positive.
    """

    __slots__ = ("__weakref__", "_chain", "_clock", "_ended", "_every", "_last", "_ticker")

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: AuditKey,
        *,
        writer: str | None = None,
        checkpoint: float | None = CHECKPOINT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if checkpoint is not None and not 0 < checkpoint < float("inf"):
            raise ValueError("checkpoint must be a positive number of seconds, or None")
        super().__init__(path)
        self._chain = AuditChain(key, writer=writer)
        self._every = checkpoint
        self._clock = clock
        self._last = time.monotonic()
        self._ticker: tuple[int, threading.Event] | None = None
        self._ended = False
        _LIVE.add(self)

    @property
    def chain(self) -> AuditChain:
        """The chain this sink seals with (its ``writer`` is the current writer id)."""
        return self._chain

    def __call__(self, event: AuditEvent) -> None:
        self.write_many([event])

    def write_many(self, events: list[AuditEvent]) -> None:
        """Seal and append several events, one ``write`` per batch (the hook worker's call)."""
        records = [event.model_dump(mode="json") for event in events]
        with self._lock:
            self._append(records)
            self._start_ticker()

    def checkpoint(self, idle: float = 0.0) -> None:
        """Write a ``checkpoint`` record, unless a line was written in the last ``idle`` seconds."""
        with self._lock:
            if time.monotonic() - self._last >= idle:
                self._append([], "checkpoint")

    def close(self) -> None:
        """Write the chain's ``close`` record and close the file (a later event opens a new chain)."""
        with self._lock:
            if not self._chain.fresh and not self._ended:
                self._append([], "close")
                self._ended = True
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker[1].set()
        super().close()

    def _mark(self, kind: str) -> dict[str, Any]:
        record: dict[str, Any] = {"time": iso_time(self._clock()), "chain": kind}
        if kind != "close" and self._every is not None:
            record["every"] = self._every
        return record

    def _append(self, records: list[dict[str, Any]], mark: str | None = None) -> None:
        chain = self._chain
        if self._ended:  # closed, then written to again: a new chain
            chain.restart()
            self._ended = False
        sealed = [chain.seal_line(self._mark("open"))] if chain.fresh else []
        sealed += [chain.seal_line(record) for record in records]
        if mark is not None:
            sealed.append(chain.seal_line(self._mark(mark)))
        view = memoryview(("\n".join(sealed) + "\n").encode("ascii"))
        fd = self._open()
        while view:
            view = view[os.write(fd, view) :]
        self._last = time.monotonic()

    def _start_ticker(self) -> None:
        pid = os.getpid()
        if self._every is None or (self._ticker is not None and self._ticker[0] == pid):
            return
        stop = threading.Event()
        self._ticker = (pid, stop)
        thread = threading.Thread(
            target=_tick,
            args=(weakref.ref(self), stop, self._every / 2),
            name="nirguard-audit-checkpoint",
            daemon=True,
        )
        thread.start()

    def __repr__(self) -> str:
        return f"SealedAuditLog({str(self._path)!r}, writer={self._chain.writer!r})"


def _tick(ref: weakref.ref[SealedAuditLog], stop: threading.Event, period: float) -> None:
    while not stop.wait(period):
        sink = ref()
        if sink is None:
            return
        with contextlib.suppress(Exception):  # a full disk shows as a cut tail, never a crash
            sink.checkpoint(idle=period)
        del sink


_LIVE: weakref.WeakSet[SealedAuditLog] = weakref.WeakSet()


def _close_at_exit() -> None:
    flush_all()  # events still queued on hook workers go in before the closing records
    for sink in list(_LIVE):
        with contextlib.suppress(Exception):
            sink.close()


atexit.register(_close_at_exit)


def verify_files(
    paths: Sequence[str | os.PathLike[str]],
    keys: AuditKey | Sequence[AuditKey],
    *,
    now: float | None = None,
    partial: bool = False,
    require_closed: bool = False,
    mixed: bool = False,
) -> Report:
    """Verify a sealed trail kept in ``paths`` (oldest first; ``.gz`` read as such).

    Args:
        paths: the trail's files, in the order they were written (rotation).
        keys: the audit key, or every key the trail may have been sealed with.
        now: POSIX seconds the trail should reach (default: its latest record):
            an open chain silent for more than two checkpoint periods before it
            is reported as cut (``tail_missing``).
        partial: accept chains whose first records are not in ``paths`` (older
            files removed by retention).
        require_closed: every chain must end with its ``close`` record (the
            writers have stopped).
        mixed: the files hold other loggers' lines too: those (not JSON, or JSON
            without the names of an audit record) are counted, not reported. A
            prefix before the JSON (syslog's) is skipped in any case.

    Returns:
        A :class:`Report`: ``ok``, the problems (codes ``changed``, ``removed``,
        ``reordered``, ``duplicated``, ``inserted``, ``unsealed``, ``unreadable``,
        ``unknown_key``, ``wrong_key``, ``unverified``, ``forked``, ``chain_break``,
        ``after_close``, ``tail_missing``) and one summary per writer.

    Raises:
        OSError: a file cannot be read.
        InvalidKey: ``keys`` holds something that is not an :class:`AuditKey`.
    """
    files = Files(paths)
    return verify_lines(
        files,
        keys,
        now=now,
        partial=partial,
        require_closed=require_closed,
        where=files.where,
        mixed=mixed,
    )
