"""What the sinks hand the writer, turned into table rows (no I/O here).

Every string that reaches a table has its NIR-shaped runs masked (:func:`mask_nirs`):
a practitioner id, a note or a break-glass free text that holds a NIR is stored with
``[NIR]`` in its place. Pseudonyms (``<key id>:<hex>``) and the guard's case ids
(``case-<16 hex>``) are stored as they come.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Batch", "DAY", "mask_nirs", "stored_case_id"]

DAY = 86400.0

#: Outcomes of lookups that ran: the patient was shown to the practitioner (or nobody was found).
_RAN = frozenset({"allowed", "miss", "break_glass", "unguarded"})
_SEP = "[ .\\-\u00a0\u202f\u2009\u2007_/]*"
#: 13 or more digits (2A/2B allowed) with separators between them: a NIR, its body, or a NIR
#: split oddly. Masked wherever text is stored or shown.
_NIR_RUN = re.compile(rf"[0-9](?:{_SEP}(?:[0-9]|2[ABab])){{12,}}")
_DIGITS = re.compile("[0-9].*[0-9]", re.DOTALL)


def mask_nirs(text: str | None) -> str | None:
    """``text`` with every NIR-shaped run (13 or more digits, separators allowed) replaced.

    Fullwidth and other compatibility digits are folded first (NFKC), so that
    ``１８５…`` is caught too; control characters other than line breaks and tabs go.

    >>> mask_nirs("vue aux urgences, NIR 1 85 05 78 006 084 91, par Dr X")
    'vue aux urgences, NIR [NIR], par Dr X'
    >>> mask_nirs("k1:0ee6a7485241dc1a966684bc396c5f4c") is not None
    True
    """
    if text is None:
        return None
    text = str(text)
    if text.isascii() and text.isprintable():  # the common case: nothing to fold or strip
        return _NIR_RUN.sub("[NIR]", text) if _DIGITS.search(text) else text
    folded = unicodedata.normalize("NFKC", text)
    folded = "".join(c for c in folded if unicodedata.category(c)[0] != "C" or c in "\n\t")
    return _NIR_RUN.sub("[NIR]", folded)


def _seconds(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)  # type: ignore[arg-type]


def _evidence(value: Mapping[str, float] | None) -> str | None:
    if not value:
        return None
    clean = {str(k)[:64]: float(v) for k, v in value.items()}
    return json.dumps(clean, sort_keys=True)


def _text(value: object, limit: int) -> str | None:
    if value is None:
        return None
    if type(value) is not str:
        value = str(getattr(value, "value", value))
    masked = mask_nirs(value)
    return None if masked is None else masked[:limit]


#: The guard's case ids (:func:`nirguard.alerts.case_id`; hex digits from earlier guards): a
#: digest, stored as it comes.
_CASE_ID = re.compile("case-[0-9a-p]{16}")


def stored_case_id(value: object) -> str | None:
    """A case id: the guard's own kept whole (1 in ~200 hex ids holds 13 digits in a row, which
    masking would turn into ``case-[NIR]``, merging unrelated cases); anything else masked."""
    if type(value) is str and _CASE_ID.fullmatch(value):
        return value
    return _text(value, 96)


def legacy_case_id(practitioner: str, time: float) -> str:
    """A case id for an alert without one (before alerts carried ``case``): one per account
    per day, so that a day's alerts of one account make one case."""
    digest = hashlib.sha256(practitioner.encode("utf-8", "replace")).hexdigest()[:16]
    return f"{digest}-{int(time // DAY)}"


@dataclass
class Batch:
    """Rows for one write: built from a run of sink items, written in one transaction."""

    events: list[dict[str, Any]] = field(default_factory=list)
    firsts: dict[tuple[str, str], float] = field(default_factory=dict)
    daily: Counter[tuple[int, str]] = field(default_factory=Counter)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    notices: list[dict[str, Any]] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)
    items: int = 0

    def add_event(self, event: Any, seq: int, record: str | None, writer: str) -> None:
        extra = vars(event)  # a pydantic model's fields (fields it lacks are None, fast)
        time = _seconds(event.time)
        practitioner = _text(event.practitioner, 256) or ""
        outcome = str(event.outcome)
        row = {
            "time": time,
            "practitioner": practitioner,
            "patient": event.patient,
            "outcome": outcome,
            "quota": _text(event.quota, 64),
            "retry_after": event.retry_after,
            "cohort": event.cohort,
            "kind": _text(event.kind, 64),
            "reason": _text(event.reason, 16),
            "signals": ",".join(event.signals)[:256] or None,
            "evidence": _evidence(event.evidence),
            "case_id": stored_case_id(extra.get("case")),
            "actor": _text(extra.get("actor"), 256),
            "note": _text(extra.get("note"), 2000),
            "writer": writer,
            "seq": seq,
            "record": record,
        }
        self.events.append(row)
        day = int(time // DAY)
        self.daily[(day, "lookups")] += 1
        self.daily[(day, f"outcome:{outcome}")] += 1
        ran = outcome in _RAN or outcome.startswith("would_")
        if ran and event.patient:
            key = (practitioner, event.patient)
            self.firsts[key] = min(time, self.firsts.get(key, time))
        self.items += 1

    def add_alert(self, alert: Any) -> None:
        time = _seconds(alert.time)
        practitioner = _text(alert.practitioner, 256) or ""
        case_id = stored_case_id(getattr(alert, "case", None)) or legacy_case_id(practitioner, time)
        lockout = bool(getattr(alert, "lockout", False))
        enforced = bool(getattr(alert, "enforced", True))
        signal = _text(alert.signal, 64) or "unknown"
        self.alerts.append(
            {
                "case_id": case_id,
                "practitioner": practitioner,
                "signal": signal,
                "evidence": _evidence(alert.evidence),
                "time": time,
                "retry_after": alert.retry_after,
                "kind": _text(getattr(alert, "kind", None), 64),
                "enforced": enforced,
                "lockout": lockout,
            }
        )
        case = self.cases.get(case_id)
        if case is None:
            self.cases[case_id] = {
                "case_id": case_id,
                "practitioner": practitioner,
                "opened": time,
                "last_alert": time,
                "alerts": 1,
                "signals": signal,
                "lockout": lockout,
                "enforced": enforced,
                "state": "open",
            }
        else:
            case["opened"] = min(case["opened"], time)
            case["last_alert"] = max(case["last_alert"], time)
            case["alerts"] += 1
            case["signals"] = merge_signals(case["signals"], signal)
            case["lockout"] = case["lockout"] or lockout
        self.daily[(int(time // DAY), "alerts")] += 1
        self.items += 1

    def add_notice(self, notice: Any) -> None:
        time = _seconds(notice.time)
        self.notices.append(
            {
                "time": time,
                "signal": _text(notice.signal, 64) or "unknown",
                "cohort": getattr(notice, "cohort", None),
                "evidence": _evidence(getattr(notice, "evidence", None)),
                "kind": _text(getattr(notice, "kind", None), 64),
            }
        )
        self.daily[(int(time // DAY), "notices")] += 1
        self.items += 1

    def add_grant(self, grant: Any) -> None:
        reason = grant.reason
        self.grants.append(
            {
                "time": _seconds(grant.time),
                "practitioner": _text(grant.practitioner, 256) or "",
                "patient": grant.patient,
                "code": _text(reason.code, 16) or "",
                "text": _text(reason.text, 2000),
                "expires": grant.expires,
                "budget_left": grant.budget_left,
                "quota": _text(grant.quota, 64),
                "kind": _text(getattr(grant, "kind", None), 64),
                "enforced": bool(getattr(grant, "enforced", True)),
            }
        )
        self.items += 1


def merge_signals(known: str, signal: str) -> str:
    """The comma-separated set ``known`` with ``signal`` added (sorted, at most 256 chars)."""
    names = set(filter(None, known.split(","))) | {signal}
    return ",".join(sorted(names))[:256]
