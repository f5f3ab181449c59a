"""NIR: the French social security number (numéro d'inscription au répertoire).

The contract is python-stdnum's (``validate`` returns the canonical form or
raises, ``is_valid`` never raises, ``format`` displays), plus structured
parsing into an :class:`NIR` value object that never prints the number.

Layout (15 characters)::

    1 85 05 78 006 084 91
    | |  |  |  |   |   +-- control key: 97 - (body mod 97), 2A read as 19, 2B as 18
    | |  |  |  |   +------ order number 001-999
    | |  |  |  +---------- commune (INSEE code) or, when born abroad, country code
    | |  |  +------------- department (2A/2B Corsica; 97x/98x overseas, then a 2-digit commune; 99 abroad)
    | |  +---------------- month of birth (20, 30-42, 50-99: unknown or special)
    | +------------------- year of birth (two digits)
    +--------------------- sex: 1 man, 2 woman; 3, 4, 7, 8 provisional numbers

Accepted spellings: ASCII spaces, dots, dashes and no-break spaces (U+00A0,
U+202F) as separators; ASCII whitespace at the ends; lowercase ``2a``/``2b``.
Everything else is refused, in particular digits of other scripts, other
Unicode spaces and control characters. Error messages never contain the input.

``strict=True`` (the default) checks the structure too; every rule the public
sources dispute takes the lenient side (see the rules page of the docs).
Provisional numbers (first digit 3, 4, 7, 8) do not follow the layout (the
caisse-issued NNP holds a caisse number and an order number there): only their
characters and key are checked.
``strict=False`` checks characters, length, the 2A/2B position and the key.

>>> from nirguard import nir
>>> nir.validate("1 85 05 78 006 084 91")
'185057800608491'
>>> nir.validate("2 82 04 2a 123 456 17")
'282042A12345617'
>>> nir.is_valid("1 85 05 78 006 084 90")
False
>>> nir.format("185057800608491")
'1 85 05 78 006 084 91'
>>> nir.mask("185057800608491")
'1 85 ** ** *** *** **'
>>> n = nir.parse("185057800608491")
>>> n
NIR('1 85 ** ** *** *** **')
>>> (n.sex, n.birth_year, n.birth_month, n.department, n.commune, n.order, n.key)
(1, 85, 5, '78', '006', 84, 91)

Sources: service-public.fr F33078, INSEE, python-stdnum ``stdnum.fr.nir``,
assurance-maladie-digital/nir-validation; summarised in ``NIR-RULES.md``.
"""

from __future__ import annotations

import re
from typing import Final

from nirguard._encoding import ASCII_WS
from nirguard.errors import InvalidNIR

__all__ = [
    "NIR",
    "InvalidNIR",
    "compute_key",
    "format",
    "is_valid",
    "mask",
    "parse",
    "validate",
]

# ASCII whitespace accepted (and stripped) at the ends only.

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
_STRICT_MATCH: Final = _STRICT.fullmatch
_LOOSE_MATCH: Final = _LOOSE.fullmatch
_BODY: Final = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[ABab])[0-9]{6}", re.ASCII)
_ALLOWED_CHARS: Final = re.compile(r"[0-9ABab \.\-\u00a0\u202f]*", re.ASCII)

_VALID_SEX: Final = frozenset("123478")
_PROVISIONAL_SEX_DIGITS: Final = frozenset("3478")
_PROVISIONAL_SEX: Final = frozenset((3, 4, 7, 8))

# The fast path of _fast_canonicals: _STRICT restricted to all-digit strings.
_STRICT_DIGITS_MATCH: Final = re.compile(
    r"(?=[0-9]{15}\Z)(?:" + _STRICT.pattern + ")", re.ASCII
).fullmatch
# n = 100 * body + key is well keyed iff key = 97 - body % 97, i.e. iff
# n % 9700 = 100 * r + 97 - r for the residue r = body % 97 in 0..96.
_KEY_RESIDUES: Final = frozenset(99 * r + 97 for r in range(97))


def _key_of(body: str) -> int:
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


def _normalise(value: object) -> str:
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
    for index, char in enumerate(compact):
        if char in "ABab" and not (index == 6 and compact[5] == "2"):
            raise InvalidNIR("characters")


def _check_structure(canonical: str) -> None:
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


def validate(value: str, *, strict: bool = True) -> str:
    """Check a NIR and return its canonical 15-character form.

    The canonical form has ASCII digits, uppercase ``2A``/``2B`` and no
    separators. The same number in any accepted spelling gives the same
    canonical form.

    Args:
        value: the number as typed, pasted or read from a file.
        strict: also check sex, month, department, commune and order.

    Returns:
        The canonical form.

    Raises:
        InvalidNIR: with ``code`` naming the first rule broken. The message
            never contains the input.

    >>> validate("185057800608491")
    '185057800608491'
    >>> validate("1-85-05-78-006-084-91")
    '185057800608491'
    >>> validate("1850578006084")
    Traceback (most recent call last):
    ...
    nirguard.errors.InvalidNIR: invalid NIR: must have 15 characters (13 plus a 2-digit key)
    """
    match = _STRICT_MATCH if strict else _LOOSE_MATCH
    if type(value) is str and match(value) is not None:
        canonical = value
    else:
        canonical = _normalise(value)
        if strict and match(canonical) is None:
            _check_structure(canonical)
            raise InvalidNIR("characters")  # pragma: no cover - fail closed if they ever disagree
    if canonical[6] > "9":
        if _key_of(canonical[:13]) != int(canonical[13:]):
            raise InvalidNIR("key")
    else:
        body, key = divmod(int(canonical), 100)
        if 97 - body % 97 != key:
            raise InvalidNIR("key")
    return canonical


def _fast_canonicals(values: list[str]) -> list[str | None]:
    """Internal fast path for batches: each value itself where it is already a
    canonical, all-digit, strictly valid NIR, else ``None``.

    ``None`` means "not decided here" (a separator, a Corsican number, an
    invalid one...): the caller passes those to :func:`validate`, so results
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


# Finding NIRs inside free text (_contains_nir): the characters a NIR can be spelt with.
# NBSP (U+00A0) and U+202F are C2 A0 and E2 80 AF in UTF-8: those bytes join a run too.
_RUN_BYTES: Final = bytes(
    1 if chr(byte) in "0123456789ABab .-" or byte in b"\xc2\xa0\xe2\x80\xaf" else 0
    for byte in range(256)
)
_LONG_RUN: Final = b"\x01" * 15
_TEXT_RUN: Final = re.compile(r"[0-9][0-9ABab .\-\u00a0\u202f]{14,}", re.ASCII)
_DIGITS: Final = frozenset("0123456789")


def _contains_nir(text: str) -> bool:
    """Internal: whether ``text`` holds a valid NIR, in any spelling :func:`validate`
    accepts, as a substring bounded by non-digits.

    A candidate starts with a digit not preceded by a digit, ends with a digit
    not followed by one, and holds 15 characters once its separators are
    removed; it counts when ``is_valid(candidate, strict=False)`` (the key
    checks out; the structure is not looked at). So ``"NIR185057800608491"``
    and ``"1 85 05 78 006 084 91 12"`` hold one, but a run of 16 or more
    digits does not: a NIR is never written inside a longer number, and every
    20-digit reference would otherwise hold six 15-digit windows, one in 97 of
    them well keyed by chance.

    The scan of the CSV commands' output (every field but the converted one):
    a ``bytes.translate`` and a substring search over the whole text first, so
    that text without a run of 15 NIR characters costs no regex and no Python
    loop.

    >>> _contains_nir("call 1 85 05 78 006 084 91, ref 1234")
    True
    >>> _contains_nir("ref 18505780060849112"), _contains_nir("185057800608490")
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
        if end is not None and is_valid(run[start:end], strict=False):
            return True
    return False


def is_valid(value: object, *, strict: bool = True) -> bool:
    """Tell whether ``value`` is a valid NIR; never raises, whatever it is given.

    >>> is_valid("1 85 05 78 006 084 91"), is_valid(None), is_valid(b"185057800608491")
    (True, False, False)
    """
    try:
        validate(value, strict=strict)  # type: ignore[arg-type]
    except InvalidNIR:
        return False
    except Exception:  # odd str subclasses must not make is_valid raise
        return False
    return True


def compute_key(body: str) -> int:
    """Compute the control key (1-97) of a 13-character NIR body.

    ``2A`` and ``2B`` at positions 6-7 count as 19 and 18, as the rules say.

    Raises:
        InvalidNIR: ``type`` for a non-string, ``length`` or ``characters``
            for a malformed body.

    >>> compute_key("1850578006084")
    91
    >>> compute_key("282042A123456")
    17
    """
    if not isinstance(body, str):
        raise InvalidNIR("type")
    if _BODY.fullmatch(body) is None:
        if len(body) != 13:
            raise InvalidNIR("length")
        raise InvalidNIR("characters")
    return _key_of(body.upper())


def _groups(canonical: str) -> tuple[str, ...]:
    overseas = canonical[5:7] in ("97", "98")
    cuts = (1, 3, 5, 8, 10, 13) if overseas else (1, 3, 5, 7, 10, 13)
    parts = []
    start = 0
    for cut in cuts:
        parts.append(canonical[start:cut])
        start = cut
    parts.append(canonical[13:])
    return tuple(parts)


def format(value: str) -> str:
    """Return the display form of a NIR, e.g. ``1 85 05 78 006 084 91``.

    Overseas numbers group a 3-digit department and 2-digit commune:
    ``2 82 04 974 11 123 80``. The input is checked (``strict=False``).

    Raises:
        InvalidNIR: the input is not a NIR.

    >>> format("282049741112380")
    '2 82 04 974 11 123 80'
    """
    return " ".join(_groups(validate(value, strict=False)))


_MASK_TAIL: Final = "** ** *** *** **"


def mask(value: str) -> str:
    """Return a display form that hides every identifying part.

    Only the sex digit and the two-digit year of birth are shown, always in
    the metropolitan grouping (so that the layout does not reveal a birth
    overseas): ``1 85 ** ** *** *** **``. Sex and year alone single out no
    one; month, place, order number and key would narrow a person down.

    Raises:
        InvalidNIR: the input is not a NIR (``strict=False``).

    >>> mask("2 82 04 974 11 123 80")
    '2 82 ** ** *** *** **'
    """
    canonical = validate(value, strict=False)
    return f"{canonical[0]} {canonical[1:3]} {_MASK_TAIL}"


class NIR:
    """A parsed, valid NIR. Immutable; equal and hashed by canonical form.

    ``repr`` and ``str`` show the masked form only; read :attr:`canonical`
    explicitly to get the number.

    The fields are read by position. For a provisional number
    (:attr:`is_provisional`) they are not birth data: an NNP, for one, holds
    a caisse number where the year and month are.

    Attributes:
        canonical: the 15-character canonical form.
        sex: first digit (1, 2; 3, 4, 7, 8 for provisional numbers).
        birth_year: two-digit year of birth.
        birth_month: 1-12, or ``None`` when the code means unknown or special
            (20-30, 43-99; 31-42 give the month + 30, so 1-12).
        department: ``"78"``, ``"2A"``, ``"971"``, ``"99"`` (born abroad).
        commune: INSEE commune code (3 digits, or 2 overseas), ``None`` when
            born abroad.
        country: INSEE country code when born abroad, else ``None``.
        order: order number.
        key: control key.
    """

    __slots__ = ("canonical",)

    canonical: str

    def __init__(self, value: str, *, strict: bool = True) -> None:
        """Parse ``value``; same as :func:`parse`.

        Raises:
            InvalidNIR: the value is not a valid NIR.
        """
        object.__setattr__(self, "canonical", validate(value, strict=strict))

    @property
    def sex(self) -> int:
        """First digit: 1 man, 2 woman; 3, 4, 7, 8 provisional numbers."""
        return int(self.canonical[0])

    @property
    def birth_year(self) -> int:
        """Two-digit year of birth."""
        return int(self.canonical[1:3])

    @property
    def birth_month(self) -> int | None:
        """Month of birth 1-12, or ``None`` when the code means unknown or special."""
        month = int(self.canonical[3:5])
        if 1 <= month <= 12:
            return month
        if 31 <= month <= 42:
            return month - 30
        return None

    @property
    def department(self) -> str:
        """Department of birth: ``"78"``, ``"2A"``, ``"971"``, or ``"99"`` when born abroad."""
        place = self.canonical[5:7]
        return self.canonical[5:8] if place in ("97", "98") else place

    @property
    def commune(self) -> str | None:
        """INSEE commune code (3 digits, 2 overseas); ``None`` when born abroad."""
        place = self.canonical[5:7]
        if place in ("97", "98"):
            return self.canonical[8:10]
        return None if place == "99" else self.canonical[7:10]

    @property
    def country(self) -> str | None:
        """INSEE country code when born abroad, else ``None``."""
        return self.canonical[7:10] if self.canonical[5:7] == "99" else None

    @property
    def order(self) -> int:
        """Order number (1-999)."""
        return int(self.canonical[10:13])

    @property
    def key(self) -> int:
        """Control key (1-97)."""
        return int(self.canonical[13:])

    @property
    def is_provisional(self) -> bool:
        """True for provisional and registration numbers (first digit 3, 4, 7 or 8)."""
        return self.sex in _PROVISIONAL_SEX

    @property
    def is_born_abroad(self) -> bool:
        """True when the place of birth is abroad (department 99)."""
        return self.department == "99"

    @property
    def masked(self) -> str:
        """The masked display form (see :func:`mask`)."""
        return f"{self.canonical[0]} {self.canonical[1:3]} {_MASK_TAIL}"

    def format(self) -> str:
        """The full display form. It shows the number: use it only where that is intended."""
        return " ".join(_groups(self.canonical))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("NIR is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("NIR is immutable")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NIR):
            return self.canonical == other.canonical
        return NotImplemented

    def __hash__(self) -> int:
        return hash((NIR, self.canonical))

    def __repr__(self) -> str:
        return f"NIR({self.masked!r})"

    def __str__(self) -> str:
        return self.masked

    def __reduce__(self) -> tuple[type[NIR], tuple[str]]:
        return (NIR, (self.canonical,))


def parse(value: str, *, strict: bool = True) -> NIR:
    """Validate ``value`` and return its structured :class:`NIR`.

    Raises:
        InvalidNIR: the value is not a valid NIR.

    >>> n = parse("1 85 05 99 109 084 23")
    >>> n.department, n.commune, n.country
    ('99', None, '109')
    """
    return NIR(value, strict=strict)
