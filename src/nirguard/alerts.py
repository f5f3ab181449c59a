"""What the guard tells the portal at once: :class:`Alert` and :class:`BreakGlass`.

An alert is sent to the guard's ``alert`` hook when a lockout starts (once
per practitioner per lockout), when a birth cohort becomes hot across the
portal (once per cohort while it stays hot), and when a practitioner's
break-glass budget is nearly spent. It carries counts, never a NIR.
"""

from __future__ import annotations

from dataclasses import dataclass

from nirguard.reasons import Reason

__all__ = ["Alert", "BreakGlass"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert.

    Attributes:
        practitioner: the practitioner id whose lookup raised the alert.
        signal: what raised it: a detection (``cohort``, ``portal_cohort``,
            ``miss_ratio``), a lockout-class quota (``distinct_patients``,
            ``invalid_nirs``, ``misses``), portal-wide evidence about a
            cohort (``hot_cohort``), or ``break_glass`` (budget nearly spent).
        evidence: counts behind it (no NIR, no pseudonym).
        time: POSIX seconds, from the guard's clock.
        retry_after: length of the lockout in seconds, if one started;
            ``None`` = until unlocked, or no lockout.
        cohort: pseudonym of the cohort of a ``hot_cohort`` alert (to find
            its lookups in the audit trail); ``None`` otherwise.
        kind: the practitioner's kind (the ``name`` of the policy that applied).
        enforced: ``False`` when the guard is in shadow mode: nothing was
            refused, the alert says what enforcement would have done.
        lockout: whether a lockout started with this alert.
    """

    practitioner: str
    signal: str
    evidence: dict[str, float]
    time: float
    retry_after: float | None
    cohort: str | None = None
    kind: str | None = None
    enforced: bool = True
    lockout: bool = True


@dataclass(frozen=True, slots=True)
class BreakGlass:
    """Sent to the guard's ``on_break_glass`` hook when a break-glass lookup is granted.

    The portal decides what follows: a review queue, a notice to the patient
    (the DMP tells patients about every *bris de glace*), a message to the
    practitioner's manager. This is the only place the free text of the
    reason goes; the audit trail keeps the code alone.

    Attributes:
        practitioner: the practitioner id.
        patient: pseudonym of the patient's NIR (never the NIR).
        reason: the stated reason, with its free text.
        time: POSIX seconds, from the guard's clock.
        expires: when the grant of this patient to this practitioner ends.
        budget_left: break-glass lookups left in the practitioner's tightest
            window after this one.
        quota: the quota or signal the reason was needed for.
        kind: the practitioner's kind (the ``name`` of the policy that applied).
        enforced: ``False`` in shadow mode.
    """

    practitioner: str
    patient: str
    reason: Reason
    time: float
    expires: float
    budget_left: int | None
    quota: str
    kind: str | None = None
    enforced: bool = True
