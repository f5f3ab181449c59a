"""Finding NIRs in what the CSV commands write outside the converted column.

The promise of ``nirguard pseudonymise | tokenise | detokenise``: no NIR, in
any spelling :func:`nirguard.nir.validate` accepts, comes out outside the
column, whatever the delimiter. A :class:`Scanner` looks for one in a line
(its fields joined by the delimiter, the converted column cut out) and
finds:

* a valid NIR bounded by non-digits, in any accepted spelling (the key
  checks out; its structure is not looked at);
* a strictly valid NIR (structure and key) anywhere in a longer run of
  digits (``"18505780060849112"``);
* a NIR split over adjacent fields (``"18505780" | "0608491"``), or
  spelt with the delimiter as its separator (``--delimiter ' '``, ``.``,
  ``-``): strictly valid, starting and ending on a field or digit-group
  boundary;
* a 13-character body without its key, bounded by non-digits within a
  field, when it has the structure of a regular number (first digit 1 or
  2). Provisional numbers (3, 4, 7, 8) are not looked for without their
  key: every EAN-13 and CIP13 code of a French product starts with 3.

Digits of other scripts (fullwidth ``"１"``) and compatibility forms count
as digits; every Unicode space, dash, control and format character (a NUL,
a thin space, a line break inside a quoted field) counts as a separator.

The text is first mapped, one character to one, onto a small alphabet
(``bytes.translate`` for ASCII, a cached table otherwise), and runs are
found by one regex; Python looks only at runs of 13 NIR characters or more.

>>> scanner = Scanner(",")
>>> scanner.holds("x,call 1 85 05 78 006 084 91")
True
>>> scanner.holds("18505780,0608491"), scanner.holds("ref ١٨٥٠٥٧٨٠٠٦٠٨٤٩١")
(True, True)
>>> scanner.holds("185057800608490"), scanner.holds("2024-05-12,123.45")
(False, False)
>>> Scanner(" ").holds("x 1 85 05 78 006 084 91 y")
True
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Final

from nirguard import nir

__all__ = ["BREAK", "Scanner", "unsafe_delimiter"]

#: Put between texts that must not run into each other (a record's parts around the
#: converted column, records of a block): no NIR spelling holds a quote, and a quote
#: is never the delimiter. Text with CSV quoting still in it goes through
#: :meth:`Scanner.unquoted` first.
BREAK: Final = '"'

_DIGITS: Final = "0123456789"
_SEP: Final = ord(" ")  # a separator inside a field
_JOIN: Final = ord("|")  # a field boundary: fields on both sides may form one NIR
_OTHER: Final = ord("#")  # anything else: ends a run
_DIGIT_BYTES: Final = frozenset(b"0123456789")

# A candidate run: 13 mapped bytes or more from a NIR character to one (the analysis
# then wants 15 NIR characters across separators and field boundaries, or 13 within a
# field: a body without its key is not looked for across fields).
_RUN: Final = re.compile(rb"[0-9AB][0-9AB |]{11,}[0-9AB]")
# The prefilter, in C: separators deleted, NIR characters to 1, all else to 0.
_ONES: Final = bytes(1 if byte in b"0123456789AB" else 0 for byte in range(256))
_WITHIN: Final = b"\x01" * 13
_ACROSS: Final = b"\x01" * 15


def _classify(char: str) -> int:
    """The byte ``char`` maps to: a digit, ``A``/``B``, a separator or other."""
    if char in _DIGITS:
        return ord(char)
    if char in "ABab":
        return ord(char.upper())
    if char in " .-\x7f" or char < " ":
        return _SEP
    if char.isascii():
        return _OTHER
    decimal = unicodedata.decimal(char, None)
    if decimal is not None:
        return ord(str(decimal))
    folded = unicodedata.normalize("NFKC", char)
    if len(folded) == 1 and folded.isascii() and folded != char:
        return _classify(folded)
    if char == "\u2212" or folded.isspace() or unicodedata.category(char) in _SEP_CATEGORIES:
        return _SEP
    return _OTHER


_SEP_CATEGORIES: Final = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Pd"})


class _Table(dict[int, int]):
    """``str.translate`` table for non-ASCII text, filled as characters are met."""

    def __missing__(self, code: int) -> int:
        value = self[code] = _classify(chr(code))
        return value


def unsafe_delimiter(delimiter: str) -> str | None:
    """Why ``delimiter`` cannot be used (``None``: it can).

    A delimiter that a NIR is made of (a digit of any script, ``A``/``B`` of
    Corsica) would cut a NIR into fields that no longer spell it, while the
    line written still does.

    >>> unsafe_delimiter("7"), unsafe_delimiter(";")
    ('a digit cannot be the delimiter: it would cut NIRs where no scan can see them', None)
    """
    kind = _classify(delimiter)
    if chr(kind) in _DIGITS:
        return "a digit cannot be the delimiter: it would cut NIRs where no scan can see them"
    if chr(kind) in "AB":
        return "A and B (Corsican NIRs) cannot be the delimiter: they are part of NIRs"
    return None


class Scanner:
    """Finds NIRs in lines of one delimiter; see the module docstring."""

    __slots__ = ("_ascii", "_table")

    def __init__(self, delimiter: str | None = None) -> None:
        ascii_table = bytearray(_classify(chr(code)) for code in range(128))
        ascii_table += bytes([_OTHER]) * 128
        table = _Table()
        for code in range(128):
            table[code] = ascii_table[code]
        if delimiter is not None and _classify(delimiter) == _OTHER:
            table[ord(delimiter)] = _JOIN
            if delimiter.isascii():
                ascii_table[ord(delimiter)] = _JOIN
        self._ascii = bytes(ascii_table)
        self._table = table

    def _map(self, text: str) -> bytes:
        if text.isascii():
            return text.encode("ascii").translate(self._ascii)
        return text.translate(self._table).encode("latin-1")

    @staticmethod
    def unquoted(lines: list[str]) -> str:
        """Raw CSV lines as one text to scan: quotes removed (the fields they
        close and open are adjacent), lines joined by :data:`BREAK`.

        >>> Scanner.unquoted(['"18505780","0608491"', 'x'])
        '18505780,0608491"x'
        """
        return "\n".join(lines).replace('"', "").replace("\n", BREAK)

    def holds(self, text: str) -> bool:
        """Whether ``text`` holds a NIR (see the module docstring)."""
        return self.find(text) is not None

    def fields_holding(self, fields: list[str], delimiter: str, skip: int = -1) -> list[int]:
        """The indexes of the fields that make up the first NIR found in ``fields``
        written with ``delimiter`` (the field ``skip`` cut out), or ``[]``.

        >>> Scanner(",").fields_holding(["185057800608491", "a", "18505780", "0608491"], ",", 0)
        [2, 3]
        """
        pieces = [BREAK if index == skip else field for index, field in enumerate(fields)]
        span = self.find(delimiter.join(pieces))
        if span is None:
            return []
        found = []
        offset = 0
        for index, piece in enumerate(pieces):
            end = offset + len(piece)
            if index != skip and piece and offset < span[1] and end > span[0]:
                found.append(index)
            offset = end + len(delimiter)
        return found

    def find(self, text: str) -> tuple[int, int] | None:
        """The span (start, end) of the first NIR found in ``text``, or ``None``."""
        return next(self.find_all(text), None)

    def find_all(self, text: str) -> Iterator[tuple[int, int]]:
        """The span of the first NIR of each run of NIR characters that holds one."""
        mapped = self._map(text)
        compact = mapped.translate(None, b" ")
        if _WITHIN not in compact.translate(_ONES) and _ACROSS not in compact.translate(
            _ONES, b"|"
        ):
            return
        for match in _RUN.finditer(mapped):
            span = _run_span(match.group())
            if span is not None:
                yield match.start() + span[0], match.start() + span[1]


_GROUP: Final = re.compile(rb"[0-9]+|[AB]+")
# Without its key, a body is only taken for one when written whole or cut where a NIR's
# groups end (1 85 05 78 006 084; overseas 2 82 04 974 11 123): dates and amounts side
# by side ("2024-03-13 650.93") have a regular body's structure too often.
_BODY_CUTS: Final = frozenset({1, 3, 5, 7, 10})
_BODY_CUTS_OVERSEAS: Final = frozenset({1, 3, 5, 8, 10})
_FIELD: Final = re.compile(rb"[^|]+")


def _run_span(run: bytes) -> tuple[int, int] | None:
    """The span of a NIR within one run of mapped bytes, or ``None``.

    The run is cut into groups (digits, or the letters A/B); a window on group
    boundaries is a sum of whole groups, found with prefix sums (one dict look-up
    per group), so a run costs little unless it holds a candidate.
    """
    groups = list(_GROUP.finditer(run))
    sums = [0]
    for group in groups:
        sums.append(sums[-1] + group.end() - group.start())
    index_of = {total: index for index, total in enumerate(sums)}
    for first, group in enumerate(groups):
        if run[group.start()] not in _DIGIT_BYTES:
            continue
        body = None  # the whole NIR first, when there is one
        for size in (15, 13):
            after = index_of.get(sums[first] + size)  # one past the last group
            if after is None or run[groups[after - 1].end() - 1] not in _DIGIT_BYTES:
                continue
            span = group.start(), groups[after - 1].end()
            text = run[span[0] : span[1]]
            candidate = text.translate(None, b" |").decode("ascii")
            within = _JOIN not in text
            if size == 15 and _is_nir(candidate, strict=not within):
                return span
            if size == 13 and within and _is_body(candidate):
                cuts = _cuts(groups, first, after)
                if cuts <= _BODY_CUTS or cuts <= _BODY_CUTS_OVERSEAS:
                    body = span
        if body is not None:
            return body
    if len(run) >= 15:
        for field in _FIELD.finditer(run):  # a NIR inside a longer run of one field
            if len(field.group()) >= 15:
                found = _inside(field.group())
                if found is not None:
                    return field.start() + found[0], field.start() + found[1]
    return None


def _cuts(groups: list[re.Match[bytes]], first: int, after: int) -> set[int]:
    """Where separators cut the characters of ``groups[first:after]``."""
    cuts = set()
    size = 0
    for index in range(first, after):
        if index > first and groups[index - 1].end() != groups[index].start():
            cuts.add(size)
        size += groups[index].end() - groups[index].start()
    return cuts


def _is_nir(window: str, *, strict: bool) -> bool:
    if window.isdigit():  # the key first, cheaply: most windows fail it
        body, key = divmod(int(window), 100)
        if 97 - body % 97 != key:
            return False
    return nir.is_valid(window, strict=strict)


def _is_body(body: str) -> bool:
    """Whether ``body`` is the 13-character body of a regular NIR (first digit 1 or 2)."""
    if body[0] not in "12":
        return False
    try:
        key = nir.compute_key(body)
    except nir.InvalidNIR:
        return False
    return nir.is_valid(f"{body}{key:02d}")


def _inside(field: bytes) -> tuple[int, int] | None:
    """A strictly valid NIR starting at any digit of one field, across its separators."""
    positions = [index for index, byte in enumerate(field) if byte != _SEP]
    if len(positions) < 15:
        return None
    compact = bytes(field[index] for index in positions).decode("ascii")
    for k in range(len(compact) - 14):
        if compact[k] in _DIGITS and _is_nir(compact[k : k + 15], strict=True):
            return positions[k], positions[k + 14] + 1
    return None
