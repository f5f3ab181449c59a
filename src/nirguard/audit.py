"""Audit events of guarded lookups, and where they go.

An :class:`AuditEvent` carries the practitioner, the patient's *pseudonym*
(never the NIR), the outcome and the quota or signal involved. Sinks are a callable,
a :class:`logging.Logger`, or a JSON-lines file (:class:`JsonLinesSink`).
Emitting an event never breaks a lookup: a failing sink is reported once
through ``logging`` (with the exception type only) and then ignored.

>>> event = AuditEvent(time=0, practitioner="10003456789", patient="k1:ab12", outcome="allowed")
>>> event.model_dump_json()
'{"time":"1970-01-01T00:00:00Z","practitioner":"10003456789","patient":"k1:ab12","outcome":"allowed","quota":null,"retry_after":null,"cohort":null,"kind":null,"reason":null,"signals":[],"evidence":null}'
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from nirguard.reasons import ReasonCode

__all__ = ["AuditEvent", "AuditSink", "JsonLinesSink", "Outcome", "make_sink"]

_log = logging.getLogger("nirguard.audit")
#: A character no spelling of a NIR holds (digits, 2A/2B, the accepted separators, and
#: the ASCII whitespace nir.validate strips at the ends).
_NOT_A_NIR = re.compile("[^0-9ABab .\\-\u00a0\u202f\t\n\r\f\v]")

Outcome = Literal[
    "allowed",
    "miss",
    "invalid",
    "denied",
    "locked",
    "suspected",
    "reason_required",
    "break_glass",
    "unavailable",
    "unguarded",
    "would_deny",
    "would_lock",
    "would_suspect",
    "would_require_reason",
]
"""What the guard did with one lookup.

Enforcing guards refuse with ``invalid``, ``denied`` (a quota),
``locked`` (the account is locked out), ``suspected`` (a detection signal),
``reason_required`` (a new patient that needs a stated reason) or
``unavailable`` (the store cannot be reached); they let through with
``allowed``, ``miss`` (allowed, and nobody was found), ``break_glass`` (a
new patient granted on a stated reason) or ``unguarded`` (store down and
``fail_open=True``). A guard in shadow mode (``enforce=False``) never
refuses: where it would have, it records ``would_deny``, ``would_lock``,
``would_suspect`` or ``would_require_reason`` and lets the lookup run.
"""

#: Outcomes of lookups that did not run (the wrapped function was not called).
REFUSED: frozenset[str] = frozenset(
    {"invalid", "denied", "locked", "suspected", "reason_required", "unavailable"}
)
#: Outcomes a guard in shadow mode records instead of refusing.
WOULD: dict[str, str] = {
    "denied": "would_deny",
    "locked": "would_lock",
    "suspected": "would_suspect",
    "reason_required": "would_require_reason",
}


class AuditEvent(BaseModel):
    """One guarded lookup, as the audit trail records it.

    Attributes:
        time: when the guard decided (UTC; from the guard's clock).
        practitioner: the practitioner id the portal gave.
        patient: pseudonym of the patient's NIR (``None`` for invalid input,
            or when the lookup was refused before the NIR was read).
        outcome: see :data:`Outcome`.
        quota: the quota or detection signal involved, if any.
        retry_after: seconds before the same lookup may be allowed, if known.
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
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    time: datetime
    practitioner: str
    patient: str | None = None
    outcome: Outcome
    quota: str | None = None
    retry_after: float | None = None
    cohort: str | None = None
    kind: str | None = None
    reason: ReasonCode | None = None
    signals: tuple[str, ...] = ()
    evidence: dict[str, float] | None = None

    @field_validator("patient", "cohort")
    @classmethod
    def _pseudonym_only(cls, value: str | None) -> str | None:
        # Defence in depth: a patient field that validates as a NIR is refused. A value
        # holding any character no NIR spelling has (a pseudonym's ":", its hex letters)
        # cannot be one: the full check runs only on what could be.
        if value is None or _NOT_A_NIR.search(value):
            return value
        from nirguard.nir import is_valid

        if is_valid(value, strict=False):
            raise ValueError("patient must be a pseudonym, never a NIR")
        return value


AuditSink = Callable[[AuditEvent], object]


class JsonLinesSink:
    """Append each event as one JSON line to a file (thread-safe, one ``write`` per event).

    The file is created with mode 0600 if it does not exist. It stays open between
    events; when it is moved or deleted (log rotation), the next event opens the path
    again, so no line is written to a file that is gone.
    """

    __slots__ = ("_fd", "_identity", "_lock", "_path")

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
        line = (event.model_dump_json() + "\n").encode("utf-8")
        with self._lock:
            os.write(self._open(), line)

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


def _logger_sink(logger: logging.Logger) -> AuditSink:
    def emit(event: AuditEvent) -> None:
        logger.info("%s", event.model_dump_json(), extra={"nirguard_audit": event.model_dump()})

    return emit


def make_sink(audit: Any) -> AuditSink | None:
    """Turn the guard's ``audit=`` argument into a callable (or ``None``).

    Raises:
        TypeError: not a callable, logger or path.
    """
    if audit is None:
        return None
    if isinstance(audit, logging.Logger):
        return _logger_sink(audit)
    if isinstance(audit, (str, os.PathLike)):
        return JsonLinesSink(audit)
    if callable(audit):
        return audit  # type: ignore[no-any-return]
    raise TypeError("audit must be a callable, a logging.Logger or a file path")


class SafeCaller:
    """Calls a user hook; the first failure is logged (type only), later ones silently."""

    __slots__ = ("_failed", "_hook", "_what")

    def __init__(self, hook: Callable[[Any], object] | None, what: str) -> None:
        self._hook = hook
        self._what = what
        self._failed = False

    def __bool__(self) -> bool:
        return self._hook is not None

    def __call__(self, value: Any) -> None:
        if self._hook is None:
            return
        try:
            self._hook(value)
        except Exception as exc:  # a sink must never break a lookup
            if not self._failed:
                self._failed = True
                _log.error(
                    "nirguard %s hook failed (%s); further failures are not reported",
                    self._what,
                    type(exc).__name__,
                )
