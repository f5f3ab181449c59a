"""The names the lookup path writes, each in one place: outcomes, quotas and signals, hooks.

The audit trail, the metrics, the FHIR mapping and the alerts all take their
names from here, so a new outcome or quota is added once.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "HOOKS",
    "INPUT_QUOTAS",
    "OUTCOMES",
    "QUOTAS",
    "REFUSED",
    "WOULD",
    "Outcome",
]

Outcome = Literal[
    "allowed",
    "miss",
    "invalid",
    "denied",
    "locked",
    "suspected",
    "reason_required",
    "lockout",
    "break_glass",
    "unavailable",
    "unguarded",
    "would_deny",
    "would_lock",
    "would_suspect",
    "would_require_reason",
    "would_lockout",
    "unlocked",
]
"""What the guard did with one lookup, or what an administrator did.

Enforcing guards refuse with ``invalid``, ``denied`` (a quota),
``locked`` (the account is locked out), ``suspected`` (a detection signal),
``reason_required`` (a new patient that needs a stated reason), ``lockout``
(the refused attempt that started a lockout: the start of an incident) or
``unavailable`` (the store cannot be reached); they let through with
``allowed``, ``miss`` (allowed, and nobody was found), ``break_glass`` (a
new patient granted on a stated reason) or ``unguarded`` (store down and
``fail_open=True``). A guard in shadow mode (``enforce=False``) never
refuses: where it would have, it records ``would_deny``, ``would_lock``,
``would_suspect``, ``would_require_reason`` or ``would_lockout`` and lets the
lookup run. ``unlocked`` records an administrator lifting a lockout
(``LookupGuard.unlock``), with who did it and why.
"""

OUTCOMES: Final = frozenset(get_args(Outcome))
"""Every :data:`Outcome`."""

#: Outcomes of lookups that did not run (the wrapped function was not called).
REFUSED: Final = frozenset(
    {"invalid", "denied", "locked", "suspected", "reason_required", "lockout", "unavailable"}
)
#: Outcomes a guard in shadow mode records instead of refusing.
WOULD: Final = {
    "denied": "would_deny",
    "locked": "would_lock",
    "suspected": "would_suspect",
    "reason_required": "would_require_reason",
    "lockout": "would_lockout",
}

QUOTAS: Final = frozenset(
    {
        # quotas (QuotaPolicy rate fields)
        "lookups",
        "invalid_nirs",
        "distinct_patients",
        "cohort",
        "portal_cohort",
        "misses",
        "portal",
        "break_glass",
        # detections, evidence and states
        "miss_ratio",
        "hot_cohort",
        "strikes",
        "baseline",
        "sequence",
        "session",
        "locked",
        # input the guard refuses before deciding
        "practitioner",
        "reason",
    }
)
"""Names of quotas, signals and states: the audit ``quota``, ``Alert.signal``, the
metric attributes ``nirguard.quota`` and ``nirguard.signal``."""

#: Quota names of input refused before the store is asked.
INPUT_QUOTAS: Final = frozenset({"practitioner", "reason"})

HOOKS: Final = ("audit", "alert", "notice", "break_glass")
"""The guard's hooks, as the ``nirguard.hook`` metric attribute names them."""
