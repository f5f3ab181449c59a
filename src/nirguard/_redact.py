"""Masking NIR-shaped runs in the text the library writes (audit, FHIR, alerts, logs).

A practitioner id, a policy name or an administrator's note is the portal's
text, not the guard's: one of them may hold a NIR (an id built from one, a
note pasted from a file). Every string field the library writes goes through
:func:`mask_nir_runs` first.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MASK", "mask_nir_runs"]

MASK: Final = "*"
"""What each digit (or ``A``/``B`` of Corsica) of a masked run becomes."""

# A run of digits (any script: fullwidth digits are NIR-shaped to a reader) and of the
# letters A/B of the Corsican departments, with at most one separator of the spellings a
# NIR accepts between two of them, 13 characters or more (a NIR body without its key).
_RUN: Final = re.compile(r"[\dABab](?:[ .\-\u00a0\u202f\u2009_/]?[\dABab]){12,}")
_KEEP: Final = re.compile(r"[^\dABab]")
#: Fewer digits than this in a run: letters, not a number (``"ABBA-ABBA-..."``).
_MIN_DIGITS: Final = 11


def _mask(match: re.Match[str]) -> str:
    run = match.group(0)
    if sum(ch.isdigit() for ch in run) < _MIN_DIGITS:
        return run
    return "".join(ch if _KEEP.match(ch) else MASK for ch in run)


def mask_nir_runs(text: str) -> str:
    """``text`` with every NIR-shaped run (13 or more digits, separators allowed) masked.

    Identifiers of practitioners in France have at most 11 digits (RPPS; ADELI
    has 9), so they are kept; a NIR, a NIR without its key, or a longer run of
    digits is not.

    >>> mask_nir_runs("dr-1 85 05 78 006 084 91@example.fr")
    'dr-* ** ** ** *** *** **@example.fr'
    >>> mask_nir_runs("rpps-10003456789")
    'rpps-10003456789'
    """
    if _RUN.search(text) is None:
        return text
    return _RUN.sub(_mask, text)
