"""What a pass counts: the legitimate accounts' cost, the stolen accounts' take.

Counts and times only: nothing here holds a NIR.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "EPOCH",
    "INVALID",
    "PORTAL_SIGNALS",
    "AttackTally",
    "LegitTally",
    "Refusal",
    "refusal_of",
]

#: POSIX time of the replay's day 0, a Monday (2026-02-09 00:00 UTC).
EPOCH: Final = 1_770_595_200.0
#: Signals that are evidence about the portal (a cohort), not about one account.
PORTAL_SIGNALS: Final = frozenset({"hot_cohort", "portal_cohort", "sequence"})

#: ``(outcome, quota or signal, retry_after)``: outcome is ``denied``, ``suspected``,
#: ``locked`` or ``reason_required`` (the audit trail's words).
Refusal = tuple[str, str, "float | None"]
INVALID: Final[Refusal] = ("invalid", "", None)


def refusal_of(exc: Exception) -> Refusal:
    """The refusal a :class:`~nirguard.errors.LookupDenied` stands for."""
    from nirguard.errors import (
        EnumerationSuspected,
        PractitionerLocked,
        QuotaExceeded,
        ReasonRequired,
    )

    retry = getattr(exc, "retry_after", None)
    if isinstance(exc, ReasonRequired):
        return ("reason_required", exc.quota, retry)
    if isinstance(exc, EnumerationSuspected):
        return ("suspected", exc.signal, retry)
    if isinstance(exc, PractitionerLocked):
        return ("locked", "locked", retry)
    if isinstance(exc, QuotaExceeded):
        return ("denied", exc.quota, retry)
    code = str(getattr(exc, "code", "denied"))
    return (code, code, retry)


@dataclass
class LegitTally:
    """What the guard did to legitimate accounts in one pass (counts per kind).

    Attributes:
        lookups: lookups (valid numbers) per kind of account.
        refused: refused lookups per kind.
        asked: lookups answered "a reason is required" per kind.
        break_glass: lookups let through on a stated reason, per kind.
        by_code: refusals by quota or signal.
        typos: mistyped numbers typed.
        typos_refused: of those, refused for another reason than being invalid.
        locked: account index -> the signal of its first lockout.
        alerts: alerts naming a legitimate account, by signal.
        cases: alert cases (one per account per incident) per kind of account.
        notices: portal-level notices (about a cohort, naming nobody), by signal.
    """

    lookups: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    asked: Counter[str] = field(default_factory=Counter)
    break_glass: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    typos: int = 0
    typos_refused: int = 0
    locked: dict[int, str] = field(default_factory=dict)
    alerts: Counter[str] = field(default_factory=Counter)
    cases: Counter[str] = field(default_factory=Counter)
    notices: Counter[str] = field(default_factory=Counter)

    def merge(self, other: LegitTally) -> LegitTally:
        """The two tallies together (``other``'s lockouts after ``self``'s)."""
        return LegitTally(
            self.lookups + other.lookups,
            self.refused + other.refused,
            self.asked + other.asked,
            self.break_glass + other.break_glass,
            self.by_code + other.by_code,
            self.typos + other.typos,
            self.typos_refused + other.typos_refused,
            {**other.locked, **self.locked},
            self.alerts + other.alerts,
            self.cases + other.cases,
            self.notices + other.notices,
        )


@dataclass
class AttackTally:
    """What one strategy's accounts did and got in one pass.

    Per-account lists are indexed like the attack's accounts; times are
    seconds from the replay's day 0.

    Attributes:
        exposed: person id -> time first returned to a stolen account.
        got: distinct people returned to each account.
        attempts: lookups tried by the stolen accounts (reasoned retries included).
        account_attempts: per account.
        break_glass: lookups let through on a stated reason (break-glass grants).
        stopped: accounts locked until unlocked.
        first_signal: ``(attempts by all accounts, time, signal)`` at the first
            refusal of a stolen account, alert naming one, or portal alert in a
            cohort the attack had touched.
        account_signal: per account, its own attempts at its first refusal or alert.
        started: per account, the time of its first attempt.
        first_refusal: per account, the time of its first refusal.
        first_alert: per account, the time of the first alert naming it.
        asked: per account, answers "a reason is required".
        owner_lookups: the owners' own lookups (stolen legitimate accounts).
        owner_refused: of those, refused.
        touched: cohort prefixes the attack has looked up.
    """

    exposed: dict[int, float] = field(default_factory=dict)
    got: list[int] = field(default_factory=list)
    attempts: int = 0
    account_attempts: list[int] = field(default_factory=list)
    break_glass: int = 0
    stopped: int = 0
    first_signal: tuple[int, float, str] | None = None
    account_signal: list[int | None] = field(default_factory=list)
    started: list[float | None] = field(default_factory=list)
    first_refusal: list[float | None] = field(default_factory=list)
    first_alert: list[float | None] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)
    owner_lookups: int = 0
    owner_refused: int = 0
    touched: set[str] = field(default_factory=set)

    @classmethod
    def empty(cls, accounts: int) -> AttackTally:
        """A tally for ``accounts`` stolen accounts, nothing done yet."""
        return cls(
            got=[0] * accounts,
            account_attempts=[0] * accounts,
            account_signal=[None] * accounts,
            started=[None] * accounts,
            first_refusal=[None] * accounts,
            first_alert=[None] * accounts,
            asked=[0] * accounts,
        )

    def signal(self, account: int, signal: str, now: float) -> None:
        """A refusal of, or an alert naming, ``account`` (``-1``: a portal alert)."""
        if self.first_signal is None:
            self.first_signal = (self.attempts, now, signal)
        if account >= 0 and self.account_signal[account] is None:
            self.account_signal[account] = self.account_attempts[account]

    def alerted(self, account: int, now: float) -> None:
        """An alert named ``account``."""
        if self.first_alert[account] is None:
            self.first_alert[account] = now
