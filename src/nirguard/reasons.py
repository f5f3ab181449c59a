"""Reasons a practitioner states to break the glass, as HL7 v3 ActReason codes.

A lookup refused for a *new patient* (a new-patient quota, a cohort signal,
or a "reason required" answer) may be retried with a :class:`Reason`: a code
from a fixed vocabulary, each an HL7 v3 ``ActReason`` (purpose of use) code,
plus optional free text. The code goes to the audit trail (FHIR
``purposeOfUse``); the free text goes only to the portal's
``on_break_glass`` hook, never to an audit event, a log or a ``repr``,
because it may name a person.

>>> Reason.of("ETREAT")
Reason(code='ETREAT')
>>> Reason.of(Reason(ReasonCode.TREAT, "seen today at the surgery")).code.display
'treatment'
>>> Reason.of("because")
Traceback (most recent call last):
...
nirguard.errors.InvalidReason: lookup denied: unknown reason code
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from typing import Final

from nirguard.errors import InvalidReason

__all__ = ["ACT_REASON_SYSTEM", "MAX_REASON_TEXT", "Reason", "ReasonCode"]

ACT_REASON_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
"""The FHIR ``system`` of every :class:`ReasonCode`."""

MAX_REASON_TEXT: Final = 500
"""Longest free text kept with a reason (characters); longer text is cut."""


class ReasonCode(str, enum.Enum):
    """Why a practitioner needs this patient now (HL7 v3 ``ActReason`` codes)."""

    ETREAT = "ETREAT"
    """Emergency treatment (*urgence*): the classic break-the-glass reason."""
    TREAT = "TREAT"
    """Treatment: the patient is in the practitioner's care now."""
    COC = "COC"
    """Coordination of care: a referral, a shared care plan."""
    PATRQT = "PATRQT"
    """Patient requested: the patient asked for it (e.g. at the desk)."""
    HPAYMT = "HPAYMT"
    """Healthcare payment: checking coverage rights before billing."""

    @property
    def display(self) -> str:
        """The code's display name, as HL7 spells it (lower case)."""
        return _DISPLAY[self]

    def __str__(self) -> str:
        return self.value


_DISPLAY: Final = {
    ReasonCode.ETREAT: "emergency treatment",
    ReasonCode.TREAT: "treatment",
    ReasonCode.COC: "coordination of care",
    ReasonCode.PATRQT: "patient requested",
    ReasonCode.HPAYMT: "healthcare payment",
}


@dataclass(frozen=True, slots=True)
class Reason:
    """A stated reason: a :class:`ReasonCode` and optional free text.

    The free text is never shown by ``repr`` and never audited.
    """

    code: ReasonCode
    text: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.code, ReasonCode):
            raise InvalidReason()
        if self.text is not None:
            if not isinstance(self.text, str):
                raise InvalidReason()
            cleaned = "".join(
                ch for ch in self.text if unicodedata.category(ch)[0] != "C" or ch in "\n\t"
            ).strip()[:MAX_REASON_TEXT]
            object.__setattr__(self, "text", cleaned or None)

    @classmethod
    def of(cls, value: object) -> Reason:
        """A :class:`Reason` from a reason, a code, or a code's string.

        Raises:
            InvalidReason: not a known code (the value is never echoed).
        """
        if isinstance(value, Reason):
            return value
        if isinstance(value, ReasonCode):
            return cls(value)
        if isinstance(value, str):
            try:
                return cls(ReasonCode(value.strip().upper()))
            except ValueError:
                raise InvalidReason() from None
        raise InvalidReason()

    def __repr__(self) -> str:
        return f"Reason(code={self.code.value!r})"
