"""Stolen accounts and the scripts they run.

Every strategy drives the same number of stolen practitioner accounts (19,
as in 2022). A script asks for the next number to try
(:meth:`Attack.next_nir`), is told what an *allowed* lookup returned
(:meth:`Attack.feedback`), and paces itself (:meth:`Attack.next_time`).
When refused, it tries the same number again once ``retry_after`` has
passed (a script resumes the moment a lockout ends; an account locked until
an administrator unlocks it is lost to the attacker). A number refused
with "a reason is required" is dropped, except by ``break-glass``.

Strategies (``docs/replay.md`` has the table):

``enumeration``
    Each account walks order numbers 001, 002, ... within cohorts, computing
    the control key, largest cohorts first, and leaves a cohort after 10
    misses in a row; some of its cohorts are guesses where nobody is registered.
``list``
    A list of real numbers obtained elsewhere (a previous leak, half the
    registry) split between the accounts: no misses, no cohort structure.
``burst``
    The list, 40 lookups in a minute, then nothing until the next hour.
``spread``
    One enumeration shared by all the accounts: each takes the next order
    number of a common walk, at a pace under every per-account rate of the
    policy, so that one account sees about one person per cohort.
``spread-random``
    ``spread``, visiting each cohort's order numbers in a random order.
``spread-parallel``
    ``spread``, walking 8 cohorts at once, round robin.
``spread-rotating``
    ``spread`` in shifts: a third of the accounts works at a time, 8 hours
    each, three times faster while on shift.
``slow``
    The list, one person per cohort per account, at a pace just under every
    per-account rate of the policy (the policy is public).
``break-glass``
    The list at full speed, stating a reason on every lookup (``ETREAT``, or
    codes in turn): the guard ignores a reason a lookup does not need, so
    every new patient past a quota is a break-glass grant for as long as
    the budget lasts.
"""

from __future__ import annotations

import heapq
import math
import random
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from nirguard.replay.registry import Registry, cohort_residue, nir_from_cohort

__all__ = [
    "FAST",
    "STRATEGIES",
    "Attack",
    "AttackMaterial",
    "attack_material",
    "build_attack",
    "slow_interval",
]

STRATEGIES: Final = (
    "enumeration",
    "list",
    "burst",
    "spread",
    "spread-random",
    "spread-parallel",
    "spread-rotating",
    "slow",
    "break-glass",
)
#: The fast attacks of the targets: at most 510 identities in the week.
FAST: Final = tuple(s for s in STRATEGIES if s not in ("slow", "break-glass"))
#: What each strategy does, in one line (the demo's legend).
DESCRIPTIONS: Final = {
    "enumeration": "each account walks order numbers 001, 002, ... in the largest cohorts",
    "list": "a leaked list of real numbers, one lookup every 5 s per account",
    "burst": "the list, 40 lookups in a minute, then nothing until the next hour",
    "spread": "one walk shared by the 19 accounts, each under every per-account rate",
    "spread-random": "spread, each cohort's order numbers in a random order",
    "spread-parallel": "spread, 8 cohorts walked at once",
    "spread-rotating": "spread in 8-hour shifts, a third of the accounts at a time",
    "slow": "the list, one person per cohort per account, under every per-account rate",
    "break-glass": "the list, stating a reason on every lookup (break-glass)",
}

#: Seconds between two attempts of a fast script (per account).
FAST_INTERVAL: Final = 5.0
#: Misses in a row after which an enumerator leaves a cohort.
_GIVE_UP: Final = 10
#: Share of the enumerator's cohorts that are guesses where nobody is registered.
_EMPTY_GUESSES: Final = 0.1
#: When the attack starts, from the start of the attack week: Monday 01:00.
ATTACK_OFFSET: Final = 3_600.0
#: Accounts join a few minutes apart.
_STAGGER: Final = 240.0
#: Per-practitioner rates the paced scripts stay under.
_PACED_QUOTAS: Final = ("lookups", "distinct_patients")
_SLACK: Final = 1.02
_BURST: Final = 40
_BURST_GAP: Final = 1.5
_BURST_EVERY: Final = 3600.0
_PARALLEL: Final = 8
_SHIFTS: Final = 3
_REASONS: Final = ("ETREAT", "TREAT", "COC", "PATRQT")


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


class Attack:
    """The script of one strategy over its accounts.

    Attributes:
        name: the strategy.
        accounts: practitioner ids of the stolen accounts.
        start: time of each account's first attempt (seconds).
        interval: seconds between two attempts while the portal answers.
        reasons: whether the script states a reason when one is required.
    """

    reasons = False

    def __init__(
        self, name: str, accounts: list[str], interval: float, start: float, seed: int
    ) -> None:
        rng = random.Random(f"attack-start:{seed}")
        self.name = name
        self.accounts = accounts
        self.interval = interval
        self.start = [start + i * _STAGGER + rng.uniform(0, 60) for i in range(len(accounts))]

    def next_nir(self, account: int) -> str | None:
        """The next number account ``account`` tries; ``None`` when it has nothing left."""
        raise NotImplementedError

    def feedback(self, account: int, found: bool) -> None:
        """Result of an allowed lookup of the last number: someone was found or not."""

    def next_time(self, account: int, now: float) -> float:
        """When the account tries again after an answered attempt at ``now``."""
        return now + self.interval

    def reason(self, account: int, attempt: int) -> str | None:
        """The reason stated when one is required (``None``: the number is dropped)."""
        return None

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


#: A cohort to walk: prefix, key residue, cohort id in the registry (-1: nobody there).
_Target = tuple[str, int, int]


class _Walk:
    """A walk through the order numbers of a queue of cohorts, 001 upwards."""

    __slots__ = ("cohorts", "misses", "next_cohort", "order", "prefix", "residue")

    def __init__(self, cohorts: list[_Target]) -> None:
        self.cohorts = cohorts
        self.next_cohort = 0
        self.prefix = ""
        self.residue = 0
        self.order = 1000
        self.misses = 0

    def next(self) -> str | None:
        if self.order > 999 or self.misses >= _GIVE_UP:
            if self.next_cohort >= len(self.cohorts):
                return None
            self.prefix, self.residue, _ = self.cohorts[self.next_cohort]
            self.next_cohort += 1
            self.order = 1
            self.misses = 0
        order = self.order
        self.order = order + 1
        return nir_from_cohort(self.prefix, self.residue, order)

    def feedback(self, found: bool) -> None:
        self.misses = 0 if found else self.misses + 1


class _RandomWalk:
    """Each cohort's order numbers 1..R in a random order (R guessed from its size)."""

    __slots__ = ("cohorts", "next_cohort", "pending", "prefix", "residue", "rng", "tops")

    def __init__(self, cohorts: list[_Target], tops: list[int], rng: random.Random) -> None:
        self.cohorts = cohorts
        self.tops = tops
        self.rng = rng
        self.next_cohort = 0
        self.pending: list[int] = []
        self.prefix = ""
        self.residue = 0

    def next(self) -> str | None:
        while not self.pending:
            if self.next_cohort >= len(self.cohorts):
                return None
            self.prefix, self.residue, _ = self.cohorts[self.next_cohort]
            top = self.tops[self.next_cohort]
            self.next_cohort += 1
            self.pending = list(range(1, top + 1))
            self.rng.shuffle(self.pending)
        return nir_from_cohort(self.prefix, self.residue, self.pending.pop())

    def feedback(self, found: bool) -> None:
        pass


class _ParallelWalk:
    """Several sequential walks at once, taking turns."""

    __slots__ = ("last", "turn", "walks")

    def __init__(self, cohorts: list[_Target], width: int) -> None:
        self.walks = [_Walk(cohorts[i::width]) for i in range(width)]
        self.turn = 0
        self.last = 0

    def next(self) -> str | None:
        for _ in range(len(self.walks)):
            walk = self.walks[self.turn]
            self.last = self.turn
            self.turn = (self.turn + 1) % len(self.walks)
            number = walk.next()
            if number is not None:
                return number
        return None

    def feedback(self, found: bool) -> None:
        self.walks[self.last].feedback(found)


@dataclass(frozen=True)
class AttackMaterial:
    """What attackers know, built once per registry and seed.

    Attributes:
        queue: cohorts worth walking, largest first, mixed with empty guesses.
        tops: for each entry of ``queue``, the attacker's guess of its
            highest order number (from birth statistics).
        leak_step: the leaked list is person ``(leak_step * k + leak_shift) % people``
            for ``k < people // 2``: half the registry, in a scrambled order.
        leak_shift: see ``leak_step``.
        people: size of the registry.
    """

    queue: list[_Target]
    tops: list[int]
    leak_step: int
    leak_shift: int
    people: int

    def leaked(self, k: int) -> int:
        """The ``k``-th person id of the leaked list."""
        return (self.leak_step * k + self.leak_shift) % self.people

    @property
    def leak_size(self) -> int:
        """Length of the leaked list."""
        return self.people // 2


def attack_material(registry: Registry, seed: int = 0) -> AttackMaterial:
    """Build the cohort queue and the leaked list for ``registry``."""
    rng = random.Random(f"attack-material:{seed}")
    queue: list[_Target] = []
    tops: list[int] = []
    for c in registry.by_size():
        size = registry.size(c)
        if size < 5:
            break  # nobody walks a cohort of a few people
        prefix = registry.prefix(c)
        if rng.random() < _EMPTY_GUESSES:
            # Same place and year, another month: often nobody registered there.
            guess = f"{prefix[:3]}{rng.randint(1, 12):02d}{prefix[5:]}"
            if registry.cohort_index(guess) < 0:
                queue.append((guess, cohort_residue(guess), -1))
                tops.append(min(999, round(size * rng.uniform(1.0, 1.2))))
        queue.append((prefix, cohort_residue(prefix), c))
        tops.append(min(999, round(registry.top(c) * rng.uniform(1.0, 1.2))))
    people = len(registry)
    step = rng.randrange(people // 3, people - 1) | 1
    while math.gcd(step, people) != 1:
        step += 2
    return AttackMaterial(queue, tops, step, rng.randrange(people), people)


class _Enumeration(Attack):
    def __init__(self, material: AttackMaterial, accounts: list[str], start: float, seed: int):
        super().__init__("enumeration", accounts, FAST_INTERVAL, start, seed)
        n = len(accounts)
        self.queues = [material.queue[i::n] for i in range(n)]
        self.walks = [_Walk(q) for q in self.queues]

    def next_nir(self, account: int) -> str | None:
        return self.walks[account].next()

    def feedback(self, account: int, found: bool) -> None:
        self.walks[account].feedback(found)

    def unguarded(self, registry: Registry, end: float) -> tuple[array[float], list[int], int]:
        """Same walk as :meth:`next_nir`, computed from the registry's order numbers
        (accounts walk different cohorts, so nobody is found twice)."""
        exposed = array("d")
        found = [0] * len(self.accounts)
        attempts = 0
        interval = self.interval
        for i, queue in enumerate(self.queues):
            start = self.start[i]
            limit = int((end - start) / interval - 1e-9) + 1 if end > start else 0
            pos = 0  # attempts made by this account
            for _, _, cohort in queue:
                if pos >= limit:
                    break
                prev = 0
                if cohort >= 0:
                    for order in registry.orders(cohort):
                        gap = order - prev - 1
                        if gap >= _GIVE_UP:
                            break
                        pos += gap
                        if pos >= limit:
                            break
                        found[i] += 1
                        exposed.append(start + pos * interval)
                        pos += 1
                        prev = order
                pos += min(_GIVE_UP, 999 - prev)
            attempts += min(pos, limit)
        return exposed, found, attempts


class _Shared(Attack):
    """One walk shared by every account (``spread`` and its variants)."""

    def __init__(
        self,
        name: str,
        walk: _Walk | _RandomWalk | _ParallelWalk,
        accounts: list[str],
        interval: float,
        start: float,
        seed: int,
    ) -> None:
        super().__init__(name, accounts, interval, start, seed)
        self.walk = walk

    def next_nir(self, account: int) -> str | None:
        return self.walk.next()

    def feedback(self, account: int, found: bool) -> None:
        self.walk.feedback(found)


class _Rotating(_Shared):
    """Shifts of 8 hours: account ``i`` works in shift ``i % 3``, three times as fast."""

    def __init__(
        self, walk: _Walk, accounts: list[str], interval: float, start: float, seed: int
    ) -> None:
        super().__init__("spread-rotating", walk, accounts, interval / _SHIFTS, start, seed)
        self.start = [self._on_shift(i, t) for i, t in enumerate(self.start)]

    def _on_shift(self, account: int, t: float) -> float:
        length = 86_400.0 / _SHIFTS
        shift = account % _SHIFTS
        day = math.floor(t / 86_400.0)
        begin = day * 86_400.0 + shift * length
        if t < begin:
            return begin
        if t < begin + length:
            return t
        return begin + 86_400.0

    def next_time(self, account: int, now: float) -> float:
        return self._on_shift(account, now + self.interval)


class _List(Attack):
    def __init__(
        self,
        name: str,
        registry: Registry,
        material: AttackMaterial,
        accounts: list[str],
        interval: float,
        start: float,
        seed: int,
        *,
        distinct_cohorts: bool = False,
    ) -> None:
        super().__init__(name, accounts, interval, start, seed)
        n = len(accounts)
        self.material = material
        self.registry = registry
        self.cursor = list(range(n))  # account i takes leaked entries i, i + n, i + 2n, ...
        self.step = n
        self.used: list[set[int]] | None = [set() for _ in range(n)] if distinct_cohorts else None

    def next_nir(self, account: int) -> str | None:
        material, registry = self.material, self.registry
        while True:
            k = self.cursor[account]
            if k >= material.leak_size:
                return None
            self.cursor[account] = k + self.step
            person = material.leaked(k)
            cohort = registry.cohort_of(person)
            if self.used is not None:  # never two people of one cohort on one account
                if cohort in self.used[account]:
                    continue
                self.used[account].add(cohort)
            return registry.nir(person, cohort)

    def unguarded(self, registry: Registry, end: float) -> tuple[array[float], list[int], int]:
        if self.used is not None or type(self).next_time is not Attack.next_time:
            return super().unguarded(registry, end)
        # Every attempt finds someone new: the k-th attempt of account i is entry i + k * n.
        exposed = array("d")
        found = [0] * len(self.accounts)
        material = self.material
        for i, start in enumerate(self.start):
            if end <= start:
                continue
            count = int((end - start) / self.interval - 1e-9) + 1
            count = min(count, len(range(i, material.leak_size, self.step)))
            found[i] = count
            exposed.extend(start + j * self.interval for j in range(count))
        return exposed, found, sum(found)


class _Burst(_List):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.in_burst = [0] * len(self.accounts)
        self.burst_start = list(self.start)

    def next_time(self, account: int, now: float) -> float:
        self.in_burst[account] += 1
        if self.in_burst[account] < _BURST:
            return now + _BURST_GAP
        self.in_burst[account] = 0
        start = self.burst_start[account] + _BURST_EVERY
        while start <= now:
            start += _BURST_EVERY
        self.burst_start[account] = start
        return start


class _BreakGlass(_List):
    reasons = True

    def reason(self, account: int, attempt: int) -> str | None:
        if account % 2 == 0:
            return "ETREAT"
        return _REASONS[attempt % len(_REASONS)]


def build_attack(
    strategy: str,
    registry: Registry,
    *,
    accounts: int = 19,
    policy: Mapping[str, object] | None = None,
    seed: int = 0,
    material: AttackMaterial | None = None,
    start: float = ATTACK_OFFSET,
) -> Attack:
    """Build the script of ``strategy`` for ``accounts`` stolen accounts.

    Args:
        strategy: one of :data:`STRATEGIES`.
        registry: the people the portal holds.
        accounts: number of stolen accounts.
        policy: quota name -> rate string; sets the pace of the paced scripts.
        seed: random seed.
        material: from :func:`attack_material` (built here when ``None``).
        start: time of the first attempt (seconds from the replay's day 0).

    Raises:
        ValueError: unknown strategy, or fewer than one account.
    """
    if accounts < 1:
        raise ValueError("an attack needs at least one account")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    material = material or attack_material(registry, seed)
    ids = [f"stolen-{i:02d}" for i in range(accounts)]
    paced = slow_interval(policy or {})
    rng = random.Random(f"attack:{strategy}:{seed}")
    if strategy == "enumeration":
        return _Enumeration(material, ids, start, seed)
    if strategy == "spread":
        return _Shared(strategy, _Walk(material.queue), ids, paced, start, seed)
    if strategy == "spread-random":
        walk = _RandomWalk(material.queue, material.tops, rng)
        return _Shared(strategy, walk, ids, paced, start, seed)
    if strategy == "spread-parallel":
        return _Shared(strategy, _ParallelWalk(material.queue, _PARALLEL), ids, paced, start, seed)
    if strategy == "spread-rotating":
        return _Rotating(_Walk(material.queue), ids, paced, start, seed)
    if strategy == "list":
        return _List(strategy, registry, material, ids, FAST_INTERVAL, start, seed)
    if strategy == "burst":
        return _Burst(strategy, registry, material, ids, _BURST_GAP, start, seed)
    if strategy == "slow":
        return _List(strategy, registry, material, ids, paced, start, seed, distinct_cohorts=True)
    return _BreakGlass(strategy, registry, material, ids, FAST_INTERVAL, start, seed)
