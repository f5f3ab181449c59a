"""What every integration reads from a request, framework-free: the body, the session reader."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["json_object", "readers"]

G = TypeVar("G", bound=Callable[..., Any])


def readers(practitioner: object, session: G | None) -> G | None:
    """Check an integration's ``practitioner=`` (a callable) and ``session=`` (``None``: no
    session id, or a callable); return ``session``.

    Neither is ever a name to read from the request: a path parameter, a body
    field or a header is what the client sends, and both must be the portal's
    own (a client that could choose the session id, or leave it out, would).

    Raises:
        TypeError: either is not callable.
    """
    if not callable(practitioner):
        raise TypeError("practitioner must be a callable reading the authenticated id")
    if session is not None and not callable(session):
        raise TypeError(
            "session must be a callable reading the portal's own session id "
            "(never a field of the request: the client would choose it)"
        )
    return session


def json_object(raw: bytes | str) -> dict[str, object] | None:
    """The JSON object a request body holds, or ``None``.

    ``None`` for an empty body, a body that is not JSON (bad syntax, bad
    UTF-8), a JSON value that is not an object, and a body nested too deep
    for the parser (``RecursionError``): the caller then passes ``None`` on as
    the NIR and the guard answers it like any invalid one (422), never with
    an unhandled error (500).
    """
    if not raw:
        return None
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None
