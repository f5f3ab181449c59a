"""The quota seam: one call decides a whole lookup.

:class:`Engine` checks and consumes every counter a lookup touches and
returns a :class:`Decision`. The logic is written once, as generators that
yield store operations (:mod:`nirguard._store`), and driven either
synchronously or asynchronously, so the sync and async paths cannot drift
apart. A Redis-native engine deciding a lookup in one round trip can replace
the drivers behind the same calls.

Counters are fixed windows (``limits``' ``FixedWindowRateLimiter``
semantics: a window starts at its first hit). A lookup is allowed only when
every counter it increments stays within its limit; when one does not, the
counters already incremented for this lookup are given back, so a refused
attempt consumes nothing and concurrent callers can never get more than the
quota through (each increment is atomic on every store).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Final

from nirguard._store import CLEAR, GET, INCR, TTL, AsyncLimitsStore, LimitsStore, MemoryStore, Op
from nirguard.errors import (
    EnumerationSuspected,
    LookupDenied,
    PractitionerLocked,
    QuotaExceeded,
)
from nirguard.policy import QuotaPolicy, parse_duration

__all__ = ["CompiledPolicy", "Decision", "Engine", "Request"]

# A lockout "until unlock()" is stored with this expiry (about 10 years).
INDEFINITE: Final = 10 * 365 * 86400.0
_INDEFINITE_REPORT: Final = 365 * 86400.0

Flow = Generator[Op, float, "Decision"]


@dataclass(frozen=True, slots=True)
class Window:
    amount: int
    seconds: int
    suffix: str


def _windows(policy: QuotaPolicy, name: str) -> tuple[Window, ...]:
    return tuple(
        Window(item.amount, item.get_expiry(), f"{item.amount}/{item.get_expiry()}")
        for item in policy.items(name)
    )


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A :class:`QuotaPolicy` turned into windows and seconds, once per policy."""

    policy: QuotaPolicy
    lookups: tuple[Window, ...]
    distinct: tuple[Window, ...]
    invalid: tuple[Window, ...]
    misses: tuple[Window, ...]
    portal: tuple[Window, ...]
    cohort: tuple[Window, ...]
    portal_cohort: tuple[Window, ...]
    seen_seconds: int
    portal_seen_seconds: int
    lockout_memory: float
    ratio: float | None
    ratio_min: int
    ratio_seconds: int

    @classmethod
    def of(cls, policy: QuotaPolicy) -> CompiledPolicy:
        distinct = _windows(policy, "distinct_patients")
        cohort = _windows(policy, "cohort")
        portal_cohort = _windows(policy, "portal_cohort")
        return cls(
            policy=policy,
            lookups=_windows(policy, "lookups"),
            distinct=distinct,
            invalid=_windows(policy, "invalid_nirs"),
            misses=_windows(policy, "misses"),
            portal=_windows(policy, "portal"),
            cohort=cohort,
            portal_cohort=portal_cohort,
            seen_seconds=max((w.seconds for w in (*distinct, *cohort)), default=0),
            portal_seen_seconds=max((w.seconds for w in portal_cohort), default=0),
            lockout_memory=parse_duration(policy.lockout_memory),
            ratio=policy.miss_ratio,
            ratio_min=policy.miss_ratio_min_lookups,
            ratio_seconds=int(parse_duration(policy.miss_ratio_window)),
        )


@dataclass(frozen=True, slots=True)
class Request:
    """One lookup as the engine sees it: no NIR, only pseudonyms."""

    practitioner: str  # already escaped for use in store keys
    policy: CompiledPolicy
    patient: str | None = None  # pseudonym of the canonical NIR; None when invalid
    cohort: str | None = None  # pseudonym of the 10-character prefix


@dataclass(slots=True)
class Decision:
    """What the engine decided for one lookup."""

    outcome: str  # allowed, invalid, denied, locked, suspected
    denial: LookupDenied | None = None
    quota: str | None = None
    retry_after: float | None = None
    lockout_started: bool = False
    evidence: dict[str, float] = field(default_factory=dict)


def escape(practitioner: str) -> str:
    """A practitioner id made safe for a store key (no ``:`` or ``%`` left)."""
    if ":" in practitioner or "%" in practitioner:
        return practitioner.replace("%", "%25").replace(":", "%3A")
    return practitioner


class Engine:
    """Decides lookups over one store. Keys never hold a NIR: only pseudonyms."""

    __slots__ = ("_async_loop", "_async_store", "_open_async", "_prefix", "_store")

    def __init__(
        self,
        store: MemoryStore | LimitsStore,
        *,
        prefix: str,
        async_store: MemoryStore | AsyncLimitsStore | None,
        open_async: Callable[[], AsyncLimitsStore],
    ) -> None:
        self._store = store
        self._async_store = async_store
        self._async_loop: object = None
        self._open_async = open_async
        self._prefix = prefix

    # -- keys -----------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    # -- drivers --------------------------------------------------------------------------------

    def run(self, flow: Generator[Op, float, Any]) -> Any:
        """Drive ``flow`` synchronously. Store errors propagate."""
        store = self._store
        if isinstance(store, MemoryStore):
            with store.lock:
                return _drive(flow, store.apply)
        return _drive(flow, store.apply)

    async def arun(self, flow: Generator[Op, float, Any]) -> Any:
        """Drive ``flow`` without blocking the event loop. Store errors propagate."""
        store = self._async_store
        if not isinstance(store, MemoryStore):
            # Async clients belong to the event loop that made them.
            loop = asyncio.get_running_loop()
            if store is None or self._async_loop is not loop:
                store = self._async_store = self._open_async()
                self._async_loop = loop
        if isinstance(store, MemoryStore):
            with store.lock:  # in-process and never waits on I/O
                return _drive(flow, store.apply)
        apply = store.apply
        try:
            op = next(flow)
            while True:
                op = flow.send(await apply(op))
        except StopIteration as stop:
            return stop.value

    def close(self) -> None:
        """Close the sync store's connections."""
        if isinstance(self._store, LimitsStore):
            self._store.close()

    async def aclose(self) -> None:
        """Close the async store's connections (call from the loop that used them)."""
        store = self._async_store
        if isinstance(store, AsyncLimitsStore):
            self._async_store = None
            self._async_loop = None
            await store.aclose()

    # -- flows ----------------------------------------------------------------------------------

    def admit(self, req: Request) -> Flow:
        """Lockout -> miss budget and ratio -> lookups -> new-patient quotas -> portal."""
        p = req.practitioner
        policy = req.policy
        locked = yield from self._locked(p)
        if locked is not None:
            return locked
        for w in policy.misses:
            used = yield (GET, self._key("misses", p, w.suffix), 0, 0)
            if used >= w.amount:
                return (yield from self._lock(req, "misses", {"misses": used, "limit": w.amount}))
        if policy.ratio is not None:
            n = yield (GET, self._key("ratio", "n", p), 0, 0)
            if n >= policy.ratio_min:
                m = yield (GET, self._key("ratio", "m", p), 0, 0)
                if m / n > policy.ratio:
                    evidence = {"lookups": n, "misses": m, "ratio": round(m / n, 3)}
                    return (yield from self._lock(req, "miss_ratio", evidence))
        taken: list[tuple[str, float]] = []
        for w in policy.lookups:
            key = self._key("lookups", p, w.suffix)
            used = yield (INCR, key, w.seconds, 1)
            taken.append((key, w.seconds))
            if used > w.amount:
                yield from _give_back(taken)
                ttl = yield (TTL, key, 0, 0)
                return _quota("lookups", ttl)
        seen_key = None
        if req.patient is not None and policy.seen_seconds:
            seen_key = self._key("seen", p, req.patient)
            first = yield (INCR, seen_key, policy.seen_seconds, 1)
            if first == 1:
                for w in policy.distinct:
                    key = self._key("distinct", p, w.suffix)
                    used = yield (INCR, key, w.seconds, 1)
                    taken.append((key, w.seconds))
                    if used > w.amount:
                        yield from _give_back(taken)
                        yield (CLEAR, seen_key, 0, 0)
                        evidence = {"distinct_patients": used, "limit": w.amount}
                        return (yield from self._lock(req, "distinct_patients", evidence))
                if req.cohort is not None:
                    for w in policy.cohort:
                        key = self._key("cohort", p, req.cohort, w.suffix)
                        used = yield (INCR, key, w.seconds, 1)
                        taken.append((key, w.seconds))
                        if used > w.amount:
                            yield from _give_back(taken)
                            yield (CLEAR, seen_key, 0, 0)
                            evidence = {"cohort_patients": used, "limit": w.amount}
                            return (yield from self._lock(req, "cohort", evidence))
            else:
                seen_key = None  # not ours to clear if a later quota refuses
        if req.patient is not None and req.cohort is not None and policy.portal_seen_seconds:
            portal_seen = self._key("pseen", req.patient)
            first = yield (INCR, portal_seen, policy.portal_seen_seconds, 1)
            if first == 1:
                for w in policy.portal_cohort:
                    key = self._key("pcohort", req.cohort, w.suffix)
                    used = yield (INCR, key, w.seconds, 1)
                    taken.append((key, w.seconds))
                    if used > w.amount:
                        yield from _give_back(taken)
                        yield (CLEAR, portal_seen, 0, 0)
                        if seen_key is not None:
                            yield (CLEAR, seen_key, 0, 0)
                        evidence = {"portal_cohort_patients": used, "limit": w.amount}
                        return (yield from self._lock(req, "portal_cohort", evidence))
        for w in policy.portal:
            key = self._key("portal", w.suffix)
            used = yield (INCR, key, w.seconds, 1)
            taken.append((key, w.seconds))
            if used > w.amount:
                yield from _give_back(taken)
                if seen_key is not None:
                    yield (CLEAR, seen_key, 0, 0)
                ttl = yield (TTL, key, 0, 0)
                return _quota("portal", ttl)
        if policy.ratio is not None:
            yield (INCR, self._key("ratio", "n", p), policy.ratio_seconds, 1)
        return Decision("allowed")

    def invalid(self, req: Request) -> Flow:
        """An invalid NIR: lockout check, then count it against ``invalid_nirs``."""
        p = req.practitioner
        locked = yield from self._locked(p)
        if locked is not None:
            return locked
        for w in req.policy.invalid:
            used = yield (INCR, self._key("invalid", p, w.suffix), w.seconds, 1)
            if used > w.amount:
                evidence = {"invalid_nirs": used, "limit": w.amount}
                return (yield from self._lock(req, "invalid_nirs", evidence))
        return Decision("invalid")

    def record_miss(self, req: Request) -> Generator[Op, float, None]:
        """Count a lookup that found nobody."""
        p = req.practitioner
        for w in req.policy.misses:
            yield (INCR, self._key("misses", p, w.suffix), w.seconds, 1)
        if req.policy.ratio is not None:
            yield (INCR, self._key("ratio", "m", p), req.policy.ratio_seconds, 1)

    def status(
        self, practitioner: str, policy: CompiledPolicy
    ) -> Generator[Op, float, dict[str, Any]]:
        """Remaining budget per quota (smallest over its windows) and the lockout."""
        p = practitioner
        remaining: dict[str, int | None] = {}
        groups = (
            ("lookups", "lookups", policy.lookups, (p,)),
            ("distinct_patients", "distinct", policy.distinct, (p,)),
            ("invalid_nirs", "invalid", policy.invalid, (p,)),
            ("misses", "misses", policy.misses, (p,)),
            ("portal", "portal", policy.portal, ()),
        )
        for name, kind, windows, owner in groups:
            if not windows:
                remaining[name] = None
                continue
            left = []
            for w in windows:
                used = yield (GET, self._key(kind, *owner, w.suffix), 0, 0)
                left.append(max(0, w.amount - int(used)))
            remaining[name] = min(left)
        locked = yield (GET, self._key("lock", p), 0, 0)
        ttl = (yield (TTL, self._key("lock", p), 0, 0)) if locked else 0.0
        level = yield (GET, self._key("level", p), 0, 0)
        return {"remaining": remaining, "locked_for": ttl if locked else None, "level": int(level)}

    def unlock(self, practitioner: str, policy: CompiledPolicy) -> Generator[Op, float, None]:
        """Lift the lockout and forget the breaches that would re-trigger it at once."""
        p = practitioner
        yield (CLEAR, self._key("lock", p), 0, 0)
        yield (CLEAR, self._key("level", p), 0, 0)
        for kind, windows in (
            ("distinct", policy.distinct),
            ("invalid", policy.invalid),
            ("misses", policy.misses),
        ):
            for w in windows:
                yield (CLEAR, self._key(kind, p, w.suffix), 0, 0)
        yield (CLEAR, self._key("ratio", "n", p), 0, 0)
        yield (CLEAR, self._key("ratio", "m", p), 0, 0)

    # -- lockout --------------------------------------------------------------------------------

    def _locked(self, p: str) -> Generator[Op, float, Decision | None]:
        lock_key = self._key("lock", p)
        if (yield (GET, lock_key, 0, 0)) > 0:
            ttl = yield (TTL, lock_key, 0, 0)
            retry = None if ttl > _INDEFINITE_REPORT else ttl
            return Decision(
                "locked", PractitionerLocked(retry_after=retry), quota="locked", retry_after=retry
            )
        return None

    def _lock(self, req: Request, reason: str, evidence: dict[str, float]) -> Flow:
        """Start (or join) the lockout of ``req.practitioner`` and build the denial."""
        p = req.practitioner
        level_key = self._key("level", p)
        level = int((yield (GET, level_key, 0, 0)))
        seconds = req.policy.policy.lockout_seconds(level)
        started = (yield (INCR, self._key("lock", p), seconds or INDEFINITE, 1)) == 1
        if started:
            yield (INCR, level_key, req.policy.lockout_memory, 1)
            retry = seconds
        else:  # someone else's breach locked first: report what is left of that lockout
            ttl = yield (TTL, self._key("lock", p), 0, 0)
            retry = None if ttl > _INDEFINITE_REPORT else ttl
        denial: LookupDenied
        if reason in ("cohort", "portal_cohort", "miss_ratio"):
            denial = EnumerationSuspected(reason, retry_after=retry)
            outcome = "suspected"
        else:
            denial = QuotaExceeded(reason, retry_after=retry)
            outcome = "denied"
        evidence = {**evidence, "lockout_level": level + 1}
        return Decision(outcome, denial, reason, retry, started, evidence)


def _give_back(taken: list[tuple[str, float]]) -> Generator[Op, float, None]:
    for key, seconds in taken:
        yield (INCR, key, seconds, -1)


def _quota(name: str, ttl: float) -> Decision:
    retry = ttl if ttl > 0 else None
    return Decision("denied", QuotaExceeded(name, retry_after=retry), name, retry)


def _drive(flow: Generator[Op, float, Any], apply: Callable[[Op], float]) -> Any:
    try:
        op = next(flow)
        while True:
            op = flow.send(apply(op))
    except StopIteration as stop:
        return stop.value
