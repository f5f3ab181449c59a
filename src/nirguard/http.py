"""HTTP semantics for nirguard errors: RFC 9457 problem details, framework-free.

:func:`problem_for` turns any :class:`~nirguard.errors.NirguardError` into a
:class:`Problem` (status, headers, JSON body); :func:`problem_json` encodes the
body; :func:`stated_reason` reads a break-glass reason from a request.
:class:`HttpOptions` says how much a portal reveals and where clients state a
reason. The framework integrations in :mod:`nirguard.integrations` only copy
a ``Problem`` into their own response type.

Mapping (one problem type per body ``code``; the type is the stable URI
``urn:nirguard:problem:<code>``)::

    InvalidNIR            422  invalid_nir      (+ "reason": the InvalidNIR code, "detail")
    ReasonRequired        428  reason_required  (+ how to state a reason, the reason codes)
    InvalidReason         422  reason_invalid   (+ the reason codes)
    GuardUnavailable      503  unavailable      (+ Retry-After when known)
    every other refusal   403  denied           (quota, lockout, detection: one answer)
    InvalidPractitioner   500  internal_error   (the portal's authentication handed over a broken id)
    any other error       500  internal_error

Choices, and why (``docs/http.md`` has the long form):

* **Every refusal looks the same.** A rate limit (``lookups``), a breadth
  breach (``distinct_patients``), a detection and a lockout all give the same
  403 ``denied``, same body, same headers, and no ``Retry-After``: its length
  would tell a one-minute rate window from an hour-long lockout, which is
  exactly what a harvesting script needs to learn to pace itself under the
  breadth quota. The quota, signal and lockout go to the audit trail and the
  alert hook.
* **403, so that nothing retries on its own.** HTTP clients, retry
  middlewares and gateways retry 429 and 503 by themselves; a 403 tells them
  (RFC 9110, 15.5.4) not to repeat the request. The body's ``detail`` says
  the same to a human.
* **A reason is asked with 428.** A new patient past a new-patient quota may
  be looked up with a stated reason (break-glass). ``428 Precondition
  Required`` (RFC 6585) is the status that says "resubmit with something
  more" and asks the response to say how, which the body does: the header or
  field to use and the accepted codes. It is never retried automatically,
  and never says which quota asked.
* **Opting into** ``Retry-After``: ``HttpOptions(reveal_retry_after=True)``
  brings back the detailed answers (429 ``quota_exceeded`` and 403
  ``locked``, with ``Retry-After``), for portals whose clients need it and
  that accept telling a rate limit from a lockout.
* **Nothing from the request is echoed.** Bodies are built only from fixed
  strings of this module, the portal's own option values, and the
  exception's ``code`` and ``retry_after``; never from an exception message,
  never from the NIR. ``InvalidNIR`` says *why* (``reason`` and a fixed
  ``detail``) so that a practitioner can fix a typo.
* ``Cache-Control: no-store`` is set on every problem: a denial is about one
  practitioner at one moment.

>>> from nirguard.errors import PractitionerLocked, QuotaExceeded
>>> rate = problem_for(QuotaExceeded("lookups", retry_after=42))
>>> lock = problem_for(PractitionerLocked(retry_after=3600))
>>> rate.status, rate.body["code"], "Retry-After" in rate.headers
(403, 'denied', False)
>>> (rate.status, rate.headers, rate.body) == (lock.status, lock.headers, lock.body)
True
>>> problem_json(rate)[:44]
b'{"type":"urn:nirguard:problem:denied","title'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from json import dumps
from typing import Final

from nirguard._http_reason import stated_reason
from nirguard.errors import (
    ConfigurationError,
    EnumerationSuspected,
    GuardUnavailable,
    InvalidNIR,
    InvalidPractitioner,
    InvalidReason,
    LookupDenied,
    NirguardError,
    PractitionerLocked,
    QuotaExceeded,
    ReasonRequired,
)
from nirguard.reasons import ReasonCode

__all__ = [
    "DEFAULT_OPTIONS",
    "PROBLEMS",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_PREFIX",
    "HttpOptions",
    "Problem",
    "ProblemType",
    "problem_for",
    "problem_json",
    "stated_reason",
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

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name
_FIELD: Final = re.compile(r"[A-Za-z0-9_\-.]{1,64}")


def _header_name(value: object, what: str) -> None:
    if value is not None and (not isinstance(value, str) or not _TOKEN.fullmatch(value)):
        raise ConfigurationError(f"{what} must be an HTTP header name or None")


def _field_name(value: object, what: str) -> None:
    if value is not None and (not isinstance(value, str) or not _FIELD.fullmatch(value)):
        raise ConfigurationError(f"{what} must be a field name (letters, digits, _-.) or None")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """What a portal's refusals reveal, and where a client states a break-glass reason.

    One object per application, given to the integration's set-up call
    (``install_exception_handlers``, ``init_app``, Django's ``NIRGUARD_HTTP``
    setting): the same names are then read from requests and announced in
    the ``reason_required`` answer.

    Attributes:
        reveal_retry_after: **reveals the policy**: answer a quota refusal
            with 429 ``quota_exceeded`` and a lockout with 403 ``locked``,
            both with ``Retry-After``, instead of one indistinguishable 403
            ``denied``. The length of ``Retry-After`` then tells a rate limit
            from a lockout.
        reason_header: request header holding the reason code (an
            :class:`~nirguard.reasons.ReasonCode`, e.g. ``ETREAT``).
        reason_field: body field (JSON object member or form field) holding
            the reason code, read when the header is absent.
        reason_text_header: request header holding the optional free text,
            percent-encoded UTF-8 (off by default: headers end up in proxy
            logs, and the text may name a person).
        reason_text_field: body field holding the optional free text.

    Raises:
        ConfigurationError: a name that is not a header or field name.
    """

    reveal_retry_after: bool = False
    reason_header: str | None = "X-Nirguard-Reason"
    reason_field: str | None = None
    reason_text_header: str | None = None
    reason_text_field: str | None = "reason_text"

    def __post_init__(self) -> None:
        if not isinstance(self.reveal_retry_after, bool):
            raise ConfigurationError("reveal_retry_after must be True or False")
        _header_name(self.reason_header, "reason_header")
        _header_name(self.reason_text_header, "reason_text_header")
        _field_name(self.reason_field, "reason_field")
        _field_name(self.reason_text_field, "reason_text_field")

    @classmethod
    def of(cls, value: object) -> HttpOptions:
        """Options from ``None`` (the defaults), an :class:`HttpOptions` or a dict of fields.

        Raises:
            ConfigurationError: anything else, or an unknown field.
        """
        if value is None:
            return DEFAULT_OPTIONS
        if isinstance(value, HttpOptions):
            return value
        if isinstance(value, dict):
            try:
                return cls(**value)
            except TypeError:
                raise ConfigurationError("unknown HttpOptions field") from None
        raise ConfigurationError("expected HttpOptions, a dict of its fields, or None")


DEFAULT_OPTIONS: Final = HttpOptions()
"""The defaults: nothing revealed; reason code in ``X-Nirguard-Reason``, text in ``reason_text``."""


@dataclass(frozen=True)
class ProblemType:
    """One documented problem type: its body ``code``, HTTP status, title and fixed detail."""

    code: str
    status: int
    title: str
    detail: str | None = None

    @property
    def type(self) -> str:
        """The stable ``type`` URI, ``urn:nirguard:problem:<code>``."""
        return PROBLEM_TYPE_PREFIX + self.code


INVALID_NIR = ProblemType("invalid_nir", 422, "Invalid NIR")
DENIED = ProblemType(
    "denied",
    403,
    "Lookup refused",
    "The lookup was refused. Do not retry it automatically; "
    "if refusals go on, contact your security officer.",
)
REASON_REQUIRED = ProblemType("reason_required", 428, "Reason required")
REASON_INVALID = ProblemType(
    "reason_invalid", 422, "Unknown reason", "The stated reason is not one of reason_codes."
)
UNAVAILABLE = ProblemType("unavailable", 503, "Lookup guard unavailable")
INTERNAL_ERROR = ProblemType("internal_error", 500, "Internal error")
QUOTA_EXCEEDED = ProblemType("quota_exceeded", 429, "Lookup quota exceeded")
LOCKED = ProblemType("locked", 403, "Practitioner locked out")

PROBLEMS: tuple[ProblemType, ...] = (
    INVALID_NIR,
    DENIED,
    REASON_REQUIRED,
    REASON_INVALID,
    UNAVAILABLE,
    INTERNAL_ERROR,
    QUOTA_EXCEEDED,
    LOCKED,
)
"""Every problem type :func:`problem_for` can produce (the last two only with
``reveal_retry_after``)."""

_TIMED_WHEN_REVEALED: Final = frozenset({DENIED, REASON_REQUIRED, QUOTA_EXCEEDED, LOCKED})

_REASON_CODES: Final = tuple({"code": c.value, "display": c.display} for c in ReasonCode)


@dataclass(frozen=True)
class Problem:
    """An HTTP error response, independent of any web framework.

    Attributes:
        status: the HTTP status code.
        headers: response headers, ``Content-Type`` and ``Cache-Control``
            always, ``Retry-After`` (integer seconds) on a 503 when known and,
            with ``reveal_retry_after``, on refusals.
        body: the RFC 9457 members ``type``, ``title``, ``status`` (and
            ``detail`` when there is a fixed one), plus the extension member
            ``code`` and those of each type (``docs/http.md``).
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, object] = field(default_factory=dict)


def _retry_after_seconds(retry_after: object) -> int | None:
    if retry_after is None or isinstance(retry_after, bool):
        return None
    try:
        value = float(retry_after)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    return max(1, math.ceil(value))


def _classify(exc: NirguardError, reveal: bool) -> ProblemType:
    if isinstance(exc, InvalidNIR):
        return INVALID_NIR
    if isinstance(exc, InvalidPractitioner):
        return INTERNAL_ERROR
    if isinstance(exc, InvalidReason):
        return REASON_INVALID
    if isinstance(exc, ReasonRequired):
        return REASON_REQUIRED
    if isinstance(exc, GuardUnavailable):
        return UNAVAILABLE
    if reveal and isinstance(exc, QuotaExceeded):
        return QUOTA_EXCEEDED
    if reveal and isinstance(exc, (PractitionerLocked, EnumerationSuspected)):
        return LOCKED
    if isinstance(exc, LookupDenied):
        return DENIED
    return INTERNAL_ERROR


def _how_to_state_a_reason(options: HttpOptions) -> tuple[str, dict[str, object]]:
    members: dict[str, object] = {}
    ways = []
    if options.reason_header:
        members["reason_header"] = options.reason_header
        ways.append(f"in the {options.reason_header} header")
    if options.reason_field:
        members["reason_field"] = options.reason_field
        ways.append(f"in the {options.reason_field} body field")
    if not ways:
        return "This patient can be looked up only with a stated reason.", members
    detail = (
        "This patient can be looked up only with a stated reason: resubmit the request "
        f"with one of reason_codes {' or '.join(ways)}"
    )
    texts = []
    if options.reason_text_header:
        members["reason_text_header"] = options.reason_text_header
        texts.append(f"the {options.reason_text_header} header (percent-encoded)")
    if options.reason_text_field:
        members["reason_text_field"] = options.reason_text_field
        texts.append(f"the {options.reason_text_field} body field")
    if texts:
        detail += f", and optionally a free-text explanation in {' or '.join(texts)}"
    members["reason_codes"] = [dict(c) for c in _REASON_CODES]
    return detail + ". The access is recorded and reviewed.", members


def problem_for(exc: NirguardError, options: HttpOptions | None = None) -> Problem:
    """Map a nirguard exception to its problem-details response.

    Args:
        exc: any exception of the nirguard tree.
        options: what to reveal and where reasons are stated (default
            :data:`DEFAULT_OPTIONS`).

    Returns:
        The :class:`Problem` to send; see the module documentation for the
        mapping. The body never contains the checked value, the quota or
        signal, or the exception message of anything but an
        :class:`~nirguard.errors.InvalidNIR` (whose messages are fixed per code).

    Raises:
        TypeError: ``exc`` is not a :class:`~nirguard.errors.NirguardError`.
    """
    if not isinstance(exc, NirguardError):
        raise TypeError("problem_for() expects a NirguardError")
    options = DEFAULT_OPTIONS if options is None else options
    reveal = options.reveal_retry_after
    kind = _classify(exc, reveal)
    body: dict[str, object] = {
        "type": kind.type,
        "title": kind.title,
        "status": kind.status,
        "code": kind.code,
    }
    if kind.detail is not None:
        body["detail"] = kind.detail
    headers = {
        "Content-Type": PROBLEM_CONTENT_TYPE,
        "Cache-Control": "no-store",
    }
    if kind is INVALID_NIR:
        reason = exc.code if exc.code in InvalidNIR.codes else None
        body["reason"] = reason or "invalid"
        body["detail"] = str(InvalidNIR(reason)) if reason else "invalid NIR"
    elif kind is REASON_REQUIRED:
        body["detail"], members = _how_to_state_a_reason(options)
        body.update(members)
    elif kind is REASON_INVALID:
        body["reason_codes"] = [dict(c) for c in _REASON_CODES]
    timed = kind is UNAVAILABLE or (reveal and kind in _TIMED_WHEN_REVEALED)
    if timed and isinstance(exc, LookupDenied):
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
    return dumps(problem.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
