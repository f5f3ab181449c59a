"""Audit events of guarded lookups, and where they go.

An :class:`AuditEvent` carries the practitioner, the patient's *pseudonym*
(never the NIR), the outcome and the quota or signal involved. Sinks are a callable,
a :class:`logging.Logger`, or a JSON-lines file (:class:`JsonLinesSink`).
Sinks that do I/O (a file, a logger, :class:`~nirguard.audit_fhir.FhirAuditSink`)
run on the guard's hook worker, off the request path (``docs/guard.md``,
*Hooks*). Emitting an event never breaks a lookup: a failing sink is reported
once through ``logging`` (with the exception type only) and then ignored.
Every string field has its NIR-shaped runs masked (a practitioner id, a
policy name or an administrator's note is the portal's text, and could hold one).

>>> event = AuditEvent(time=0, practitioner="10003456789", patient="k1:ab12", outcome="allowed")
>>> event.model_dump_json()
'{"time":"1970-01-01T00:00:00Z","practitioner":"10003456789","patient":"k1:ab12","outcome":"allowed","quota":null,"retry_after":null,"cohort":null,"kind":null,"reason":null,"signals":[],"evidence":null,"case":null,"actor":null,"note":null}'
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from nirguard._audit_json import NOT_A_NIR, fast_json, whole_seconds
from nirguard._names import REFUSED, WOULD, Outcome
from nirguard._redact import mask_nir_runs
from nirguard.reasons import ReasonCode

__all__ = [
    "REFUSED",
    "WOULD",
    "AuditEvent",
    "AuditSink",
    "JsonLinesSink",
    "LoggerSink",
    "OffPath",
    "Outcome",
    "does_io",
    "event_json",
    "make_sink",
]

_log = logging.getLogger("nirguard.audit")


class AuditEvent(BaseModel):
    """One guarded lookup, as the audit trail records it.

    Attributes:
        time: when the guard decided (UTC; from the guard's clock).
        practitioner: the practitioner id the portal gave.
        patient: pseudonym of the patient's NIR (``None`` for invalid input,
            or when the lookup was refused before the NIR was read).
        outcome: see :data:`Outcome`.
        quota: the quota or detection signal involved, if any.
        retry_after: whole seconds before the same lookup may be allowed, if
            known: rounded up, and at least 1 (a refusal that ends in 0.3 s
            says 1, never 0, as ``Retry-After`` does in :mod:`nirguard.http`);
            ``None`` when unknown or unbounded.
        cohort: pseudonym of the patient's birth cohort (the first 10
            characters of the NIR) under the purpose ``<purpose>/cohort``;
            ``nirguard calibrate`` reads it to measure cohort concentration.
        kind: the practitioner's kind: the ``name`` of the policy that
            applied (``None`` when the policy has no name).
        reason: the stated reason (HL7 v3 ActReason code) of a break-glass
            lookup; never its free text.
        signals: signals that fired without refusing this lookup (e.g.
            ``hot_cohort``: the cohort is being looked up far above its
            baseline across the portal).
        evidence: the counts behind a refusal or a signal (no NIR, no
            pseudonym).
        case: the stable id of the account's incident (``Alert.case``), on
            every event of an incident: the lockout, the refusals and
            lookups that follow it, the ``unlocked`` that ends it.
        actor: who did an administrative action (``unlocked``).
        note: why (the administrator's reason for an ``unlocked``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    time: datetime
    practitioner: str
    patient: str | None = None
    outcome: Outcome
    quota: str | None = None
    retry_after: int | None = None
    cohort: str | None = None
    kind: str | None = None
    reason: ReasonCode | None = None
    signals: tuple[str, ...] = ()
    evidence: dict[str, float] | None = None
    case: str | None = None
    actor: str | None = None
    note: str | None = None

    @field_validator("practitioner", "quota", "kind", "case", "actor", "note")
    @classmethod
    def _masked(cls, value: str | None) -> str | None:
        return value if value is None else mask_nir_runs(value)

    @field_validator("retry_after", mode="before")
    @classmethod
    def _whole_seconds(cls, value: object) -> object:
        return whole_seconds(value)

    @field_validator("patient", "cohort")
    @classmethod
    def _pseudonym_only(cls, value: str | None) -> str | None:
        # Defence in depth: a patient field that validates as a NIR is refused. A value
        # holding any character no NIR spelling has (a pseudonym's ":", its hex letters)
        # cannot be one: the full check runs only on what could be.
        if value is None or NOT_A_NIR.search(value):
            return value
        from nirguard.nir import is_valid

        if is_valid(value, strict=False):
            raise ValueError("patient must be a pseudonym, never a NIR")
        return value


def event_json(
    time: float,
    practitioner: str,
    outcome: str,
    *,
    patient: str | None = None,
    quota: str | None = None,
    retry_after: float | None = None,
    cohort: str | None = None,
    kind: str | None = None,
    reason: ReasonCode | None = None,
    signals: tuple[str, ...] = (),
    evidence: dict[str, float] | None = None,
    case: str | None = None,
    actor: str | None = None,
    note: str | None = None,
) -> str:
    """The JSON of the :class:`AuditEvent` of these fields (``time`` in POSIX seconds):
    what ``AuditEvent(...).model_dump_json()`` gives, character for character.

    The audit worker's way of writing a lookup's event: the common event (no evidence)
    is formatted directly, with the model's checks (NIR-shaped runs masked, no NIR as a
    pseudonym, ``retry_after`` in whole seconds); any other goes through the model.

    Raises:
        pydantic.ValidationError: as :class:`AuditEvent` would (a NIR as a pseudonym,
            an unknown outcome, ...).
        pydantic_core.PydanticSerializationError: a text the model cannot write (a
            lone surrogate), as ``model_dump_json`` would.
    """
    if evidence is None:
        line = fast_json(
            time, practitioner, outcome, patient, quota, retry_after, cohort, kind, reason,
            signals, case, actor, note,
        )  # fmt: skip
        if line is not None:
            return line
    return AuditEvent(
        time=datetime.fromtimestamp(time, tz=timezone.utc),
        practitioner=practitioner,
        patient=patient,
        outcome=outcome,  # type: ignore[arg-type]
        quota=quota,
        retry_after=retry_after,  # type: ignore[arg-type]
        cohort=cohort,
        kind=kind,
        reason=reason,
        signals=signals,
        evidence=evidence,
        case=case,
        actor=actor,
        note=note,
    ).model_dump_json()


AuditSink = Callable[[AuditEvent], object]


class JsonLinesSink:
    """Append each event as one JSON line to a file (thread-safe, one ``write`` per event).

    The file is created with mode 0600 if it does not exist. It stays open between
    events; when it is moved or deleted (log rotation), the next event opens the path
    again, so no line is written to a file that is gone.
    """

    __slots__ = ("_fd", "_identity", "_lock", "_path")

    #: It writes to a file: the guard runs it on its hook worker, off the request path.
    background = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None

    def _open(self) -> int:
        fd = self._fd
        if fd is not None:
            try:
                stat = os.stat(self._path)
            except FileNotFoundError:
                stat = None
            if stat is not None and (stat.st_dev, stat.st_ino) == self._identity:
                return fd
            os.close(fd)  # rotated or deleted: write to the path's new file
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        stat = os.fstat(fd)
        self._fd, self._identity = fd, (stat.st_dev, stat.st_ino)
        return fd

    def __call__(self, event: AuditEvent) -> None:
        self.write_lines([event.model_dump_json()])

    def write_many(self, events: list[AuditEvent]) -> None:
        """Append several events, one ``write`` per batch (see :meth:`write_lines`)."""
        self.write_lines([event.model_dump_json() for event in events])

    def write_lines(self, lines: list[str]) -> None:
        """Append events already in JSON (:func:`event_json`), one per line, in one
        ``write`` (the guard's audit worker writes its batches this way).

        Each line is whole: a batch is written with ``O_APPEND`` in one call,
        so lines of other processes appending to the file never fall inside one.
        """
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            fd = self._open()
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]

    def close(self) -> None:
        """Close the file (the next event opens it again)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __repr__(self) -> str:
        return f"JsonLinesSink({str(self._path)!r})"


class LoggerSink:
    """Each event as one ``INFO`` record of ``logger``: the JSON as message, the fields in
    ``record.nirguard_audit``. Handlers do I/O: the guard runs it off the request path."""

    __slots__ = ("_logger",)

    background = True

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def __call__(self, event: AuditEvent) -> None:
        self._logger.info(
            "%s", event.model_dump_json(), extra={"nirguard_audit": event.model_dump()}
        )

    def __repr__(self) -> str:
        return f"LoggerSink({self._logger.name!r})"


class OffPath:
    """Mark an audit callable as one that does I/O: the guard runs it on its hook worker.

    A plain callable given as ``audit=`` runs in the lookup (the portal's own
    code, e.g. ``events.append``); one that posts to a SIEM or writes to a
    database should not hold a lookup up::

        guard = LookupGuard(audit=OffPath(post_to_siem))
    """

    __slots__ = ("_sink",)

    background = True

    def __init__(self, sink: AuditSink) -> None:
        if not callable(sink):
            raise TypeError("OffPath() expects a callable")
        self._sink = sink

    def __call__(self, event: AuditEvent) -> object:
        return self._sink(event)

    def __repr__(self) -> str:
        return f"OffPath({self._sink!r})"


def does_io(sink: object) -> bool:
    """Whether ``sink`` says it does I/O (``background = True``): run it off the request path."""
    return getattr(sink, "background", False) is True


def make_sink(audit: Any) -> AuditSink | None:
    """Turn the guard's ``audit=`` argument into a callable (or ``None``).

    Raises:
        TypeError: not a callable, logger or path.
    """
    if audit is None:
        return None
    if isinstance(audit, logging.Logger):
        return LoggerSink(audit)
    if isinstance(audit, (str, os.PathLike)):
        return JsonLinesSink(audit)
    if callable(audit):
        return audit  # type: ignore[no-any-return]
    raise TypeError("audit must be a callable, a logging.Logger or a file path")
