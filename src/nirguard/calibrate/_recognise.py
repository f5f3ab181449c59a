"""Telling nirguard's audit events from every other line of a log.

A portal's log pipeline mixes the lines of many writers, some of them JSON
objects that look like events (a time, a practitioner, a patient...). Read as
events, four such accounts moved a proposal from ``42/day;204/7 days`` to
``630/day;3000/7 days``. So a line is read only when it is recognisably an
:class:`~nirguard.audit.AuditEvent` as the audit sinks write it: a JSON object
(after an optional prefix such as a logging format's) holding every field the
event has had since the audit trail carried kinds and cohorts, each of its
type, and no field the event does not have (but ``seal``, the MAC of a sealed
trail). Anything else is skipped with a reason, counted, and never turns into
a traceback: a line nested too deep for :mod:`json`, a time past the clock or
before 2000, a ``kind`` that is not a policy name.

>>> import json
>>> event = {"time": "2026-01-01T10:00:00Z", "practitioner": "gp-1", "patient": "k:1",
...          "outcome": "allowed", "quota": None, "retry_after": None, "cohort": None,
...          "kind": "gp", "reason": None, "signals": [], "evidence": None}
>>> recognise("INFO nirguard.audit " + json.dumps(event), 2e9)[0]["time"]
1767261600.0
>>> recognise(json.dumps({**event, "kind": "../../etc"}), 2e9)
(None, 'bad kind')
>>> recognise('{"time": 1e308, "practitioner": "x", "outcome": "allowed"}', 2e9)
(None, 'not a nirguard audit event')
>>> recognise('{"a":' * 12_000, 2e9)  # json.loads: RecursionError
(None, 'not JSON')
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from nirguard._names import OUTCOMES
from nirguard.audit import AuditEvent
from nirguard.reasons import ReasonCode

__all__ = ["MAX_LINE", "recognise", "timestamp"]

#: Longer lines are skipped unread (an event is well under a kilobyte).
MAX_LINE: Final = 1 << 16
#: Events before this (2000-01-01 UTC) are not a guard's.
EARLIEST: Final = 946_684_800.0
#: Every event has carried these since kinds and cohorts were audited.
REQUIRED: Final = (
    "time",
    "practitioner",
    "patient",
    "outcome",
    "quota",
    "retry_after",
    "cohort",
    "kind",
    "reason",
    "signals",
    "evidence",
)
_ALLOWED: Final = frozenset(AuditEvent.model_fields) | {"seal"}
_KIND: Final = re.compile(r"[A-Za-z0-9_.\-]{1,40}", re.ASCII)  # QuotaPolicy's name
_REASONS: Final = frozenset(code.value for code in ReasonCode)
_TEXT: Final = 1000  # longest text field read


def _text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _TEXT


def _optional_text(value: object) -> bool:
    return value is None or _text(value)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "practitioner": _text,
    "patient": _optional_text,
    "outcome": lambda v: isinstance(v, str) and v in OUTCOMES,
    "quota": _optional_text,
    "retry_after": lambda v: v is None or (_number(v) and v >= 0),
    "cohort": _optional_text,
    "kind": lambda v: v is None or (isinstance(v, str) and _KIND.fullmatch(v) is not None),
    "reason": lambda v: v is None or (isinstance(v, str) and v in _REASONS),
    "signals": lambda v: isinstance(v, list) and all(_text(s) for s in v),
    "evidence": lambda v: (
        v is None or (isinstance(v, dict) and all(_text(k) and _number(n) for k, n in v.items()))
    ),
    "case": _optional_text,
    "actor": _optional_text,
    "note": lambda v: v is None or isinstance(v, str),
    "seal": lambda v: isinstance(v, dict),
}


def timestamp(value: object) -> float | None:
    """POSIX seconds of an event's ISO 8601 time with its zone, or ``None``."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def _load(line: str) -> tuple[dict[str, Any] | None, str]:
    if len(line) > MAX_LINE:
        return None, "too long"
    start = line.find("{")
    if start < 0:
        return None, "not JSON"
    try:
        data = json.loads(line[start:] if start else line)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return None, "not JSON"
    if not isinstance(data, dict):
        return None, "not JSON"
    return data, ""


def recognise(line: str, latest: float) -> tuple[dict[str, Any] | None, str]:
    """The event on ``line`` and ``""``; or ``None`` and why it is skipped.

    ``latest``: the latest time an event may have (POSIX seconds: now, and a
    day for clocks that disagree).
    """
    data, why = _load(line)
    if data is None:
        return None, why
    if "chain" in data and "seal" in data:
        return None, "audit chain record"  # a sealed trail's open, checkpoint, close
    if any(name not in data for name in REQUIRED):
        return None, "not a nirguard audit event"
    if any(name not in _ALLOWED for name in data):
        return None, "a field no audit event has"
    moment = timestamp(data["time"])
    if moment is None or not EARLIEST <= moment <= latest:
        return None, "bad time"
    for name, value in data.items():
        check = _CHECKS.get(name)
        if check is not None and not check(value):
            return None, f"bad {name}"
    data["time"] = moment
    return data, ""
