"""Package-internal: finding NIRs inside free text.

The CSV commands scan every field they do not convert (and the header) with
:func:`contains_nir`, so that no NIR, in any spelling :func:`nirguard.nir.validate`
accepts, reaches their output in clear.
"""

from __future__ import annotations

import re
from typing import Final

from nirguard._nir_rules import is_keyed

__all__ = ["contains_nir"]

# The characters a NIR can be spelt with.
# NBSP (U+00A0) and U+202F are C2 A0 and E2 80 AF in UTF-8: those bytes join a run too.
_RUN_BYTES: Final = bytes(
    1 if chr(byte) in "0123456789ABab .-" or byte in b"\xc2\xa0\xe2\x80\xaf" else 0
    for byte in range(256)
)
_LONG_RUN: Final = b"\x01" * 15
_TEXT_RUN: Final = re.compile(r"[0-9][0-9ABab .\-\u00a0\u202f]{14,}", re.ASCII)
_DIGITS: Final = frozenset("0123456789")


def contains_nir(text: str) -> bool:
    """Whether ``text`` holds a valid NIR, in any spelling :func:`nirguard.nir.validate`
    accepts, as a substring bounded by non-digits.

    A candidate starts with a digit not preceded by a digit, ends with a digit
    not followed by one, and holds 15 characters once its separators are
    removed; it counts when ``nir.is_valid(candidate, strict=False)`` (the key
    checks out; the structure is not looked at). So ``"NIR185057800608491"``
    and ``"1 85 05 78 006 084 91 12"`` hold one, but a run of 16 or more
    digits does not: a NIR is never written inside a longer number, and every
    20-digit reference would otherwise hold six 15-digit windows, one in 97 of
    them well keyed by chance.

    The scan of the CSV commands' output (every field but the converted one):
    a ``bytes.translate`` and a substring search over the whole text first, so
    that text without a run of 15 NIR characters costs no regex and no Python
    loop.

    >>> contains_nir("call 1 85 05 78 006 084 91, ref 1234")
    True
    >>> contains_nir("ref 18505780060849112"), contains_nir("185057800608490")
    (False, False)
    """
    if _LONG_RUN not in text.encode("utf-8", "surrogatepass").translate(_RUN_BYTES):
        return False
    return any(_run_holds_nir(run.group()) for run in _TEXT_RUN.finditer(text))


def _run_holds_nir(run: str) -> bool:
    """Whether a run of NIR characters (digits, A/B, separators) holds a valid NIR
    from the first digit of a digit group to the last digit of a group, 15
    characters long once the separators are removed."""
    starts: list[tuple[int, int]] = []  # (index, NIR characters before it)
    ends: dict[int, int] = {}  # NIR characters up to the end of a group -> index after it
    count = 0
    last = len(run) - 1
    for index, char in enumerate(run):
        if char in _DIGITS:
            if index == 0 or run[index - 1] not in _DIGITS:
                starts.append((index, count))
            count += 1
            if index == last or run[index + 1] not in _DIGITS:
                ends[count] = index + 1
        elif char in "ABab":
            count += 1
    for start, before in starts:
        end = ends.get(before + 15)
        if end is not None and is_keyed(run[start:end]):
            return True
    return False
