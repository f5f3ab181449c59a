"""How a stolen account's bot behaves: its answer to a refusal, its hours, its pace.

Every strategy is a source of numbers (:mod:`~nirguard.replay.walks`) driven
by an :class:`Attack`: when it asks (its pace, or a GP's hours from
:class:`Hours`), and what it does when refused (:class:`Tactics`: drop the
number or ask for it again, wait as ``retry_after`` says or not, state a
reason, slow down). The answer to a refusal is a parameter of the attacker,
not a class of its own, so that every answer can be tried with every source.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from nirguard.replay.registry import Registry
from nirguard.replay.sessions import Logins

__all__ = [
    "ATTACK_OFFSET",
    "FAST_INTERVAL",
    "Attack",
    "NIGHT",
    "Hours",
    "Tactics",
    "slow_interval",
]

#: Seconds between two attempts of a fast script (per account).
FAST_INTERVAL: Final = 5.0
#: When the attack starts, from the start of the attack week: Monday 01:00.
ATTACK_OFFSET: Final = 3_600.0
#: Accounts join a few minutes apart.
_STAGGER: Final = 240.0
#: Per-practitioner rates the paced scripts stay under.
_PACED_QUOTAS: Final = ("lookups", "distinct_patients")
_SLACK: Final = 1.02
_REASONS: Final = ("ETREAT", "TREAT", "COC", "PATRQT")
_DAY: Final = 86_400.0
_HOUR: Final = 3_600.0
#: A GP's sessions: (share of the day's lookups, start hour, end hour).
_OFFICE: Final = ((0.45, 8.5, 12.5), (0.55, 14.0, 19.5))
_AROUND_THE_CLOCK: Final = ((1.0, 0.0, 24.0),)
#: A bot that works while the owner sleeps: 21:30-06:30, every day.
NIGHT: Final = ((0.72, 0.0, 6.5), (0.28, 21.5, 24.0))

Answer = Literal["drop", "retry", "reason"]


def slow_interval(policy: Mapping[str, object]) -> float:
    """Seconds between lookups that stay under every per-practitioner rate of ``policy``.

    ``policy`` maps quota names to rate strings in ``limits`` syntax (``None``
    for quotas that are off); quotas that are not rates (or unknown) are
    ignored. At least :data:`FAST_INTERVAL`.
    """
    from limits import parse_many

    interval = FAST_INTERVAL
    for name, value in policy.items():
        if not isinstance(value, str) or not any(name.startswith(q) for q in _PACED_QUOTAS):
            continue
        try:
            items = parse_many(value)
        except ValueError:
            continue
        for item in items:
            interval = max(interval, item.get_expiry() / item.amount * _SLACK)
    return interval


@dataclass(frozen=True)
class Tactics:
    """What a bot does when the portal refuses it.

    Attributes:
        on_reason: after "a reason is required" (HTTP 428): ``"drop"`` the
            number and go on, ``"retry"`` it without a reason, or state a
            ``"reason"`` and ask again at once.
        on_denied: after any other refusal: ``"retry"`` the same number, or
            ``"drop"`` it and go on with the next.
        wait: seconds before the next attempt after a refusal; ``None``: as
            long as ``retry_after`` says (at least 1 s), or the bot's own pace
            when there is none (after a 428).
        insist: refusals in a row after which the bot rests (``0``: never rests).
        rest: the rest, in seconds (or ``retry_after`` when longer).
        always_reason: state a reason on every lookup, asked or not.
        slow_down: after its first refusal, the bot goes on at a pace under
            every per-account rate of the policy (it has read the policy).
    """

    on_reason: Answer = "drop"
    on_denied: Answer = "retry"
    wait: float | None = None
    insist: int = 0
    rest: float = _HOUR
    always_reason: bool = False
    slow_down: bool = False

    def describe(self) -> str:
        """The tactics in a few words (for the docs and the legend)."""
        words = {
            "drop": "drops the number",
            "retry": "asks for it again",
            "reason": "states a reason",
        }
        wait = "as retry_after says" if self.wait is None else f"after {self.wait:g} s"
        out = f"after a 428 {words[self.on_reason]}, after a refusal {words[self.on_denied]} {wait}"
        if self.insist:
            out += f", {self.insist} times in a row, then rests"
        if self.always_reason:
            out += "; a reason on every lookup"
        if self.slow_down:
            out += "; slows down under every rate once refused"
        return out


class Hours:
    """When a GP-paced script asks: ``per_day`` lookups a working day at a GP's hours
    (Monday to Friday, 08:30-12:30 and 14:00-19:30), or every day around the clock, or
    every day in ``blocks`` (``(share, start hour, end hour)``, e.g. :data:`NIGHT`)."""

    def __init__(
        self,
        per_day: float,
        *,
        office: bool,
        seed: int,
        blocks: tuple[tuple[float, float, float], ...] | None = None,
    ) -> None:
        self.per_day = per_day
        self.office = office and blocks is None
        self.blocks = blocks or (_OFFICE if office else _AROUND_THE_CLOCK)
        self.seed = seed
        self._slots: dict[tuple[int, int], list[float]] = {}

    def _day(self, account: int, day: int) -> list[float]:
        found = self._slots.get((account, day))
        if found is not None:
            return found
        if len(self._slots) > 10_000:
            self._slots.clear()
        rng = random.Random(f"hours:{self.seed}:{account}:{day}")
        out: list[float] = []
        if not self.office or day % 7 < 5:
            count = max(1, round(self.per_day * math.exp(rng.gauss(0.0, 0.15))))
            for share, start, end in self.blocks:
                n = round(count * share)
                step = (end - start) * _HOUR / max(1, n)
                base = day * _DAY + start * _HOUR
                out.extend(base + (k + rng.uniform(0.1, 0.9)) * step for k in range(n))
        out.sort()
        self._slots[(account, day)] = out
        return out

    def after(self, account: int, now: float) -> float:
        """The first slot of ``account`` strictly after ``now``."""
        day = math.floor(now / _DAY)
        for d in range(day, day + 14):
            slots = self._day(account, d)
            i = bisect.bisect_right(slots, now)
            if i < len(slots):
                return slots[i]
        return (day + 14) * _DAY  # pragma: no cover - a week without a working day

    def period(self, now: float) -> tuple[int, int]:
        """``(day, block)`` of the working period ``now`` falls in (block -1: none)."""
        day = math.floor(now / _DAY)
        hour = (now - day * _DAY) / _HOUR
        for k, (_, start, end) in enumerate(self.blocks):
            if start <= hour < end:
                return day, k
        return day, -1


class Attack:
    """The script of one strategy over its accounts.

    Attributes:
        name: the strategy.
        accounts: practitioner ids of the stolen accounts.
        owners: whether they are legitimate accounts whose owners keep working.
        start: time of each account's first attempt (seconds).
        interval: seconds between two attempts while the portal answers.
        tactics: what the bot does when refused.
        hours: a GP's hours (``None``: it works at its own pace, around the clock).
        paced: the pace under every per-account rate (for ``tactics.slow_down``).
        churn: the bot logs in anew for every lookup (else once per working period).
    """

    def __init__(
        self,
        name: str,
        accounts: list[str],
        interval: float,
        start: float,
        seed: int,
        *,
        tactics: Tactics | None = None,
        hours: Hours | None = None,
        paced: float = FAST_INTERVAL,
        owners: bool = False,
        churn: bool = False,
    ) -> None:
        rng = random.Random(f"attack-start:{seed}")
        self.churn = churn
        self.logins = Logins()
        self.name = name
        self.accounts = accounts
        self.owners = owners
        self.interval = interval
        self.tactics = tactics or Tactics()
        self.hours = hours
        self.paced = paced
        n = len(accounts)
        self.start = [start + i * _STAGGER + rng.uniform(0, 60) for i in range(n)]
        if hours is not None:
            self.start = [hours.after(i, t) for i, t in enumerate(self.start)]
        self.slowed = [False] * n
        self.in_a_row = [0] * n

    def next_nir(self, account: int) -> str | None:
        """The next number account ``account`` tries; ``None`` when it has nothing left."""
        raise NotImplementedError

    def feedback(self, account: int, found: bool) -> None:
        """Result of an allowed lookup of the last number: someone was found or not."""

    def next_time(self, account: int, now: float) -> float:
        """When the account tries again after an attempt at ``now`` (its own pace)."""
        if self.slowed[account]:
            return now + max(self.paced, self.interval)
        if self.hours is not None:
            return self.hours.after(account, now)
        return now + self.interval

    def session(self, account: int, now: float) -> str:
        """The portal session the account's lookup at ``now`` comes from: the bot's own
        login (never the owner's), one per working period (a GP's half-day, or a day
        for a script with no hours; anew after :data:`~nirguard.replay.sessions.IDLE`),
        or a new login for every lookup when it churns."""
        if self.churn:
            return f"bot{self.logins.new()}"
        period = self.hours.period(now) if self.hours is not None else math.floor(now / _DAY)
        return f"bot{self.logins.at(account, now, period)}"

    def answered(self, account: int) -> None:
        """The portal answered the account's last attempt: no refusal in a row."""
        self.in_a_row[account] = 0

    def reason(self, account: int, attempt: int) -> str:
        """The reason code the bot states: ``ETREAT``, or codes in turn."""
        if account % 2 == 0:
            return "ETREAT"
        return _REASONS[attempt % len(_REASONS)]

    def after_refusal(
        self, account: int, now: float, asked: bool, retry_after: float | None
    ) -> tuple[bool, float] | None:
        """After a refusal at ``now`` (``asked``: "a reason is required"): whether to ask
        for the same number again, and when; ``None``: the account is locked until
        an administrator unlocks it, and lost to the attacker."""
        t = self.tactics
        if not asked and retry_after is None:
            return None
        if t.slow_down:
            self.slowed[account] = True
        same = (t.on_reason if asked else t.on_denied) != "drop"
        self.in_a_row[account] += 1
        if t.insist and self.in_a_row[account] >= t.insist:
            self.in_a_row[account] = 0
            return same, now + max(retry_after or 0.0, t.rest)
        if t.wait is not None:
            return same, now + t.wait
        if retry_after is None:
            return same, self.next_time(account, now)
        return same, now + max(retry_after, 1.0)

    def unguarded(self, registry: Registry, end: float) -> tuple[array[float], list[int], int]:
        """Run the script with nothing refused until ``end``.

        Returns:
            the time each person was first exposed (one entry per person),
            people found per account, attempts.
        """
        exposed: dict[int, float] = {}
        found = [0] * len(self.accounts)
        attempts = 0
        heap = [(t, i) for i, t in enumerate(self.start)]
        heapq.heapify(heap)
        find = registry.find
        while heap:
            t, i = heap[0]
            if t >= end:
                break
            number = self.next_nir(i)
            if number is None:
                heapq.heappop(heap)
                continue
            attempts += 1
            person = find(number)
            if person is not None:
                found[i] += 1
                if person not in exposed:
                    exposed[person] = t
            self.feedback(i, person is not None)
            heapq.heapreplace(heap, (self.next_time(i, t), i))
        return array("d", exposed.values()), found, attempts
