"""HTTP semantics for nirguard errors: RFC 9457 problem details, framework-free.

:func:`problem_for` turns any :class:`~nirguard.errors.NirguardError` into a
:class:`Problem` (status, headers, JSON body); :func:`problem_json` encodes the
body. The framework integrations in :mod:`nirguard.integrations` only copy a
``Problem`` into their own response type.

Mapping (one problem type per body ``code``; the type is the stable URI
``urn:nirguard:problem:<code>``)::

    InvalidNIR            422  invalid_nir     (+ "reason": the InvalidNIR code, "detail")
    QuotaExceeded         429  quota_exceeded  (+ Retry-After)
    PractitionerLocked    403  locked          (+ Retry-After when the lockout ends by itself)
    EnumerationSuspected  403  locked          (+ Retry-After when the lockout ends by itself)
    GuardUnavailable      503  unavailable     (+ Retry-After when known)
    other LookupDenied    403  denied          (+ Retry-After when known)
    any other error       500  internal_error

Choices, and why:

* **Lockout is 403, not 429.** A lockout is a decision about the account, not
  about the request rate: it lasts an hour, a day, or until an administrator
  calls ``unlock()``, and the right reaction is a human one (contact the
  security officer), not an automatic retry. Generic HTTP clients and retry
  middlewares retry 429 (and 503) on their own; a 403 stops them. A quota
  denial stays 429: waiting ``Retry-After`` is then the right reaction.
* **Suspected enumeration looks exactly like a lockout.** The guard locks the
  practitioner out when it suspects enumeration; the response says "locked"
  and never which detection signal fired, so a harvesting script learns
  nothing about which pattern to avoid. The signal goes to the audit trail
  and the alert hook, where the security team reads it.
* **Every quota gives the same** ``quota_exceeded``. The quota name
  (``lookups``, ``distinct_patients``, ``misses``, ...) would tell an attacker
  which counter to stay under and whether the breach started a lockout. A
  legitimate client needs only "wait, then retry", which ``Retry-After``
  carries. The price: a user cannot be told "you looked up too many
  *different* patients"; the portal's admin screen (``guard.status()``) and
  the audit events carry the quota name for whoever must know. No limit
  value, remaining count or window is ever put in a response.
* **Nothing from the request is echoed.** Bodies are built only from fixed
  strings of this module and the exception's ``code`` and ``retry_after``;
  never from the exception message of a non-nirguard error, never from the
  NIR. ``InvalidNIR`` says *why* (``reason`` and a fixed ``detail``) so that a
  practitioner can fix a typo; a script that computes NIRs learns nothing it
  does not already know.
* **Retry-After** is an integer number of seconds, rounded up and at least 1
  (a ``0`` would invite a hot retry loop), present only when the guard knows
  when the denial ends. ``Cache-Control: no-store`` is set on every problem:
  a denial is about one practitioner at one moment.

>>> from nirguard.errors import QuotaExceeded
>>> problem = problem_for(QuotaExceeded("distinct_patients", retry_after=12.2))
>>> problem.status, problem.headers["Retry-After"], problem.body["code"]
(429, '13', 'quota_exceeded')
>>> problem_json(problem)[:52]
b'{"type":"urn:nirguard:problem:quota_exceeded","title'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from nirguard.errors import NIR_MESSAGES as _NIR_MESSAGES
from nirguard.errors import (
    EnumerationSuspected,
    GuardUnavailable,
    InvalidNIR,
    LookupDenied,
    NirguardError,
    PractitionerLocked,
    QuotaExceeded,
)

__all__ = [
    "PROBLEMS",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_PREFIX",
    "Problem",
    "ProblemType",
    "problem_for",
    "problem_json",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
"""Media type of every problem response (RFC 9457, section 3)."""

PROBLEM_TYPE_PREFIX = "urn:nirguard:problem:"
"""Prefix of every problem ``type``: an identifier, not a locator.

A URN rather than an ``https://`` link because nirguard does not know where a
portal's documentation is served and a ``type`` must never change; clients
compare it as an opaque string (RFC 9457 asks them not to dereference it
automatically). Each type is documented in ``docs/http.md``.
"""


@dataclass(frozen=True)
class ProblemType:
    """One documented problem type: its body ``code``, HTTP status and title."""

    code: str
    status: int
    title: str

    @property
    def type(self) -> str:
        """The stable ``type`` URI, ``urn:nirguard:problem:<code>``."""
        return PROBLEM_TYPE_PREFIX + self.code


INVALID_NIR = ProblemType("invalid_nir", 422, "Invalid NIR")
QUOTA_EXCEEDED = ProblemType("quota_exceeded", 429, "Lookup quota exceeded")
LOCKED = ProblemType("locked", 403, "Practitioner locked out")
UNAVAILABLE = ProblemType("unavailable", 503, "Lookup guard unavailable")
DENIED = ProblemType("denied", 403, "Lookup denied")
INTERNAL_ERROR = ProblemType("internal_error", 500, "Internal error")

PROBLEMS: tuple[ProblemType, ...] = (
    INVALID_NIR,
    QUOTA_EXCEEDED,
    LOCKED,
    UNAVAILABLE,
    DENIED,
    INTERNAL_ERROR,
)
"""Every problem type :func:`problem_for` can produce."""


@dataclass(frozen=True)
class Problem:
    """An HTTP error response, independent of any web framework.

    Attributes:
        status: the HTTP status code.
        headers: response headers, ``Content-Type`` and ``Cache-Control``
            always, ``Retry-After`` (integer seconds) when known.
        body: the RFC 9457 members ``type``, ``title``, ``status``, plus the
            extension members ``code`` and, when known, ``retry_after``
            (for ``invalid_nir``: ``reason`` and ``detail``).
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, object] = field(default_factory=dict)


def _retry_after_seconds(retry_after: float | None) -> int | None:
    if retry_after is None:
        return None
    try:
        value = float(retry_after)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    return max(1, math.ceil(value))


def _classify(exc: NirguardError) -> ProblemType:
    if isinstance(exc, InvalidNIR):
        return INVALID_NIR
    if isinstance(exc, QuotaExceeded):
        return QUOTA_EXCEEDED
    if isinstance(exc, (PractitionerLocked, EnumerationSuspected)):
        return LOCKED
    if isinstance(exc, GuardUnavailable):
        return UNAVAILABLE
    if isinstance(exc, LookupDenied):
        return DENIED
    return INTERNAL_ERROR


def problem_for(exc: NirguardError) -> Problem:
    """Map a nirguard exception to its problem-details response.

    Args:
        exc: any exception of the nirguard tree.

    Returns:
        The :class:`Problem` to send; see the module documentation for the
        mapping. The body never contains the checked value or the exception
        message of anything but an :class:`~nirguard.errors.InvalidNIR`
        (whose messages are fixed per code).

    Raises:
        TypeError: ``exc`` is not a :class:`~nirguard.errors.NirguardError`.
    """
    if not isinstance(exc, NirguardError):
        raise TypeError("problem_for() expects a NirguardError")
    kind = _classify(exc)
    body: dict[str, object] = {
        "type": kind.type,
        "title": kind.title,
        "status": kind.status,
        "code": kind.code,
    }
    headers = {
        "Content-Type": PROBLEM_CONTENT_TYPE,
        "Cache-Control": "no-store",
    }
    if kind is INVALID_NIR:
        reason = exc.code if exc.code in _NIR_MESSAGES else "invalid"
        body["reason"] = reason
        body["detail"] = _NIR_MESSAGES.get(reason, "invalid NIR")
    elif isinstance(exc, LookupDenied):
        seconds = _retry_after_seconds(exc.retry_after)
        if seconds is not None:
            body["retry_after"] = seconds
            headers["Retry-After"] = str(seconds)
    return Problem(status=kind.status, headers=headers, body=body)


def problem_json(problem: Problem) -> bytes:
    """Encode a problem's body as compact UTF-8 JSON.

    Args:
        problem: a :class:`Problem`, usually from :func:`problem_for`.

    Returns:
        The response body bytes, members in a stable order.

    Raises:
        TypeError: the body holds a value JSON cannot encode.
    """
    return json.dumps(problem.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
