"""What every integration reads from a request body, framework-free."""

from __future__ import annotations

import json

__all__ = ["json_object"]


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
