"""The embedded engine: one process, one lock, the same steps as the Redis library.

:class:`MemoryEngine` is the twin of ``_admit.lua``: the same records (see
:mod:`nirguard._memory_records`), the same fields, the same steps in the same
order (:mod:`nirguard._engine`), decided under one lock so that a lookup's
counters are checked and consumed atomically. It reads time only through the
guard's clock, so tests and the replay run weeks in seconds.

The records live in a :class:`~nirguard._memory_store.Store` (expiry, sweeping,
and the refusal to serve a forked child).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nirguard import _baseline as baseline
from nirguard._compiled import INDEFINITE, CompiledPolicy
from nirguard._engine import SIGNALS, Decision, Keys, RawStatus, Request, fingerprint
from nirguard._memory_records import (
    FORGOTTEN,
    Recent,
    Record,
    bump,
    heat_step,
    hit,
    level_of,
    overflow,
    remaining,
    used,
)
from nirguard._memory_store import OnFork, State, Store

#: What the account step knows of the patient (see MemoryEngine._patient).
Patient = tuple[Recent, bytes, bool, bool]

__all__ = ["MemoryEngine"]


class MemoryEngine:
    """Decides lookups in this process. Records never hold a NIR: only pseudonyms and
    fingerprints of pseudonyms."""

    kind = "memory"
    outages: tuple[type[BaseException], ...] = ()

    __slots__ = ("_prefix", "_store")

    def __init__(
        self, clock: Callable[[], float], *, prefix: str, on_fork: OnFork = "refuse"
    ) -> None:
        self._store = Store(clock, on_fork)
        self._prefix = prefix

    def __len__(self) -> int:
        return len(self._store)

    def _keys(self, request: Request) -> Keys:
        p = request.policy
        return Keys(self._prefix, request.practitioner, request.cohort, p.heat_suffix)

    # -- the portal quota and the cohort's heat -------------------------------------------------

    def _quota(self, p: CompiledPolicy, keys: Keys, now: float) -> Decision | None:
        record = self._store.record(keys.portal, now)
        over = overflow(record, p.portal, now)
        if over is not None:
            return Decision("denied", "portal", record[over[0].ends] - now)
        changes: dict[str, Any] = {}
        hit(record, p.portal, changes, now)
        self._store.save(keys.portal, record, changes, p.portal_keep, now)
        return None

    def _heat(self, p: CompiledPolicy, keys: Keys, fp: bytes, base: Decision, now: float) -> None:
        """The cohort's heat, counting a patient new to the practitioner (see
        :func:`~nirguard._memory_records.heat_step`)."""
        key = keys.heat
        changed = heat_step(self._store.get(key, now), p, fp, base, now)
        if changed is not None:
            self._store.put(key, changed)

    # -- the account step -----------------------------------------------------------------------

    def _save_account(
        self, key: str, record: Record, changes: dict[str, Any], p: CompiledPolicy, now: float
    ) -> None:
        keep = p.keep
        until = changes.get("lockout", record.get("lockout"))
        if until is not None and until > now:
            keep = max(keep, until - now + 60)
        self._store.save(key, record, changes, keep, now)

    def _lock(
        self,
        key: str,
        record: Record,
        changes: dict[str, Any],
        p: CompiledPolicy,
        quota: str,
        count: int | None,
        limit: int | None,
        base: Decision,
        now: float,
    ) -> Decision:
        level = level_of(record, now)
        seconds = p.lockout_seconds(level)
        changes["lockout"] = now + (INDEFINITE if seconds is None else seconds)
        changes["lockout_level"] = level + 1
        changes["lockout_level:e"] = now + p.lockout_memory
        changes["pending:e"] = 0
        self._save_account(key, record, changes, p, now)
        base.outcome = "suspected" if quota in SIGNALS else "denied"
        base.quota, base.retry_after = quota, seconds
        base.lockout_started, base.level = True, level + 1
        base.count, base.limit = count, limit
        return base

    def _locked(self, record: Record, now: float) -> Decision | None:
        until = record.get("lockout")
        if until is not None and until > now:
            retry: float | None = until - now
            if retry is not None and retry > INDEFINITE / 2:
                retry = None
            return Decision("locked", "locked", retry, level=level_of(record, now))
        return None

    def _patient(
        self, p: CompiledPolicy, keys: Keys, req: Request, base: Decision, now: float
    ) -> Patient:
        """The practitioner's recent patients, the patient's fingerprint, whether a grant
        opens it, whether it is new to the practitioner; for a new patient, the cohort's
        heat first (evidence about the cohort, whatever the account decides)."""
        recent = self._store.recent(keys.recent, now)
        fp = fingerprint(req.patient) if req.patient is not None else b""
        person = recent.person(fp)
        granted = person["g"] > now
        new = req.patient is not None and not granted and person["s"] <= now
        if new and req.cohort is not None and p.hot_cohort is not None:
            self._heat(p, keys, fp, base, now)
        return recent, fp, granted, new

    def _account(
        self,
        p: CompiledPolicy,
        keys: Keys,
        req: Request,
        base: Decision,
        patient: Patient,
        now: float,
    ) -> Decision:
        record = self._store.record(keys.account, now)
        changes: dict[str, Any] = {}
        refused = self._locked(record, now)
        if refused is not None:
            return refused
        for w in p.misses:
            spent = used(record, w, now)
            if spent >= w.amount:
                return self._lock(
                    keys.account, record, changes, p, "misses", spent, w.amount, base, now
                )
        if p.miss_ratio is not None:
            n = record.get("miss_ratio:n", 0) if record.get("miss_ratio:n:e", 0) > now else 0
            m = record.get("miss_ratio:m", 0) if record.get("miss_ratio:m:e", 0) > now else 0
            if n >= p.miss_ratio_min and m / n > p.miss_ratio:
                return self._lock(keys.account, record, changes, p, "miss_ratio", m, n, base, now)
        over = overflow(record, p.lookups, now)
        if over is not None:
            base.outcome, base.quota = "denied", "lookups"
            base.retry_after, base.level = record[over[0].ends] - now, level_of(record, now)
            return base
        recent, fp, granted, new = patient
        slot = 0
        if p.baseline is not None:  # the baseline's day rolls (nirguard._baseline)
            day, slot = baseline.clock(p, now)
            changes.update(baseline.roll(record, p, day))
        cohort_fp = b""
        walked: dict[str, Any] = {}
        breach: str | None = None
        count: int | None = None
        limit: int | None = None
        if new:
            found = overflow(record, p.distinct_patients, now)
            if found is not None:
                breach, count, limit = "distinct_patients", found[1], found[0].amount
            if breach is None and req.cohort is not None and p.cohort:
                cohort_fp = fingerprint(req.cohort)
                walked = recent.walk(cohort_fp, now)
                found = overflow(walked, p.cohort, now)
                if found is not None:
                    breach, count, limit = "cohort", found[1], found[0].amount
            if breach is None and base.hot:
                for pw, nw in zip(p.portal_cohort, p.new_patients, strict=True):
                    hot_new = used(record, pw, now) + 1
                    all_new = used(record, nw, now) + 1
                    if hot_new > pw.amount and hot_new >= p.portal_cohort_share * all_new:
                        breach, count, limit = "portal_cohort", hot_new, pw.amount
                        break
                if breach is None and p.hot_reason:
                    breach = "hot_cohort"
            if breach is None and p.baseline is not None:
                found_bl = baseline.breach({**record, **changes}, p, slot, req.place)
                if found_bl is not None:
                    breach, count, limit = "baseline", found_bl[0], found_bl[1]
                    changes["blx"] = 1  # the day breached: it rolls in at the CUSUM's cap
                    base.usual, base.history, base.off_hours = found_bl[2:]
        if breach is not None:
            if not p.break_glass:
                return self._lock(keys.account, record, changes, p, breach, count, limit, base, now)
            if req.reason:
                if overflow(record, p.break_glass, now) is not None:
                    if breach == "hot_cohort":
                        base.outcome, base.quota = "denied", "break_glass"
                        base.level = level_of(record, now)
                        return base
                    return self._lock(
                        keys.account, record, changes, p, breach, count, limit, base, now
                    )
                left = remaining(record, p.break_glass, now)
                hit(record, p.lookups, changes, now)
                hit(record, p.break_glass, changes, now)
                changes["pending:e"] = 0  # the question was answered
                if p.miss_ratio is not None:
                    bump(record, changes, "miss_ratio:n", p.miss_ratio_window, now)
                self._save_account(keys.account, record, changes, p, now)
                recent.grant(fp, now + p.break_glass_access, now)
                self._store.put(keys.recent, recent)
                base.outcome, base.quota, base.level = "break_glass", breach, level_of(record, now)
                base.break_glass_left = None if left is None else left - 1
                base.count, base.limit = count, limit
                return base
            if breach != "hot_cohort":
                live = record.get("pending:e", 0) > now
                pending = record.get("pending")
                if live and pending is not None and pending != fp:
                    return self._lock(
                        keys.account, record, changes, p, breach, count, limit, base, now
                    )
                changes["pending"] = fp
                changes["pending:e"] = now + p.lockout_steps[0]
                self._save_account(keys.account, record, changes, p, now)
            base.outcome, base.quota, base.level = "reason_required", breach, level_of(record, now)
            base.count, base.limit = count, limit
            return base
        hit(record, p.lookups, changes, now)
        if p.miss_ratio is not None:
            bump(record, changes, "miss_ratio:n", p.miss_ratio_window, now)
        if p.baseline is not None:
            baseline.count({**record, **changes}, changes, new, slot, req.place)
        if new:
            hit(record, p.distinct_patients, changes, now)
            hit(record, p.new_patients, changes, now)
            if base.hot:
                hit(record, p.portal_cohort, changes, now)
            if req.cohort is not None and p.cohort:
                wchanges: dict[str, Any] = {}
                hit(walked, p.cohort, wchanges, now)
                recent.save_walk(cohort_fp, walked, wchanges, now)
            recent.see(fp, now + p.seen, now)
            self._store.put(keys.recent, recent)
        self._save_account(keys.account, record, changes, p, now)
        base.outcome = "allowed"
        base.quota = "break_glass" if granted else None
        base.level = level_of(record, now)
        return base

    # -- the engine protocol --------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """Decide a lookup of a valid NIR (portal quota, account, cohort heat)."""
        with self._store.mutex:
            now = self._store.now(request.now)
            keys = self._keys(request)
            p = request.policy
            if p.portal:
                refused = self._quota(p, keys, now)
                if refused is not None:
                    return refused
            base = Decision("portal")
            patient = self._patient(p, keys, request, base, now)
            return self._account(p, keys, request, base, patient, now)

    async def adecide(self, request: Request) -> Decision:
        """:meth:`decide`: in-process, it never waits on I/O."""
        return self.decide(request)

    def invalid(self, request: Request) -> Decision:
        """Count an invalid NIR against ``invalid_nirs`` (after the lockout check)."""
        with self._store.mutex:
            now = self._store.now(request.now)
            p = request.policy
            key = self._keys(request).account
            record = self._store.record(key, now)
            refused = self._locked(record, now)
            if refused is not None:
                return refused
            changes: dict[str, Any] = {}
            over = overflow(record, p.invalid_nirs, now)
            if over is not None:
                base = Decision("denied")
                return self._lock(
                    key, record, changes, p, "invalid_nirs", over[1], over[0].amount, base, now
                )
            hit(record, p.invalid_nirs, changes, now)
            self._save_account(key, record, changes, p, now)
            return Decision("invalid", "invalid_nirs", level=level_of(record, now))

    async def ainvalid(self, request: Request) -> Decision:
        """:meth:`invalid`."""
        return self.invalid(request)

    def record_miss(self, request: Request) -> None:
        """Count a lookup that found nobody."""
        with self._store.mutex:
            now = self._store.now(request.now)
            p = request.policy
            key = self._keys(request).account
            record = self._store.record(key, now)
            changes: dict[str, Any] = {}
            hit(record, p.misses, changes, now)
            if p.miss_ratio is not None:
                bump(record, changes, "miss_ratio:m", p.miss_ratio_window, now)
            self._save_account(key, record, changes, p, now)

    async def arecord_miss(self, request: Request) -> None:
        """:meth:`record_miss`."""
        self.record_miss(request)

    def status(
        self, practitioner: str, policy: CompiledPolicy, now: float | None = None
    ) -> RawStatus:
        """Remaining budget per quota (smallest over its windows), lockout and level."""
        with self._store.mutex:
            now = self._store.now(now)
            keys = Keys(self._prefix, practitioner, None, policy.heat_suffix)
            record = self._store.record(keys.account, now)
            out = RawStatus()
            for name in (
                "lookups",
                "distinct_patients",
                "invalid_nirs",
                "misses",
                "portal_cohort",
                "break_glass",
            ):
                left = remaining(record, getattr(policy, name), now)
                out.remaining[name] = None if left is None else max(0, left)
            portal = remaining(self._store.record(keys.portal, now), policy.portal, now)
            out.remaining["portal"] = None if portal is None else max(0, portal)
            until = record.get("lockout")
            if until is not None and until > now:
                out.locked_for = until - now
            out.level = level_of(record, now)
            if policy.baseline is not None:
                out.baseline = baseline.summary(record, policy, now)
            return out

    async def astatus(self, practitioner: str, policy: CompiledPolicy) -> RawStatus:
        """:meth:`status`."""
        return self.status(practitioner, policy)

    def unlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """Lift the lockout; forget the escalation and the breaches that would re-trigger it."""
        with self._store.mutex:
            now = self._store.now(None)
            key = Keys(self._prefix, practitioner, None, policy.heat_suffix).account
            record = self._store.get(key, now)
            if record is None:
                return
            for name in list(record):
                if name.split(":", 1)[0] in FORGOTTEN:
                    del record[name]
            if policy.baseline is not None:
                record["blx"] = -1  # the baseline forgives the day (nirguard._baseline)

    async def aunlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """:meth:`unlock`."""
        self.unlock(practitioner, policy)

    def close(self) -> None:
        """Nothing to close."""

    async def aclose(self) -> None:
        """Nothing to close."""

    def reset(self) -> None:
        """Forget every record."""
        self._store.reset()

    def _snapshot(self) -> State:
        """A deep copy of the state (the replay reuses a history this way)."""
        return self._store.snapshot()

    def _restore(self, state: State) -> None:
        self._store.restore(state)
