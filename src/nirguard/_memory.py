"""The embedded engine: one process, one lock, the same steps as the Redis script.

:class:`MemoryEngine` is the twin of ``_admit.lua``: the same records
(account, patient, cohort walk, portal quota, portal-seen, cohort heat), the
same fields, the same steps in the same order, decided under one lock so
that a lookup's counters are checked and consumed atomically. It reads time
only through the guard's clock, so tests and the replay run weeks in seconds.

Records expire for garbage collection only (decisions read the windows'
stored ends). Expired records are swept from a heap in proportion to what
has expired, so memory follows the live set even after quiet weeks.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Callable
from typing import Any, Final

from nirguard._compiled import INDEFINITE, CompiledPolicy, Window
from nirguard._engine import SIGNALS, Decision, Keys, RawStatus, Request

__all__ = ["MemoryEngine"]

#: Most expired records swept per decision: a sweep never stalls one lookup,
#: and it outpaces the records a decision creates (at most four).
SWEEP_PER_CALL: Final = 64
#: When the oldest due record is this far behind the clock (a quiet night, a
#: quiet month), a decision sweeps up to :data:`SWEEP_CATCH_UP` records, so
#: memory follows the live set within a few calls (about 10 ms each at most).
SWEEP_BEHIND: Final = 3600.0
SWEEP_CATCH_UP: Final = 10_000

Record = dict[str, Any]


def _used(record: Record, w: Window, now: float) -> int:
    ends = record.get(w.ends)
    if ends is not None and ends > now:
        return int(record.get(w.field, 0))
    return 0


def _overflow(record: Record, windows: tuple[Window, ...], now: float) -> tuple[Window, int] | None:
    for w in windows:
        count = _used(record, w, now) + 1
        if count > w.amount:
            return w, count
    return None


def _hit(record: Record, windows: tuple[Window, ...], changes: Record, now: float) -> None:
    for w in windows:
        ends = record.get(w.ends)
        if ends is not None and ends > now:
            changes[w.field] = record.get(w.field, 0) + 1
        else:
            changes[w.field] = 1
            changes[w.ends] = now + w.seconds


def _left(record: Record, windows: tuple[Window, ...], now: float) -> int | None:
    if not windows:
        return None
    return min(w.amount - _used(record, w, now) for w in windows)


def _bump(record: Record, changes: Record, name: str, seconds: float, now: float) -> None:
    if record.get(name + ":e", 0) > now:
        changes[name] = record.get(name, 0) + 1
    else:
        changes[name] = 1
        changes[name + ":e"] = now + seconds


def _level(record: Record, now: float) -> int:
    if record.get("lockout_level:e", 0) > now:
        return int(record.get("lockout_level", 0))
    return 0


class MemoryEngine:
    """Decides lookups in this process. Keys never hold a NIR: only pseudonyms."""

    kind = "memory"
    outages: tuple[type[BaseException], ...] = ()

    __slots__ = ("_clock", "_data", "_expiry", "_heap", "_mutex", "_prefix")

    def __init__(self, clock: Callable[[], float], *, prefix: str) -> None:
        self._clock = clock
        self._prefix = prefix
        self._data: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._mutex = threading.Lock()

    # -- records --------------------------------------------------------------------------------

    def _get(self, key: str, now: float) -> Any:
        expires = self._expiry.get(key)
        if expires is None:
            return None
        if expires <= now:
            del self._expiry[key], self._data[key]
            return None
        return self._data[key]

    def _record(self, key: str, now: float) -> Record:
        found = self._get(key, now)
        return found if found is not None else {}

    def _save(self, key: str, record: Record, changes: Record, keep: float, now: float) -> None:
        if not changes:
            return
        data = self._data
        if data.get(key) is not record:
            record = data.setdefault(key, record)
        record.update(changes)
        self._expire(key, now + keep)

    def _expire(self, key: str, when: float) -> None:
        expiry = self._expiry
        if expiry.get(key) is None:
            heapq.heappush(self._heap, (when, key))
        expiry[key] = when

    def _sweep(self, now: float) -> None:
        heap = self._heap
        expiry = self._expiry
        budget = SWEEP_CATCH_UP if heap[0][0] < now - SWEEP_BEHIND else SWEEP_PER_CALL
        for _ in range(budget):
            if not heap or heap[0][0] > now:
                return
            _, key = heapq.heappop(heap)
            when = expiry.get(key)
            if when is None:
                continue
            if when <= now:
                del expiry[key], self._data[key]
            else:  # extended since: look again when it is due
                heapq.heappush(heap, (when, key))

    def __len__(self) -> int:
        return len(self._data)

    def _now(self, request_now: float | None) -> float:
        now = self._clock() if request_now is None else request_now
        if self._heap and self._heap[0][0] <= now:
            self._sweep(now)
        return now

    def _keys(self, request: Request) -> Keys:
        return Keys(
            self._prefix,
            request.practitioner,
            request.patient,
            request.cohort,
            request.policy.heat_suffix,
        )

    # -- the portal step ------------------------------------------------------------------------

    def _portal(self, p: CompiledPolicy, keys: Keys, req: Request, now: float) -> Decision:
        result = Decision("portal")
        if p.portal:
            record = self._record(keys.portal, now)
            over = _overflow(record, p.portal, now)
            if over is not None:
                return Decision("denied", "portal", record[over[0].ends] - now)
            changes: Record = {}
            _hit(record, p.portal, changes, now)
            self._save(keys.portal, record, changes, p.portal_keep, now)
        if p.hot_cohort is not None and req.cohort is not None and req.patient is not None:
            heat = self._record(keys.heat, now)
            short, long_ = heat.get("s", 0.0), heat.get("l", 0.0)
            t = heat.get("t")
            if t is not None:
                dt = max(0.0, now - t)
                short *= math.exp(-dt / p.hot_window)
                long_ *= math.exp(-dt / p.hot_baseline)
            known = self._get(keys.portal_seen, now)
            changes = {}
            if known is None or known <= now:
                short, long_ = short + 1, long_ + 1
                changes.update(s=short, l=long_, t=now)
                self._data[keys.portal_seen] = now + p.hot_window
                self._expire(keys.portal_seen, now + p.hot_window + 60)
            expected = long_ * p.hot_window / p.hot_baseline
            result.heat, result.expected = short, expected
            if short > p.hot_cohort * expected + p.hot_cohort_min:
                result.hot = True
                alerted = heat.get("a")
                if alerted is None or alerted <= now:
                    result.hot_alert = True
                    changes["a"] = now + p.hot_window
            self._save(keys.heat, heat, changes, p.heat_keep, now)
        return result

    # -- the account step -----------------------------------------------------------------------

    def _save_account(
        self, key: str, record: Record, changes: Record, p: CompiledPolicy, now: float
    ) -> None:
        keep = p.keep
        until = changes.get("lockout", record.get("lockout"))
        if until is not None and until > now:
            keep = max(keep, until - now + 60)
        self._save(key, record, changes, keep, now)

    def _lock(
        self,
        key: str,
        record: Record,
        changes: Record,
        p: CompiledPolicy,
        quota: str,
        count: int | None,
        limit: int | None,
        base: Decision,
        now: float,
    ) -> Decision:
        level = _level(record, now)
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
            return Decision("locked", "locked", retry, level=_level(record, now))
        return None

    def _account(
        self, p: CompiledPolicy, keys: Keys, req: Request, base: Decision, now: float
    ) -> Decision:
        record = self._record(keys.account, now)
        changes: Record = {}
        refused = self._locked(record, now)
        if refused is not None:
            return refused
        for w in p.misses:
            spent = _used(record, w, now)
            if spent >= w.amount:
                return self._lock(
                    keys.account, record, changes, p, "misses", spent, w.amount, base, now
                )
        if p.miss_ratio is not None:
            n = record.get("miss_ratio:n", 0) if record.get("miss_ratio:n:e", 0) > now else 0
            m = record.get("miss_ratio:m", 0) if record.get("miss_ratio:m:e", 0) > now else 0
            if n >= p.miss_ratio_min and m / n > p.miss_ratio:
                return self._lock(keys.account, record, changes, p, "miss_ratio", m, n, base, now)
        over = _overflow(record, p.lookups, now)
        if over is not None:
            base.outcome, base.quota = "denied", "lookups"
            base.retry_after, base.level = record[over[0].ends] - now, _level(record, now)
            return base
        person: Record = self._record(keys.patient, now) if req.patient is not None else {}
        granted = person.get("g", 0) > now
        new = req.patient is not None and not granted and person.get("s", 0) <= now
        walked: Record = {}
        breach: str | None = None
        count: int | None = None
        limit: int | None = None
        if new:
            found = _overflow(record, p.distinct_patients, now)
            if found is not None:
                breach, count, limit = "distinct_patients", found[1], found[0].amount
            if breach is None and req.cohort is not None and p.cohort:
                walked = self._record(keys.walk, now)
                found = _overflow(walked, p.cohort, now)
                if found is not None:
                    breach, count, limit = "cohort", found[1], found[0].amount
            if breach is None and base.hot:
                for pw, nw in zip(p.portal_cohort, p.new_patients, strict=True):
                    hot_new = _used(record, pw, now) + 1
                    all_new = _used(record, nw, now) + 1
                    if hot_new > pw.amount and hot_new >= p.portal_cohort_share * all_new:
                        breach, count, limit = "portal_cohort", hot_new, pw.amount
                        break
                if breach is None and p.hot_reason:
                    breach = "hot_cohort"
        if breach is not None:
            if not p.break_glass:
                return self._lock(keys.account, record, changes, p, breach, count, limit, base, now)
            if req.reason:
                if _overflow(record, p.break_glass, now) is not None:
                    if breach == "hot_cohort":
                        base.outcome, base.quota = "denied", "break_glass"
                        base.level = _level(record, now)
                        return base
                    return self._lock(
                        keys.account, record, changes, p, breach, count, limit, base, now
                    )
                left = _left(record, p.break_glass, now)
                _hit(record, p.lookups, changes, now)
                _hit(record, p.break_glass, changes, now)
                changes["pending:e"] = 0  # the question was answered
                if p.miss_ratio is not None:
                    _bump(record, changes, "miss_ratio:n", p.miss_ratio_window, now)
                self._save_account(keys.account, record, changes, p, now)
                self._save(
                    keys.patient,
                    person,
                    {"g": now + p.break_glass_access},
                    p.patient_keep,
                    now,
                )
                base.outcome, base.quota, base.level = "break_glass", breach, _level(record, now)
                base.break_glass_left = None if left is None else left - 1
                base.count, base.limit = count, limit
                return base
            if breach != "hot_cohort":
                live = record.get("pending:e", 0) > now
                pending = record.get("pending")
                if live and pending is not None and pending != req.patient:
                    return self._lock(
                        keys.account, record, changes, p, breach, count, limit, base, now
                    )
                changes["pending"] = req.patient
                changes["pending:e"] = now + p.lockout_steps[0]
                self._save_account(keys.account, record, changes, p, now)
            base.outcome, base.quota, base.level = "reason_required", breach, _level(record, now)
            base.count, base.limit = count, limit
            return base
        _hit(record, p.lookups, changes, now)
        if p.miss_ratio is not None:
            _bump(record, changes, "miss_ratio:n", p.miss_ratio_window, now)
        if new:
            _hit(record, p.distinct_patients, changes, now)
            _hit(record, p.new_patients, changes, now)
            if base.hot:
                _hit(record, p.portal_cohort, changes, now)
            if req.cohort is not None and p.cohort:
                wchanges: Record = {}
                _hit(walked, p.cohort, wchanges, now)
                self._save(keys.walk, walked, wchanges, p.walk_keep, now)
            self._save(
                keys.patient,
                person,
                {"s": now + p.seen},
                p.patient_keep,
                now,
            )
        self._save_account(keys.account, record, changes, p, now)
        base.outcome = "allowed"
        base.quota = "break_glass" if granted else None
        base.level = _level(record, now)
        return base

    # -- the engine protocol --------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """Decide a lookup of a valid NIR (portal step, then account step)."""
        with self._mutex:
            now = self._now(request.now)
            keys = self._keys(request)
            portal = self._portal(request.policy, keys, request, now)
            if portal.outcome != "portal":
                return portal
            return self._account(request.policy, keys, request, portal, now)

    async def adecide(self, request: Request) -> Decision:
        """:meth:`decide`: in-process, it never waits on I/O."""
        return self.decide(request)

    def invalid(self, request: Request) -> Decision:
        """Count an invalid NIR against ``invalid_nirs`` (after the lockout check)."""
        with self._mutex:
            now = self._now(request.now)
            p = request.policy
            key = self._keys(request).account
            record = self._record(key, now)
            refused = self._locked(record, now)
            if refused is not None:
                return refused
            changes: Record = {}
            over = _overflow(record, p.invalid_nirs, now)
            if over is not None:
                base = Decision("denied")
                return self._lock(
                    key, record, changes, p, "invalid_nirs", over[1], over[0].amount, base, now
                )
            _hit(record, p.invalid_nirs, changes, now)
            self._save_account(key, record, changes, p, now)
            return Decision("invalid", "invalid_nirs", level=_level(record, now))

    async def ainvalid(self, request: Request) -> Decision:
        """:meth:`invalid`."""
        return self.invalid(request)

    def record_miss(self, request: Request) -> None:
        """Count a lookup that found nobody."""
        with self._mutex:
            now = self._now(request.now)
            p = request.policy
            key = self._keys(request).account
            record = self._record(key, now)
            changes: Record = {}
            _hit(record, p.misses, changes, now)
            if p.miss_ratio is not None:
                _bump(record, changes, "miss_ratio:m", p.miss_ratio_window, now)
            self._save_account(key, record, changes, p, now)

    async def arecord_miss(self, request: Request) -> None:
        """:meth:`record_miss`."""
        self.record_miss(request)

    def status(
        self, practitioner: str, policy: CompiledPolicy, now: float | None = None
    ) -> RawStatus:
        """Remaining budget per quota (smallest over its windows), lockout and level."""
        with self._mutex:
            now = self._now(now)
            keys = Keys(self._prefix, practitioner, None, None, policy.heat_suffix)
            record = self._record(keys.account, now)
            out = RawStatus()
            for name in (
                "lookups",
                "distinct_patients",
                "invalid_nirs",
                "misses",
                "portal_cohort",
                "break_glass",
            ):
                left = _left(record, getattr(policy, name), now)
                out.remaining[name] = None if left is None else max(0, left)
            portal = _left(self._record(keys.portal, now), policy.portal, now)
            out.remaining["portal"] = None if portal is None else max(0, portal)
            until = record.get("lockout")
            if until is not None and until > now:
                out.locked_for = until - now
            out.level = _level(record, now)
            return out

    async def astatus(self, practitioner: str, policy: CompiledPolicy) -> RawStatus:
        """:meth:`status`."""
        return self.status(practitioner, policy)

    def unlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """Lift the lockout; forget the escalation and the breaches that would re-trigger it."""
        with self._mutex:
            now = self._now(None)
            key = Keys(self._prefix, practitioner, None, None, policy.heat_suffix).account
            record = self._get(key, now)
            if record is None:
                return
            gone = ("distinct_patients", "invalid_nirs", "misses", "portal_cohort", "new_patients")
            for name in list(record):
                head = name.split(":", 1)[0]
                if head in gone or head in ("lockout", "lockout_level", "pending", "miss_ratio"):
                    del record[name]

    async def aunlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """:meth:`unlock`."""
        self.unlock(practitioner, policy)

    def close(self) -> None:
        """Nothing to close."""

    async def aclose(self) -> None:
        """Nothing to close."""

    def reset(self) -> None:
        """Forget every record."""
        with self._mutex:
            self._data.clear()
            self._expiry.clear()
            self._heap.clear()

    def _snapshot(self) -> tuple[dict[str, Any], dict[str, float], list[tuple[float, str]]]:
        """A deep copy of the state (the replay reuses a history this way)."""
        import copy

        with self._mutex:
            return copy.deepcopy((self._data, self._expiry, self._heap))

    def _restore(
        self, state: tuple[dict[str, Any], dict[str, float], list[tuple[float, str]]]
    ) -> None:
        import copy

        with self._mutex:
            self._data, self._expiry, self._heap = copy.deepcopy(state)
