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
from typing import Any, Final

from nirguard import _baseline as baseline
from nirguard import _sequence as sequence
from nirguard import _sessions as sessions
from nirguard._compiled import ACCOUNT_QUOTAS, CompiledPolicy
from nirguard._engine import Decision, Keys, RawStatus, Request, fingerprint
from nirguard._memory_account import Account, Patient
from nirguard._memory_records import (
    Heat,
    Record,
    bump,
    heat_step,
    hit,
    level_of,
    overflow,
    remaining,
)
from nirguard._memory_store import OnFork, State, Store

__all__ = ["FORGOTTEN", "MemoryEngine"]

#: What :meth:`MemoryEngine.unlock` forgets of an account (fields by the name before
#: ``:``): the lockout, its escalation, the open incident, and the counts that would
#: start it again at once; ``lookups`` and ``break_glass`` stay (rates, not evidence).
FORGOTTEN: Final = frozenset(
    {
        "distinct_patients",
        "invalid_nirs",
        "misses",
        "portal_cohort",
        "new_patients",
        "strikes",
        "lockout",
        "lockout_level",
        "pending",
        "miss_ratio",
        "incident",
        "blc",
        "sequence",
        "sequence_new",
        "sequence_ctl",
        "session",
    }
)


class MemoryEngine:
    """Decides lookups in this process. Records never hold a NIR: only pseudonyms and
    fingerprints of pseudonyms."""

    kind = "memory"
    outages: tuple[type[BaseException], ...] = ()

    __slots__ = ("_portal", "_prefix", "_since", "_store")

    def __init__(
        self, clock: Callable[[], float], *, prefix: str, on_fork: OnFork = "refuse"
    ) -> None:
        self._store = Store(clock, on_fork)
        self._prefix = prefix
        keys = Keys(prefix, "", None, "")
        self._portal, self._since = keys.portal, keys.since  # the same for every lookup

    def __len__(self) -> int:
        return len(self._store)

    def _keys(self, request: Request) -> Keys:
        p = request.policy
        return Keys(self._prefix, request.practitioner, request.cohort, p.heat_suffix)

    # -- the portal quota and the cohort's heat -------------------------------------------------

    def _quota(self, p: CompiledPolicy, now: float) -> Decision | None:
        record = self._store.record(self._portal, now)
        over = overflow(record, p.portal, now)
        if over is not None:
            return Decision("denied", "portal", record[over[0].ends] - now)
        changes: dict[str, Any] = {}
        hit(record, p.portal, changes, now)
        self._store.save(self._portal, record, changes, p.portal_keep, now)
        return None

    def _heat(
        self, p: CompiledPolicy, key: str, fp: bytes, base: Decision, now: float
    ) -> Heat | None:
        """The cohort's heat, counting a patient new to the practitioner (see
        :func:`~nirguard._memory_records.heat_step`); the record as it stands after."""
        warm = True
        if p.hot_warmup:
            since = self._store.get(self._since, now)
            if since is None:  # the store's first look at the portal
                since = Record()
                since["t"], since.expires = now, float("inf")
                self._store.put(self._since, since)
            warm = now - since["t"] >= p.hot_warmup
        heat: Heat | None = self._store.get(key, now)
        changed = heat_step(heat, p, fp, base, now, warm)
        if changed is None:
            return heat  # live, unchanged
        self._store.put(key, changed)
        return changed

    # -- the account step (nirguard._memory_account) -------------------------------------------

    def _patient(
        self, p: CompiledPolicy, keys: Keys, req: Request, base: Decision, now: float
    ) -> tuple[Patient, Record]:
        """The practitioner's recent patients, the patient's fingerprint, whether a grant
        opens it, whether it is new to the practitioner; for a new patient of an account
        that is not locked, the cohort's heat first (evidence about the cohort, whatever
        the account decides). And the account's record, read once for the lookup."""
        store = self._store
        recent = store.recent(keys.recent, now)
        account = store.record(keys.account, now)
        patient = req.patient
        fp = fingerprint(patient) if patient is not None else b""
        granted = recent.grants.get(fp, 0.0) > now
        new = patient is not None and not granted and recent.seen.get(fp, 0.0) <= now
        if new and req.cohort is not None and p.hot_cohort is not None:
            # a locked account's attempts are no evidence about the cohort: a bot that
            # keeps asking while locked would heat cohorts and trip ordinary accounts
            until = account.get("lockout")
            if until is None or until <= now:
                heat = self._heat(p, keys.heat, fp, base, now)
                if p.sequence:
                    sequence.near(heat, req.neighbours, base, now)
        return (recent, fp, granted, new), account

    def _account(
        self,
        p: CompiledPolicy,
        keys: Keys,
        req: Request,
        base: Decision,
        patient: Patient,
        record: Record,
        now: float,
    ) -> Decision:
        """Lockout, budgets, then a new patient's quotas and signals, then the lookup."""
        account = Account(
            self._store,
            keys.account,
            p,
            base,
            now,
            recent_key=keys.recent,
            patient=patient[1],
            record=record,
        )
        refused = account.locked() or account.budgets()
        if refused is not None:
            return refused
        slot = baseline.open_day(account.record, account.changes, p, now)
        walked: dict[str, Any] = {}
        adjacent = 0
        if patient[3]:
            breach = account.breach(req, patient[0], walked)
            if req.session:
                record, changes = account.record, account.changes
                breach = breach or sessions.check(record, changes, p, req.session, True, now)
            if p.sequence:
                adjacent = sequence.own(base, patient[0], p, req.neighbours, now)
                breach = breach or sequence.check(account.record, p, adjacent, now)
            if breach is None and p.baseline is not None:
                # a reason that the account step grants vouches for the day (docs/guard.md)
                record, changes = account.record, account.changes
                vouched = req.reason and bool(p.break_glass)
                vouched = vouched and overflow(record, p.break_glass, now) is None
                breach = baseline.check(record, changes, p, slot, req.place, base, vouched)
            breach = breach or account.pending()
            if breach is not None:
                return account.breached(req, patient, breach)
        elif req.session:  # a repeat: never refused by it, but a return marks the account
            sessions.check(account.record, account.changes, p, req.session, False, now)
        if p.baseline is not None:
            state = {**account.record, **account.changes}
            baseline.count(state, account.changes, p, patient[3], slot, req.place)
        if p.sequence and patient[3]:
            sequence.count(account.record, account.changes, p, adjacent, now)
        if req.session:
            sessions.see(account.record, account.changes, p, req.session, now)
        return account.allow(req, patient, walked)

    # -- the engine protocol --------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """Decide a lookup of a valid NIR (portal quota, account, cohort heat)."""
        with self._store.mutex:
            now = self._store.now(request.now)
            keys = self._keys(request)
            p = request.policy
            if p.portal:
                refused = self._quota(p, now)
                if refused is not None:
                    return refused
            base = Decision("portal")
            patient, record = self._patient(p, keys, request, base, now)
            return self._account(p, keys, request, base, patient, record, now)

    async def adecide(self, request: Request) -> Decision:
        """:meth:`decide`: in-process, it never waits on I/O."""
        return self.decide(request)

    def invalid(self, request: Request) -> Decision:
        """Count an invalid NIR against ``invalid_nirs`` (after the lockout check)."""
        with self._store.mutex:
            now = self._store.now(request.now)
            p = request.policy
            key = self._keys(request).account
            account = Account(self._store, key, p, Decision("denied"), now, lookups=False)
            refused = account.locked()
            if refused is not None:
                return refused
            over = overflow(account.record, p.invalid_nirs, now)
            if over is not None:
                return account.lock("invalid_nirs", over[1], over[0].amount)
            hit(account.record, p.invalid_nirs, account.changes, now)
            account.save()
            level = level_of(account.record, now)
            return account.done(Decision("invalid", "invalid_nirs", level=level))

    async def ainvalid(self, request: Request) -> Decision:
        """:meth:`invalid`."""
        return self.invalid(request)

    def record_miss(self, request: Request) -> None:
        """Count a lookup that found nobody."""
        with self._store.mutex:
            now = self._store.now(request.now)
            p = request.policy
            account = Account(self._store, self._keys(request).account, p, Decision("miss"), now)
            record, changes = account.record, account.changes
            hit(record, p.misses, changes, now)
            if p.miss_ratio is not None:
                bump(record, changes, "miss_ratio:m", p.miss_ratio_window, now)
            account.save()

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
            for name in ACCOUNT_QUOTAS:
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

    def snapshot(self) -> State:
        """A deep copy of the state (the replay reuses a history this way)."""
        return self._store.snapshot()

    def restore(self, state: State) -> None:
        """Put back a state :meth:`snapshot` took."""
        self._store.restore(state)
