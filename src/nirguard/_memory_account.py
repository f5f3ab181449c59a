"""The memory engine's account step: one practitioner's record, decided under the lock.

The twin of ``account_step`` and its helpers in ``_account.lua``: the same checks
in the same order, the same fields written. Every refusal of the account counts
against ``lookups``; a refusal that is not a lockout is a *strike* (``strikes``),
and the strike past the quota is a lockout instead; while locked, a *retry* (an
attempt for a patient refused during this lockout: :data:`STRUCK`) is a strike too,
and the strike past the quota while locked escalates the lockout; moving on to other
patients while locked is refused, and no strike (docs/guard.md, "What a refusal
costs"). The record also keeps the account's open *incident*: when it opened and
until when it stays open (:attr:`~nirguard._engine.Decision.incident`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from nirguard import _sessions as sessions
from nirguard._compiled import INDEFINITE
from nirguard._engine import SIGNALS, Decision, fingerprint
from nirguard._memory_records import (
    Recent,
    Record,
    bump,
    hit,
    level_of,
    overflow,
    remaining,
    used,
)

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy
    from nirguard._engine import Request
    from nirguard._memory_store import Store

__all__ = [
    "ASK_AGAIN",
    "INVALID",
    "SEQUENCE_HISTORY",
    "STRUCK",
    "STRUCK_MAX",
    "Account",
    "Breach",
    "Patient",
]

#: What the account step knows of the patient: the practitioner's recent patients,
#: the patient's fingerprint, whether a grant opens it, whether it is new.
Patient = tuple[Recent, bytes, bool, bool]
#: A new patient past a quota or signal: its name, the count and the limit.
Breach = tuple[str, int | None, int | None]
#: Until when an account that ``sequence`` locked is remembered (nirguard/_sequence.py).
SEQUENCE_HISTORY: Final = "sequence:h"
#: The pending question after a lockout: asked again of the next new patient.
ASK_AGAIN: Final = b""
#: The patients refused during the account's lockout, whose retries while it lasts are
#: strikes: the fingerprint of the one whose refusal started it, then of those refused
#: while locked, up to :data:`STRUCK_MAX` (the first ones kept), 6 bytes each; written
#: anew at each lockout. Named ``strikes:...``: ``unlock()`` forgets it with the strikes.
STRUCK: Final = "strikes:p"
#: Fingerprints :data:`STRUCK` holds at most.
STRUCK_MAX: Final = 4
#: The fingerprint of an invalid number: every invalid number is one patient here.
INVALID: Final = bytes(6)


def _milli(value: float) -> float:
    """``value`` rounded to the millisecond, as the Redis library replies it."""
    return math.floor(value * 1000 + 0.5) / 1000


class Account:
    """One account's record while one call decides it: read once, written once."""

    __slots__ = (
        "base",
        "changes",
        "cohort",
        "fp",
        "key",
        "lookups",
        "now",
        "p",
        "recent_key",
        "record",
        "store",
    )

    def __init__(
        self,
        store: Store,
        key: str,
        p: CompiledPolicy,
        base: Decision,
        now: float,
        *,
        recent_key: str = "",
        lookups: bool = True,
        patient: bytes = INVALID,
        record: Record | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.recent_key = recent_key
        #: ``store.record(key, now)``, or that record when the caller has read it already
        self.record: Record = store.record(key, now) if record is None else record
        self.changes: dict[str, Any] = {}
        self.p = p
        self.base = base
        self.now = now
        #: whether a refusal counts against ``lookups`` (a lookup; not an invalid NIR)
        self.lookups = lookups
        #: the patient's fingerprint (:data:`INVALID` for an invalid number)
        self.fp = patient
        #: the cohort's fingerprint, once :meth:`breach` has read its walk
        self.cohort = b""

    def get(self, name: str, default: Any = None) -> Any:
        """A field as this call leaves it (its change, else the stored value)."""
        changes = self.changes
        return changes[name] if name in changes else self.record.get(name, default)

    def save(self) -> None:
        p, now = self.p, self.now
        keep = p.keep
        until = self.get("lockout")
        if until is not None and until > now:
            keep = max(keep, until - now + 60)
        self.store.save(self.key, self.record, self.changes, keep, now)

    # -- incidents --------------------------------------------------------------------------

    def incident(self, until: float) -> None:
        """Open the account's incident (unless one is open) and keep it open to ``until``."""
        now = self.now
        ends = self.get("incident:e", 0.0)
        if ends <= now:
            self.changes["incident"] = now
            self.base.alert = True
            ends = 0.0
        self.changes["incident:e"] = max(ends, until)

    def done(self, decision: Decision) -> Decision:
        """``decision`` with the account's open incident, if any."""
        if self.get("incident:e", 0.0) > self.now:
            decision.incident = _milli(self.get("incident"))
        return decision

    # -- refusals ---------------------------------------------------------------------------

    def lock(self, quota: str, count: int | None, limit: int | None) -> Decision:
        """Start a lockout (escalated), counted against ``lookups``; it opens an incident."""
        p, now, record, changes, base = self.p, self.now, self.record, self.changes, self.base
        level = level_of(record, now)
        seconds = p.lockout_seconds(level)
        until = now + (INDEFINITE if seconds is None else seconds)
        changes["lockout"] = until
        changes["lockout_level"] = level + 1
        changes["lockout_level:e"] = now + p.lockout_memory
        if p.sequence and quota == "sequence":  # remembered: _sequence.py
            changes[SEQUENCE_HISTORY] = now + p.lockout_memory
        for w in p.strikes:  # the lockout is the price of the strikes before it
            changes[w.field], changes[w.ends] = 0, 0.0
        if p.strikes:  # retrying the patient refused now is a strike while locked
            changes[STRUCK] = self.fp
        if record.get("pending:e", 0) > now and record.get("pending") is not None:
            # a lockout does not answer the question: it is asked again when it ends
            changes["pending"] = ASK_AGAIN
            changes["pending:e"] = until + max(p.lockout_steps[0], 0.0)
        else:
            changes["pending:e"] = 0
        if self.lookups:
            hit(record, p.lookups, changes, now)
        self.incident(max(until, now + p.lockout_memory))
        self.save()
        base.outcome = "suspected" if quota in SIGNALS else "denied"
        base.quota, base.retry_after = quota, seconds
        base.lockout_started, base.level = True, level + 1
        base.count, base.limit = count, limit
        return self.done(base)

    def strike(
        self,
        outcome: str,
        quota: str,
        retry: float | None = None,
        count: int | None = None,
        limit: int | None = None,
    ) -> Decision:
        """A refusal that is not a lockout: it counts against ``lookups`` and ``strikes``;
        the strike past the ``strikes`` quota is a lockout instead."""
        p, now, record, changes, base = self.p, self.now, self.record, self.changes, self.base
        over = overflow(record, p.strikes, now)
        if over is not None:
            return self.lock("strikes", over[1], over[0].amount)
        hit(record, p.lookups, changes, now)
        hit(record, p.strikes, changes, now)
        self.save()
        base.outcome, base.quota, base.retry_after = outcome, quota, retry
        base.level = level_of(record, now)
        base.count, base.limit = count, limit
        return self.done(base)

    def locked(self) -> Decision | None:
        """The refusal of a locked account, or ``None``. It counts against ``lookups``
        (a lookup) and, while the lockout can still escalate, a retry (a patient refused
        during this lockout) is a strike: the strike past ``strikes`` while locked starts
        the next lockout of the escalation. Any other patient joins :data:`STRUCK`."""
        p, now, record, changes = self.p, self.now, self.record, self.changes
        until = record.get("lockout")
        if until is None or until <= now:
            return None
        retry: float | None = until - now
        if retry is not None and retry > INDEFINITE / 2:
            retry = None
        elif p.strikes:
            struck, fp = record.get(STRUCK, b""), self.fp
            if any(struck[i : i + 6] == fp for i in range(0, len(struck), 6)):
                over = overflow(record, p.strikes, now)
                if over is not None:
                    return self.lock("strikes", over[1], over[0].amount)
                hit(record, p.strikes, changes, now)
            elif len(struck) < 6 * STRUCK_MAX:
                changes[STRUCK] = struck + fp
        if self.lookups and p.lookups:
            hit(record, p.lookups, changes, now)
        if changes:
            self.save()
        return self.done(Decision("locked", "locked", retry, level=level_of(record, now)))

    def budgets(self) -> Decision | None:
        """The account's budgets before any lookup: misses, miss ratio, ``lookups``."""
        p, now, record = self.p, self.now, self.record
        get = record.get  # used() inlined: every lookup reads these
        for w in p.misses:
            ends = get(w.ends)
            spent = int(get(w.field, 0)) if ends is not None and ends > now else 0
            if spent >= w.amount:
                return self.lock("misses", spent, w.amount)
        if p.miss_ratio is not None:
            n = get("miss_ratio:n", 0) if get("miss_ratio:n:e", 0) > now else 0
            m = get("miss_ratio:m", 0) if get("miss_ratio:m:e", 0) > now else 0
            if n >= p.miss_ratio_min and m / n > p.miss_ratio:
                return self.lock("miss_ratio", m, n)
        over = overflow(record, p.lookups, now)
        if over is not None:
            return self.strike("denied", "lookups", record[over[0].ends] - now)
        return None

    # -- a new patient ----------------------------------------------------------------------

    def breach(self, req: Request, recent: Recent, walked: dict[str, Any]) -> Breach | None:
        """The first quota or signal a new patient would break (``walked``: its cohort's
        walk, filled here when the cohort quota is on)."""
        p, now, record, base = self.p, self.now, self.record, self.base
        found = overflow(record, p.distinct_patients, now)
        if found is not None:
            return "distinct_patients", found[1], found[0].amount
        if req.cohort is not None and p.cohort:
            self.cohort = fingerprint(req.cohort)
            walked.update(recent.walk(self.cohort, now))
            found = overflow(walked, p.cohort, now)
            if found is not None:
                return "cohort", found[1], found[0].amount
        if base.hot:
            for pw, nw in zip(p.portal_cohort, p.new_patients, strict=True):
                hot_new = used(record, pw, now) + 1
                all_new = used(record, nw, now) + 1
                if hot_new > pw.amount and hot_new >= p.portal_cohort_share * all_new:
                    return "portal_cohort", hot_new, pw.amount
            if p.hot_reason:
                return "hot_cohort", None, None
        return None

    def pending(self) -> Breach | None:
        """The question still pending (a 428 not answered): until it is answered or
        expires, every new patient is a breach of the quota that asked it, even when
        the window that raised it has ended since: the same patient is asked again, a
        different one starts the lockout. Waiting out a window after a 428 buys nothing."""
        record = self.record
        if record.get("pending:e", 0) > self.now and record.get("pending") is not None:
            return record.get("pending:q", "distinct_patients"), None, None
        return None

    def breached(self, req: Request, patient: Patient, breach: Breach) -> Decision:
        """A new patient past a quota or signal: a lockout, a break-glass grant, a strike
        (the question "state a reason", or break-glass refused)."""
        p, now, record, changes = self.p, self.now, self.record, self.changes
        quota, count, limit = breach
        if quota in SIGNALS:
            self.incident(now + p.lockout_memory)
        if quota == "session" and not req.reason:  # the others' next new patient too
            sessions.mark(changes, p, req.session, now)  # (a grant leaves the mark be)
        spent = overflow(record, p.break_glass, now) is not None
        if quota != "hot_cohort" and (not p.break_glass or spent):
            return self.lock(quota, count, limit)
        if spent:  # a hot cohort's question, with no budget left to answer it
            return self.strike("denied", "break_glass")
        if req.reason:
            sessions.see(record, changes, p, req.session, now)
            return self.grant(patient, breach)
        if quota != "hot_cohort":
            fp = patient[1]
            pending = record.get("pending")
            if record.get("pending:e", 0) > now and pending not in (None, fp, ASK_AGAIN):
                return self.lock(quota, count, limit)
            changes["pending"], changes["pending:q"] = fp, quota
            changes["pending:e"] = now + p.lockout_steps[0]
        return self.strike("reason_required", quota, None, count, limit)

    def grant(self, patient: Patient, breach: Breach) -> Decision:
        """Let a new patient past a quota through with a stated reason (break-glass)."""
        p, now, record, changes, base = self.p, self.now, self.record, self.changes, self.base
        recent, fp = patient[0], patient[1]
        left = remaining(record, p.break_glass, now)
        hit(record, p.lookups, changes, now)
        hit(record, p.break_glass, changes, now)
        changes["pending:e"] = 0  # the question was answered
        if p.miss_ratio is not None:
            bump(record, changes, "miss_ratio:n", p.miss_ratio_window, now)
        self.save()
        recent.grant(fp, now + p.break_glass_access, now)
        self.store.put(self.recent_key, recent)
        base.outcome, base.quota, base.level = "break_glass", breach[0], level_of(record, now)
        base.break_glass_left = None if left is None else left - 1
        base.count, base.limit = breach[1], breach[2]
        return self.done(base)

    def allow(self, req: Request, patient: Patient, walked: dict[str, Any]) -> Decision:
        """Let the lookup through and count it."""
        p, now, record, changes, base = self.p, self.now, self.record, self.changes, self.base
        recent, fp, granted, new = patient
        hit(record, p.lookups, changes, now)
        if p.miss_ratio is not None:
            bump(record, changes, "miss_ratio:n", p.miss_ratio_window, now)
        if new:
            hit(record, p.distinct_patients, changes, now)
            hit(record, p.new_patients, changes, now)
            if base.hot:
                hit(record, p.portal_cohort, changes, now)
            if req.cohort is not None and p.cohort:
                wchanges: dict[str, Any] = {}
                hit(walked, p.cohort, wchanges, now)
                cohort = self.cohort or fingerprint(req.cohort)
                recent.save_walk(cohort, walked, wchanges, now)
            recent.see(fp, now + p.seen, now)
            self.store.put(self.recent_key, recent)
        self.save()
        base.outcome = "allowed"
        base.quota = "break_glass" if granted else None
        base.level = level_of(record, now)
        return self.done(base)
