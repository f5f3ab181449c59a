"""Reading a break-glass reason from a request, framework-free (:func:`stated_reason`).

Part of :mod:`nirguard.http` (which re-exports :func:`stated_reason`): the
integrations read the code and the free text where the portal's
:class:`~nirguard.http.HttpOptions` say, and hand the guard either a
:class:`~nirguard.reasons.Reason` or an opaque value it refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol
from urllib.parse import unquote

from nirguard.errors import InvalidReason
from nirguard.reasons import MAX_REASON_TEXT, Reason

__all__ = ["ReasonPlaces", "stated_reason"]


class ReasonPlaces(Protocol):
    """Where a request states a reason (what :class:`~nirguard.http.HttpOptions` holds)."""

    @property
    def reason_header(self) -> str | None: ...

    @property
    def reason_field(self) -> str | None: ...

    @property
    def reason_text_header(self) -> str | None: ...

    @property
    def reason_text_field(self) -> str | None: ...


class _Unreadable:
    """A stated reason that is no reason: the guard refuses it with InvalidReason."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid reason>"


_UNREADABLE: Final = _Unreadable()
_MAX_CODE: Final = 32


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def stated_reason(
    options: ReasonPlaces,
    header: Callable[[str], str | None],
    body_field: Callable[[str], object],
) -> Reason | object | None:
    """The break-glass reason a request states, for ``guard.lookup(..., reason=...)``.

    The code is read from ``options.reason_header``, else from
    ``options.reason_field``; the free text from ``options.reason_text_header``
    (percent-decoded), else from ``options.reason_text_field``. An empty
    value counts as absent.

    Args:
        options: where the portal reads reasons.
        header: returns a request header's value, or ``None``.
        body_field: returns a member of the request's body object (JSON or
            form), or ``None``.

    Returns:
        ``None`` when no code is stated; a :class:`~nirguard.reasons.Reason`
        when the code is known; otherwise an opaque value that the guard
        refuses with :class:`~nirguard.errors.InvalidReason` (and audits),
        never the value sent.
    """
    code: object = None
    if options.reason_header:
        code = header(options.reason_header)
    if not _given(code) and options.reason_field:
        code = body_field(options.reason_field)
    if not _given(code):
        return None
    if not isinstance(code, str) or len(code) > _MAX_CODE:
        return _UNREADABLE
    try:
        parsed = Reason.of(code)
    except InvalidReason:
        return _UNREADABLE
    text: object = None
    if options.reason_text_header:
        raw = header(options.reason_text_header)
        text = unquote(raw) if isinstance(raw, str) else None
    if not _given(text) and options.reason_text_field:
        text = body_field(options.reason_text_field)
    if not _given(text):
        return parsed
    if not isinstance(text, str):
        return _UNREADABLE
    return Reason(parsed.code, text[: 4 * MAX_REASON_TEXT])
