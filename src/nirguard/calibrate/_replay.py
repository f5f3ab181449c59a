"""Replaying a log through the real engine under a candidate policy.

The log's pseudonyms are all the engine needs: :class:`~nirguard._memory.MemoryEngine`
decides a :class:`~nirguard._engine.Request` of practitioner, patient
pseudonym, cohort pseudonym and "a reason was stated", at the logged time.
So the refusals counted here are the ones a guard with that policy would
have made on that traffic, step for step: on a log written in enforcement,
replaying the policy that wrote it gives back exactly the refusals it made.

What a replay cannot know: how practitioners would have reacted to refusals
the log does not show. Every logged attempt is replayed as it was made
(with a reason only where the log has one), so a candidate that asks for a
reason where the logging policy did not, then sees the next new patient
without one, locks the account out, as it would for a script.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from nirguard._engine import Request, escape
from nirguard._memory import MemoryEngine
from nirguard.calibrate._read import INVALID, MISS, Entry

if TYPE_CHECKING:
    from collections.abc import Collection

    from nirguard._compiled import CompiledPolicy

__all__ = ["FieldRefusals", "Replay", "Summary"]

_REFUSALS: Final = frozenset({"denied", "suspected", "locked", "reason_required"})
_PASSED: Final = frozenset({"allowed", "break_glass"})
# Columns of a tally: refused, reason_required, locked, lockouts, break_glass.
_REFUSED, _ASKED, _LOCKED, _LOCKOUTS, _GLASS = range(5)


@dataclass(slots=True)
class FieldRefusals:
    """What one policy field did over a replay.

    Attributes:
        refused: lookups it refused itself (``denied`` or ``suspected``).
        reason_required: lookups it answered with a request for a reason.
        locked: lookups refused later, while the account was locked out by a
            lockout this field started.
        lockouts: lockouts it started.
        break_glass: lookups it let through on a stated reason.
        accounts: accounts with at least one lookup refused because of it.
    """

    refused: int = 0
    reason_required: int = 0
    locked: int = 0
    lockouts: int = 0
    break_glass: int = 0
    accounts: int = 0

    @property
    def lookups(self) -> int:
        """Every lookup refused because of this field."""
        return self.refused + self.reason_required + self.locked


@dataclass(slots=True)
class Summary:
    """Refusals of a replay over a set of accounts."""

    attempts: int = 0
    refused: int = 0
    accounts: int = 0
    accounts_refused: int = 0
    fields: dict[str, FieldRefusals] = field(default_factory=dict)

    @property
    def share(self) -> float:
        """Refused lookups / attempts."""
        return self.refused / self.attempts if self.attempts else 0.0


@dataclass(slots=True)
class _Tally:
    attempts: int = 0
    fields: dict[str, list[int]] = field(default_factory=dict)


class Replay:
    """Decides each entry with the candidate of its kind; tallies refusals per account.

    Args:
        policies: compiled candidate per kind; the ``None`` entry applies to
            untagged events and to kinds without their own.
    """

    __slots__ = ("_engine", "_locker", "_now", "_policies", "accounts", "kinds", "outcomes")

    def __init__(self, policies: dict[str | None, CompiledPolicy]) -> None:
        # The log was written by a guard that had already watched the portal: its replay
        # starts on a fresh store, so the store's warm-up would hide the cohorts that the
        # live guard saw hot in the log's first days.
        self._policies = {k: replace(p, hot_warmup=0.0) for k, p in policies.items()}
        self._now = 0.0
        self._engine = MemoryEngine(self._clock, prefix="calibrate")
        self._locker: dict[str, str] = {}
        #: practitioner -> kind -> tally
        self.accounts: dict[str, dict[str | None, _Tally]] = {}
        #: kind -> (outcome, quota) -> refused lookups, over every account
        self.outcomes: dict[str | None, dict[tuple[str, str | None], int]] = {}
        self.kinds: set[str | None] = set()

    def _clock(self) -> float:
        return self._now

    def add(self, e: Entry) -> bool:
        """Decide one entry at its logged time; whether its cohort was hot (portal-wide)."""
        policy = self._policies.get(e.kind) or self._policies[None]
        who = escape(e.practitioner)
        self._now = e.time
        engine = self._engine
        if e.action == INVALID:
            decision = engine.invalid(Request(who, policy, now=e.time))
        else:
            cohort = e.cohort if policy.needs_cohort else None
            request = Request(who, policy, e.patient, cohort, e.reason, e.time)
            decision = engine.decide(request)
            if e.action == MISS and decision.outcome in _PASSED:
                engine.record_miss(request)
        self.kinds.add(e.kind)
        by_kind = self.accounts.get(e.practitioner)
        if by_kind is None:
            by_kind = self.accounts[e.practitioner] = {}
        tally = by_kind.get(e.kind)
        if tally is None:
            tally = by_kind[e.kind] = _Tally()
        tally.attempts += 1
        outcome = decision.outcome
        if outcome in _PASSED:
            if outcome == "break_glass":
                self._count(tally, decision.quota or "break_glass", _GLASS)
            return decision.hot
        if outcome not in _REFUSALS:
            return False  # an invalid number, counted against invalid_nirs
        # in the audit trail's words: the refusal that starts a lockout is a "lockout"
        key = ("lockout" if decision.lockout_started else outcome, decision.quota)
        seen = self.outcomes.setdefault(e.kind, {})
        seen[key] = seen.get(key, 0) + 1
        if outcome == "locked":
            self._count(tally, self._locker.get(e.practitioner, "locked"), _LOCKED)
        elif outcome == "reason_required":
            self._count(tally, decision.quota or "reason_required", _ASKED)
        else:
            name = decision.quota or outcome
            self._count(tally, name, _REFUSED)
            if decision.lockout_started:
                self._count(tally, name, _LOCKOUTS)
                self._locker[e.practitioner] = name
        return decision.hot

    @staticmethod
    def _count(tally: _Tally, name: str, column: int) -> None:
        row = tally.fields.get(name)
        if row is None:
            row = tally.fields[name] = [0, 0, 0, 0, 0]
        row[column] += 1

    def summary(self, kind: str | None, aside: Collection[str], *, kept: bool = True) -> Summary:
        """Refusals of the accounts of ``kind`` not in ``aside`` (``kept=False``: of those in it)."""
        out = Summary()
        for who, by_kind in self.accounts.items():
            tally = by_kind.get(kind)
            if tally is None or (who in aside) == kept:
                continue
            out.accounts += 1
            out.attempts += tally.attempts
            refused_here = 0
            for name, row in tally.fields.items():
                f = out.fields.get(name)
                if f is None:
                    f = out.fields[name] = FieldRefusals()
                f.refused += row[_REFUSED]
                f.reason_required += row[_ASKED]
                f.locked += row[_LOCKED]
                f.lockouts += row[_LOCKOUTS]
                f.break_glass += row[_GLASS]
                lost = row[_REFUSED] + row[_ASKED] + row[_LOCKED]
                if lost:
                    f.accounts += 1
                refused_here += lost
            out.refused += refused_here
            out.accounts_refused += refused_here > 0
        return out

    def held(self) -> int:
        """Records the engine holds now (what memory follows)."""
        return len(self._engine)
