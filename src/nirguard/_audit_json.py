"""The audit trail's JSON, formatted directly: what :mod:`nirguard.audit` writes per lookup.

``AuditEvent(...).model_dump_json()`` builds and validates a pydantic model for every
event; the audit worker writes one per lookup. :func:`fast_json` formats the common
event (no evidence) straight into the same JSON, character for character, with the
model's checks (NIR-shaped runs masked, no NIR where a pseudonym goes, ``retry_after``
in whole seconds), and answers ``None`` for anything it is not sure of, which then
goes through the model (:func:`nirguard.audit.event_json`). A property test holds the
two to the same output.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Final

from nirguard._names import OUTCOMES
from nirguard._redact import mask_nir_runs
from nirguard.reasons import ReasonCode

__all__ = ["NOT_A_NIR", "fast_json", "whole_seconds"]

#: A ``retry_after`` longer than this is no time to wait for: ``None`` (until unlocked).
TEN_YEARS: Final = 10 * 365 * 86400.0
#: A character no spelling of a NIR holds (digits, 2A/2B, the accepted separators, and
#: the ASCII whitespace nir.validate strips at the ends).
NOT_A_NIR: Final = re.compile("[^0-9ABab .\\-\u00a0\u202f\t\n\r\f\v]")


def whole_seconds(value: object) -> object:
    """``retry_after`` as the audit trail records it: up to whole seconds, at least 1; a
    microsecond of clock arithmetic is not a second (59.9997 and 60.0000001 both say 60).
    Not finite, or over ten years: unbounded (``None``)."""
    if value is None or isinstance(value, (bool, str)):
        return value  # None stays None; the field's own check refuses the rest
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return value
    return max(1, math.ceil(seconds - 1e-6)) if abs(seconds) <= TEN_YEARS else None


#: What a JSON string must escape (quote, backslash, control characters), and lone
#: surrogates.
_NOT_PLAIN: Final = re.compile(r'["\\\x00-\x1f\ud800-\udfff]')
#: Lone surrogates: the model refuses them (a text holding one goes through it).
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")
_escape: Final = json.JSONEncoder(ensure_ascii=False).encode


def _text(value: object, masked: bool = False) -> str | None:
    """A ``str | None`` field as the model writes it in JSON (NIR-shaped runs masked
    first when ``masked``); ``None`` when it is not a plain ``str``."""
    if value is None:
        return "null"
    if type(value) is not str:
        return None
    if masked:
        found = _MASKED.get(value)
        if found is not None:
            return found
        text = mask_nir_runs(value)
    else:
        text = value
    if _NOT_PLAIN.search(text) is None:
        out: str | None = f'"{text}"'
    else:
        out = None if _SURROGATE.search(text) else _escape(text)
    if masked and out is not None:
        if len(_MASKED) >= _MASKED_SIZE:
            _MASKED.clear()
        _MASKED[value] = out
    return out


#: Practitioner ids, policy names, case ids as JSON, masked: each is written again and
#: again (a plain dict: one lookup under the GIL, whichever thread asks).
_MASKED: dict[str, str] = {}
_MASKED_SIZE: Final = 4096


def fast_json(
    time: float,
    practitioner: str,
    outcome: str,
    patient: str | None,
    quota: str | None,
    retry_after: float | None,
    cohort: str | None,
    kind: str | None,
    reason: ReasonCode | None,
    signals: tuple[str, ...],
    case: str | None,
    actor: str | None,
    note: str | None,
) -> str | None:
    """The event's JSON formatted directly, or ``None`` when it needs the model."""
    if type(outcome) is not str or outcome not in OUTCOMES or type(signals) is not tuple:
        return None
    for pseudonym in (patient, cohort):
        if pseudonym is not None and not (type(pseudonym) is str and NOT_A_NIR.search(pseudonym)):
            return None  # could be a NIR: the model's check decides
    if retry_after is not None and type(retry_after) not in (float, int):
        return None
    if reason is not None and type(reason) is not ReasonCode:
        return None
    whole = None if retry_after is None else whole_seconds(retry_after)
    texts = [
        _text(practitioner, masked=True),
        _text(patient),
        _text(quota, masked=True),
        _text(cohort),
        _text(kind, masked=True),
        _text(None if reason is None else reason.value),
        _text(case, masked=True),
        _text(actor, masked=True),
        _text(note, masked=True),
    ]
    marks = [_text(signal) for signal in signals]
    if None in texts or None in marks:
        return None
    who, patient_, quota_, cohort_, kind_, reason_, case_, actor_, note_ = texts
    signals_ = ",".join(marks)  # type: ignore[arg-type]
    stamp = datetime.fromtimestamp(time, tz=timezone.utc).isoformat()
    stamp = stamp[:-6] + "Z" if stamp.endswith("+00:00") else stamp
    return (
        f'{{"time":"{stamp}","practitioner":{who},"patient":{patient_},"outcome":"{outcome}",'
        f'"quota":{quota_},"retry_after":{"null" if whole is None else whole},'
        f'"cohort":{cohort_},"kind":{kind_},"reason":{reason_},"signals":[{signals_}],'
        f'"evidence":null,"case":{case_},"actor":{actor_},"note":{note_}}}'
    )
