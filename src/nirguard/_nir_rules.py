"""Package-internal: the grammar of a NIR, behind :mod:`nirguard.nir`.

Spellings (separators, 2A/2B), the strict structure, the control key, the
display grouping, and the batch fast path. The public contract and its
documentation are :mod:`nirguard.nir`'s; the rules themselves are listed in
``NIR-RULES.md`` and on the rules page of the docs.

>>> normalise(" 1 85 05 78 006 084 91 ")
'185057800608491'
>>> key_of("1850578006084"), key_of("282042A123456")
(91, 17)
>>> fast_canonicals(["185057800608491", "1 85 05 78 006 084 91", "185057800608490"])
['185057800608491', None, None]
"""

from __future__ import annotations

import re
from typing import Final

from nirguard._encoding import ASCII_WS
from nirguard.errors import InvalidNIR

__all__ = [
    "BODY",
    "LOOSE_MATCH",
    "MASK_TAIL",
    "PROVISIONAL_SEX",
    "STRICT_MATCH",
    "check_structure",
    "fast_canonicals",
    "groups",
    "key_of",
    "normalise",
]

# Shape only: 15 characters, digits except 2A/2B at positions 6-7 (any case).
_SHAPE: Final = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[ABab])[0-9]{8}", re.ASCII)

# The common case, strict structure in one pass (canonical spelling only):
# sex, month, department + commune (or country) and order; the key is checked after.
# Provisional numbers (sex 3, 4, 7, 8) carry no birth data to check (see the rules page).
_STRICT: Final = re.compile(
    r"(?:"
    r"[12][0-9]{2}"  # sex of a regular number, year
    r"(?:0[1-9]|1[0-2]|[2-9][0-9])"  # month
    r"(?:"
    r"(?:0[1-9]|[1-8][0-9]|9[0-6]|2[AB])(?!000)[0-9]{3}"  # department, commune
    r"|9[78][0-9]{3}"  # overseas: 3-digit department, 2-digit commune
    r"|99(?!000)[0-9]{3}"  # born abroad: country code
    r")"
    r"(?!000)[0-9]{3}"  # order
    r"|[3478][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}"  # provisional: any digits
    r")"
    r"[0-9]{2}",  # key
    re.ASCII,
)
_LOOSE: Final = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}", re.ASCII)
STRICT_MATCH: Final = _STRICT.fullmatch
LOOSE_MATCH: Final = _LOOSE.fullmatch
BODY: Final = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[ABab])[0-9]{6}", re.ASCII)
_ALLOWED_CHARS: Final = re.compile(r"[0-9ABab \.\-\u00a0\u202f]*", re.ASCII)

_VALID_SEX: Final = frozenset("123478")
_PROVISIONAL_SEX_DIGITS: Final = frozenset("3478")
PROVISIONAL_SEX: Final = frozenset((3, 4, 7, 8))

# The fast path of fast_canonicals: _STRICT restricted to all-digit strings.
_STRICT_DIGITS_MATCH: Final = re.compile(
    r"(?=[0-9]{15}\Z)(?:" + _STRICT.pattern + ")", re.ASCII
).fullmatch
# n = 100 * body + key is well keyed iff key = 97 - body % 97, i.e. iff
# n % 9700 = 100 * r + 97 - r for the residue r = body % 97 in 0..96.
_KEY_RESIDUES: Final = frozenset(99 * r + 97 for r in range(97))


def key_of(body: str) -> int:
    """Key of a 13-character canonical body (digits, 2A/2B at 5:7)."""
    if body[6] == "A":
        number = int(body[:5] + "19" + body[7:])
    elif body[6] == "B":
        number = int(body[:5] + "18" + body[7:])
    else:
        number = int(body)
    return 97 - number % 97


def _compact(value: str) -> str:
    """Strip ASCII whitespace at the ends and remove separators."""
    return (
        value.strip(ASCII_WS)
        .replace(" ", "")
        .replace(".", "")
        .replace("-", "")
        .replace("\u00a0", "")
        .replace("\u202f", "")
    )


def normalise(value: object) -> str:
    """Return the 15-character canonical spelling of ``value`` or raise.

    Checks characters and length only; no structure, no key.
    """
    if not isinstance(value, str):
        raise InvalidNIR("type")
    compact = _compact(value)
    if _LOOSE.fullmatch(compact) is not None:
        return compact
    if not compact:
        raise InvalidNIR("empty")
    if _ALLOWED_CHARS.fullmatch(value.strip(ASCII_WS)) is None:
        raise InvalidNIR("characters")
    if len(compact) != 15:
        # A letter in the wrong place is a character error whatever the length.
        _check_letters(compact)
        raise InvalidNIR("length")
    if _SHAPE.fullmatch(compact) is None:
        raise InvalidNIR("characters")
    return compact[:6] + compact[6].upper() + compact[7:]


def _check_letters(compact: str) -> None:
    """Raise ``characters`` for an A or B anywhere but after the 2 of a Corsican department."""
    for index, char in enumerate(compact):
        if char in "ABab" and not (index == 6 and compact[5] == "2"):
            raise InvalidNIR("characters")


def check_structure(canonical: str) -> None:
    """Raise the first structural error of a 15-character canonical string."""
    if canonical[0] not in _VALID_SEX:
        raise InvalidNIR("sex")
    if canonical[0] in _PROVISIONAL_SEX_DIGITS:
        return  # provisional numbers: the key alone is checked
    month = int(canonical[3:5])
    if month == 0 or 13 <= month <= 19:
        raise InvalidNIR("month")
    department = canonical[5:7]
    if department == "00":
        raise InvalidNIR("department")
    if department in ("97", "98"):
        pass  # 3-digit department 970-989 and a 2-digit commune: all accepted (disputed codes too)
    elif canonical[7:10] == "000":
        raise InvalidNIR("commune")
    if canonical[10:13] == "000":
        raise InvalidNIR("order")


def fast_canonicals(values: list[str]) -> list[str | None]:
    """The fast path for batches: each value itself where it is already a
    canonical, all-digit, strictly valid NIR, else ``None``.

    ``None`` means "not decided here" (a separator, a Corsican number, an
    invalid one...): the caller passes those to :func:`nirguard.nir.validate`, so results
    and errors are always ``validate``'s. One regex match (``_STRICT``, digits
    only) and one modulo (``_KEY_RESIDUES``) per value, no function call: the
    hot path of :meth:`Pseudonymiser.pseudonymise_many
    <nirguard.Pseudonymiser.pseudonymise_many>` and of the CSV commands.
    """
    fast_match = _STRICT_DIGITS_MATCH
    key_residues = _KEY_RESIDUES
    return [
        value
        if type(value) is str
        and fast_match(value) is not None
        and int(value) % 9700 in key_residues
        else None
        for value in values
    ]


#: What :func:`nirguard.nir.mask` shows after the sex digit and the year.
MASK_TAIL: Final = "** ** *** *** **"


def groups(canonical: str) -> tuple[str, ...]:
    """The display groups of a canonical NIR (overseas: 3-digit department, 2-digit commune)."""
    overseas = canonical[5:7] in ("97", "98")
    cuts = (1, 3, 5, 8, 10, 13) if overseas else (1, 3, 5, 7, 10, 13)
    parts = []
    start = 0
    for cut in cuts:
        parts.append(canonical[start:cut])
        start = cut
    parts.append(canonical[13:])
    return tuple(parts)
