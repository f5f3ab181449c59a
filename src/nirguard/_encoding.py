"""Unpadded base64url, strictly: the text encoding of key material and tokens.

Internal to nirguard (:mod:`nirguard.keys` writes and reads the key text
form with it, :mod:`nirguard.tokens` the token body). Decoding accepts only
the canonical encoding of some bytes, so that no two strings decode to the
same bytes: no padding, no ``+``/``/``, no whitespace, no non-zero trailing
bits.

>>> b64url_encode(b"\\xfb\\xff")
'-_8'
>>> b64url_decode("-_8")
b'\\xfb\\xff'
>>> b64url_decode("-_9") is None  # same bytes with non-zero trailing bits
True
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

__all__ = ["ASCII_WS", "b64url_decode", "b64url_encode"]

#: What ``str.strip()`` removes that is ASCII: the whitespace around a NIR or a token.
ASCII_WS: Final = " \t\n\r\x0b\x0c"

_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url of ``data``."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes | None:
    """Decode unpadded base64url strictly; ``None`` unless ``text`` is the
    canonical encoding of some bytes (so no two strings decode alike)."""
    if _B64URL_RE.fullmatch(text) is None or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the checks above
        return None
    if b64url_encode(data) != text:  # non-zero trailing bits: not canonical
        return None
    return data
