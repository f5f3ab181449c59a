"""Durations as a policy writes them: ``"<n> <unit>"`` (second..week) or seconds.

Shared by :mod:`nirguard.policy` (validation) and :mod:`nirguard._compiled`
(compilation), so that neither imports the other for it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["parse_duration"]

UNITS: Final = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
}
DURATION: Final = re.compile(r"\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*", re.ASCII)


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number of seconds, or ``"<n> <unit>"`` (second..week).

    Raises:
        ValueError: not a positive duration.

    >>> parse_duration("1 hour"), parse_duration("90 seconds"), parse_duration("day")
    (3600.0, 90.0, 86400.0)
    """
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = DURATION.fullmatch(value.lower())
        if match is None or match.group(2) not in UNITS:
            raise ValueError("not a duration (e.g. '1 hour', '30 minutes', '2 days')")
        seconds = float(match.group(1) or 1) * UNITS[match.group(2)]
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("a duration must be positive")
    return seconds
