"""What the guard tells the security office at once: :class:`Alert`.

An alert is sent to the guard's ``alert`` hook when a lockout starts (once
per practitioner per lockout), when a birth cohort becomes hot across the
portal (once per cohort while it stays hot), and when a practitioner's
break-glass budget is nearly spent. It carries counts, never a NIR.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Alert"]


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
