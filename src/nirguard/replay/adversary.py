"""An adversary that searches for the worst case of a policy, through the real guard.

A :class:`Bot` is a schedule of requests from one stolen account, written as
a few parameters: how fast it asks, whether it pauses, what it does with a
refusal that asks for a reason (move on, ask again, state a reason, wait),
whether it waits out refusals and lockouts or keeps asking, how many of its
asks re-ask people it already has, whether its new people share a birth
cohort, whether it works office hours or around the clock. :func:`play`
runs one bot against a :class:`~nirguard.LookupGuard` on ``memory://`` with
a simulated clock, for ``days``, and counts the new people it obtained.

:func:`nirguard.replay.search.search` looks for the bot that obtains the
most. A *fast* bot (:attr:`Bot.fast`) asks for a new person (or the refused
one again) at least every :data:`FAST_GAP` seconds while not locked out and
waits only for lockouts (:func:`nirguard.profiles.worst_case` gives its
bound); any other bot may pace itself under every window as well.

>>> from nirguard import profiles
>>> outcome = play(profiles.gp(), Bot(gap=5.0, on_reason="move_on"), days=1)
>>> outcome.obtained <= profiles.worst_case(profiles.gp(), days=1).fast
True
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from nirguard.errors import LookupDenied, PractitionerLocked, ReasonRequired
from nirguard.guard import LookupGuard
from nirguard.keys import SecretKey
from nirguard.pseudonym import Pseudonymiser
from nirguard.reasons import ReasonCode

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = ["FAST_GAP", "Bot", "OnReason", "Outcome", "people", "play"]

DAY: Final = 86_400.0
#: Longest gap between two asks of a fast bot (seconds).
FAST_GAP: Final = 10.0
#: Refusals that never start a lockout by themselves (a bot that waits for them paces itself).
_NOT_LOCKOUT: Final = frozenset({"lookups", "portal", "reason_required", "locked"})
_START: Final = 1_767_571_200.0  # a Monday, 00:00 UTC
_KEY: Final = SecretKey(bytes(range(32)), "adversary")
#: Departments of birth the generator uses (01-95 without 20).
_DEPARTMENTS: Final = [f"{d:02d}" for d in range(1, 96) if d != 20]

OnReason = Literal["move_on", "retry", "reason", "wait"]


@dataclass(frozen=True)
class Bot:
    """One stolen account's schedule.

    Attributes:
        gap: seconds between two asks.
        burst: new people asked before a pause (0: never pauses).
        pause: seconds of that pause.
        on_reason: what it does when asked for a reason (428): ``move_on`` to a
            new person, ``retry`` the same person ``retries`` times without a
            reason, state a ``reason`` (break-glass), or ``wait`` ``wait``
            seconds and ask the same person again.
        retries: see ``on_reason``.
        wait: see ``on_reason``.
        waits_out: on a refusal carrying ``Retry-After`` (a quota, a
            lockout), waits that long; otherwise asks again after ``gap``.
        waits_quota: also waits out refusals that start no lockout (``lookups``).
        repeats: asks for people it already has between two asks for someone
            new (or for the refused one again), ``gap`` apart like every ask.
        same_cohort: chance that a new person shares the previous one's cohort.
        office: asks only Monday-Friday 08:00-19:00.
        seed: seed of its choices (which people it repeats, cohorts).
    """

    gap: float = FAST_GAP
    burst: int = 0
    pause: float = 0.0
    on_reason: OnReason = "move_on"
    retries: int = 0
    wait: float = 0.0
    waits_out: bool = True
    waits_quota: bool = False
    repeats: int = 0
    same_cohort: float = 0.0
    office: bool = False
    seed: int = 0

    @property
    def fast(self) -> bool:
        """Whether it is a fast bot (:meth:`is_fast` within :data:`FAST_GAP`)."""
        return self.is_fast()

    def is_fast(self, gap: float = FAST_GAP) -> bool:
        """Whether it asks for someone new (or the refused one again) at least every
        ``gap`` seconds, repeats included, and waits only for lockouts."""
        slow_reason = self.on_reason == "wait" and self.wait > self.gap
        return (
            self.gap * (self.repeats + 1) <= gap
            and self.burst == 0
            and not slow_reason
            and not self.waits_quota
            and not self.office
        )


@dataclass
class Outcome:
    """What one bot obtained.

    Attributes:
        obtained: distinct new people it obtained (identity data returned).
        asks: lookups it asked for.
        answers: refusals by code (``reason_required``, ``locked``, a quota...).
        locked_for_good: it met a lockout that lasts until ``unlock()``.
        first_refusal: seconds from its first ask to its first refusal (``None``: none).
        stopped: seconds from its first ask to its last one.
    """

    obtained: int = 0
    asks: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    locked_for_good: bool = False
    first_refusal: float | None = None
    stopped: float = 0.0


class _People:
    """Valid NIRs of distinct people, in cohorts: a new cohort per person, or the previous one."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._cohort = -1
        self._orders = 0

    def next(self, same_cohort: float) -> str:
        if self._cohort < 0 or self._orders >= 999 or self._rng.random() >= same_cohort:
            self._cohort += 1
            self._orders = 0
        self._orders += 1
        c = self._cohort
        body = (
            f"{1 + c % 2}{(c // 2) % 100:02d}{1 + (c // 200) % 12:02d}"
            f"{_DEPARTMENTS[(c // 2400) % len(_DEPARTMENTS)]}{1 + (c // 225_600) % 990:03d}"
            f"{self._orders:03d}"
        )
        return body + f"{97 - int(body) % 97:02d}"


def people(count: int, *, seed: int = 0, same_cohort: float = 0.0) -> list[str]:
    """``count`` valid NIRs of distinct people, the way a bot asks for them: a new
    birth cohort each, or (with odds ``same_cohort``) the previous one's.

    >>> first = people(2)
    >>> len(set(first)), first[0][:10] != first[1][:10]
    (2, True)
    """
    source = _People(seed)
    return [source.next(same_cohort) for _ in range(count)]


class _Clock:
    def __init__(self) -> None:
        self.now = _START

    def __call__(self) -> float:
        return self.now


def _office(now: float) -> float:
    """``now``, or the start of the next office hours (Monday-Friday 08:00-19:00)."""
    while True:
        day, seconds = divmod(now - _START, DAY)
        if int(day) % 7 >= 5:
            now = _START + (day + 7 - int(day) % 7) * DAY + 8 * 3600
        elif seconds < 8 * 3600:
            now = _START + day * DAY + 8 * 3600
        elif seconds >= 19 * 3600:
            now = _START + (day + 1) * DAY
        else:
            return now


def _guard(policy: QuotaPolicy, clock: _Clock) -> LookupGuard:
    return LookupGuard(
        policy,
        clock=clock,
        pseudonymiser=Pseudonymiser(_KEY, purpose="adversary"),
        hooks="inline",
        alert=False,
        notice=False,
        metrics=False,
    )


class _Run:
    """One bot against one guard, until ``days`` have passed or it is locked for good."""

    def __init__(self, policy: QuotaPolicy, bot: Bot, days: float, max_asks: int) -> None:
        self.bot, self.clock = bot, _Clock()
        self.guard = _guard(policy, self.clock)
        self.end, self.max_asks = _START + days * DAY, max_asks
        self.rng, self.people = random.Random(bot.seed), _People(bot.seed)
        self.have: list[str] = []
        self.held: set[str] = set()
        self.pending: str | None = None
        self.tries = 0
        self.since_pause = 0
        self.since_new = 0
        self.out = Outcome()

    def choose(self) -> tuple[str, ReasonCode | None, bool]:
        """The person to ask for, the reason stated, whether it is a new person."""
        b = self.bot
        if self.pending is not None:
            if b.on_reason == "reason":
                return self.pending, ReasonCode.ETREAT, False
            if b.on_reason == "wait" or (b.on_reason == "retry" and self.tries <= b.retries):
                return self.pending, None, False
            self.pending, self.tries = None, 0
        if self.have and self.since_new < b.repeats:
            self.since_new += 1
            return self.rng.choice(self.have), None, False
        self.since_new = 0
        return self.people.next(b.same_cohort), None, True

    def refused(self, person: str, error: LookupDenied) -> float | None:
        """Seconds to the next ask after a refusal; ``None``: locked for good, stop."""
        b, out = self.bot, self.out
        code = "locked" if isinstance(error, PractitionerLocked) else error.code
        out.answers[code] += 1
        if out.first_refusal is None:
            out.first_refusal = self.clock.now - _START
        if isinstance(error, ReasonRequired):
            self.pending = person
            self.tries += 1
            return max(b.gap, b.wait) if b.on_reason == "wait" else b.gap
        retry = error.retry_after
        if retry is None and code not in _NOT_LOCKOUT - {"locked"}:
            out.locked_for_good = True
            return None
        waits = b.waits_out and (code not in _NOT_LOCKOUT - {"locked"} or b.waits_quota)
        return max(b.gap, retry) if waits and retry is not None else b.gap

    def ask(self) -> float | None:
        """One ask; seconds to the next one (``None``: stop)."""
        b = self.bot
        person, reason, new = self.choose()
        self.out.asks += 1
        try:
            with self.guard.lookup("adversary", person, reason=reason) as lookup:
                lookup.record({"found": True})
        except LookupDenied as error:
            delay = self.refused(person, error)
        else:
            delay = b.gap
            if person not in self.held:
                self.held.add(person)
                self.have.append(person)
                self.out.obtained += 1
            if person == self.pending:
                self.pending, self.tries = None, 0
        if new and b.burst:
            self.since_pause += 1
            if self.since_pause >= b.burst and delay is not None:
                self.since_pause = 0
                delay += b.pause
        return delay

    def run(self) -> Outcome:
        clock = self.clock
        while clock.now < self.end and self.out.asks < self.max_asks:
            if self.bot.office:
                clock.now = _office(clock.now)
                if clock.now >= self.end:
                    break
            self.out.stopped = clock.now - _START
            delay = self.ask()
            if delay is None:
                break
            clock.now += delay
        self.guard.close()
        return self.out


def play(policy: QuotaPolicy, bot: Bot, *, days: float = 7, max_asks: int = 200_000) -> Outcome:
    """Run ``bot`` on one fresh account under ``policy`` for ``days`` (simulated time)
    and count what it obtained; it stops early once locked for good, or after ``max_asks``."""
    return _Run(policy, bot, days, max_asks).run()
