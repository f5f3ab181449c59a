"""Compromised accounts and the scripts they run.

Every strategy drives a fixed number of stolen practitioner accounts. A
script asks for the next number to try (:meth:`Attack.next_nir`), is told
what an *allowed* lookup returned (:meth:`Attack.feedback`), and paces
itself: one attempt every :attr:`Attack.interval` seconds while the portal
answers, and when refused, the same number again once ``retry_after`` has
passed (a script resumes the moment a lockout ends; an account locked until
an administrator unlocks it is lost to the attacker).

Strategies:

``enumeration``
    Each account walks order numbers 001, 002, ... within cohorts (the first
    10 characters held fixed: sex, year and month of birth, place of birth),
    computing the control key, and moves to the next cohort after 10 misses
    in a row. It favours the large cohorts of maternity towns, and some of
    its guesses are cohorts where nobody is registered: many misses.
``list``
    A list of real numbers obtained elsewhere (a previous leak, half the
    registry) split between the accounts: no misses, no cohort structure.
``slow``
    Slow and low: numbers from the leaked list, one account never looks up
    two people of one cohort, at a pace just under every rate the policy
    sets for one practitioner (the policy is public, so the attacker has read
    it).
``spread``
    One enumeration shared by all the accounts: each takes the next order
    number of a common walk, so that one account sees about one person per
    cohort, each at the slow pace.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from nirguard.replay.registry import Registry, cohort_residue, nir_from_cohort

__all__ = [
    "STRATEGIES",
    "Attack",
    "AttackMaterial",
    "attack_material",
    "build_attack",
    "slow_interval",
]

STRATEGIES: Final = ("enumeration", "list", "slow", "spread")

#: Seconds between two attempts of a fast script (per account).
FAST_INTERVAL: Final = 5.0
#: Misses in a row after which an enumerator leaves a cohort.
_GIVE_UP: Final = 10
#: Share of the enumerator's cohorts that are guesses where nobody is registered.
_EMPTY_GUESSES: Final = 0.1
#: Smallest cohort an enumerator bothers to walk (it knows the maternity towns).
_MIN_COHORT: Final = 1
#: When the attack starts: Monday 01:00, accounts joining a few minutes apart.
ATTACK_START: Final = 3_600.0
_STAGGER: Final = 240.0
#: Per-practitioner rates the slow script stays under.
_PACED_QUOTAS: Final = ("lookups", "distinct_patients")
_SLACK: Final = 1.02


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
    """

    def __init__(self, name: str, accounts: list[str], interval: float, seed: int) -> None:
        rng = random.Random(f"attack-start:{seed}")
        self.name = name
        self.accounts = accounts
        self.interval = interval
        self.start = [
            ATTACK_START + i * _STAGGER + rng.uniform(0, 60) for i in range(len(accounts))
        ]

    def next_nir(self, account: int) -> str | None:
        """The next number account ``account`` tries; ``None`` when it has nothing left."""
        raise NotImplementedError

    def feedback(self, account: int, found: bool) -> None:
        """Result of an allowed lookup of the last number: someone was found or not."""

    def unguarded(self, registry: Registry, end: float) -> tuple[dict[int, float], list[int], int]:
        """Run the script with nothing refused until ``end``.

        Returns:
            person id -> time first exposed, people found per account, attempts.
        """
        index = registry.index
        exposed: dict[int, float] = {}
        found = [0] * len(self.accounts)
        attempts = 0
        interval = self.interval
        heap = [(t, i, 0) for i, t in enumerate(self.start)]
        heapq.heapify(heap)
        while heap:
            t, i, j = heap[0]
            if t >= end:
                break
            number = self.next_nir(i)
            if number is None:
                heapq.heappop(heap)
                continue
            attempts += 1
            person = index.get(number)
            if person is not None:
                found[i] += 1
                if person not in exposed:
                    exposed[person] = t
            self.feedback(i, person is not None)
            heapq.heapreplace(heap, (self.start[i] + (j + 1) * interval, i, j + 1))
        return exposed, found, attempts


#: A cohort to walk: prefix, key residue, cohort id in the registry (-1: nobody there).
_Target = tuple[str, int, int]


class _Walk:
    """A walk through order numbers of a queue of cohorts."""

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


@dataclass(frozen=True)
class AttackMaterial:
    """What attackers know, built once per registry and seed.

    Attributes:
        queue: cohorts worth walking, big ones first, mixed with empty guesses.
        leak: person ids of a previous leak (half the registry), in leak order.
    """

    queue: list[_Target]
    leak: list[int]


def attack_material(registry: Registry, seed: int = 0) -> AttackMaterial:
    """Build the cohort queue and the leaked list for ``registry``."""
    rng = random.Random(f"attack-material:{seed}")
    starts = registry.cohort_start
    chosen = [c for c in range(registry.cohorts) if starts[c + 1] - starts[c] >= _MIN_COHORT]
    rng.shuffle(chosen)
    chosen.sort(key=lambda c: (starts[c] - starts[c + 1]) // 10)  # big first, shuffled in bands
    known = set(registry.cohort_prefix)
    prefixes, residues = registry.cohort_prefix, registry.cohort_residue
    queue: list[_Target] = []
    for c in chosen:
        if rng.random() < _EMPTY_GUESSES:
            # Same place and year, another month: often nobody registered there.
            guess = f"{prefixes[c][:3]}{rng.randint(1, 12):02d}{prefixes[c][5:]}"
            if guess not in known:
                queue.append((guess, cohort_residue(guess), -1))
        queue.append((prefixes[c], residues[c], c))
    leak = rng.sample(range(len(registry)), len(registry) // 2)
    return AttackMaterial(queue, leak)


class _Enumeration(Attack):
    def __init__(self, material: AttackMaterial, accounts: list[str], interval: float, seed: int):
        super().__init__("enumeration", accounts, interval, seed)
        n = len(accounts)
        self.queues = [material.queue[i::n] for i in range(n)]
        self.walks = [_Walk(q) for q in self.queues]

    def next_nir(self, account: int) -> str | None:
        return self.walks[account].next()

    def feedback(self, account: int, found: bool) -> None:
        self.walks[account].feedback(found)

    def unguarded(self, registry: Registry, end: float) -> tuple[dict[int, float], list[int], int]:
        """Same walk as :meth:`next_nir`, computed from the registry's order numbers."""
        exposed: dict[int, float] = {}
        found = [0] * len(self.accounts)
        attempts = 0
        nirs, starts, interval = registry.nirs, registry.cohort_start, self.interval
        for i, queue in enumerate(self.queues):
            start = self.start[i]
            limit = int((end - start) / interval - 1e-9) + 1 if end > start else 0
            pos = 0  # attempts made by this account
            for _, _, cohort in queue:
                if pos >= limit:
                    break
                prev = 0
                if cohort >= 0:
                    for person in range(starts[cohort], starts[cohort + 1]):
                        order = int(nirs[person][10:13])
                        gap = order - prev - 1
                        if gap >= _GIVE_UP:
                            break
                        pos += gap
                        if pos >= limit:
                            break
                        found[i] += 1
                        if person not in exposed:
                            exposed[person] = start + pos * interval
                        pos += 1
                        prev = order
                pos += min(_GIVE_UP, 999 - prev)
            attempts += min(pos, limit)
        return exposed, found, attempts


class _Spread(Attack):
    def __init__(self, material: AttackMaterial, accounts: list[str], interval: float, seed: int):
        super().__init__("spread", accounts, interval, seed)
        self.walk = _Walk(material.queue)

    def next_nir(self, account: int) -> str | None:
        return self.walk.next()

    def feedback(self, account: int, found: bool) -> None:
        self.walk.feedback(found)


class _List(Attack):
    def __init__(
        self,
        name: str,
        registry: Registry,
        material: AttackMaterial,
        accounts: list[str],
        interval: float,
        seed: int,
        *,
        distinct_cohorts: bool,
        capacity: int,
    ) -> None:
        super().__init__(name, accounts, interval, seed)
        n = len(accounts)
        self.lists: list[list[int]] = []
        for i in range(n):
            part = material.leak[i::n]
            if distinct_cohorts:  # never two people of one cohort on one account
                seen: set[str] = set()
                kept = []
                for person in part:
                    prefix = registry.nirs[person][:10]
                    if prefix not in seen:
                        seen.add(prefix)
                        kept.append(person)
                        if len(kept) >= capacity:
                            break
                part = kept
            self.lists.append(part)
        self.nirs = registry.nirs
        self.cursor = [0] * n

    def next_nir(self, account: int) -> str | None:
        todo, at = self.lists[account], self.cursor[account]
        if at >= len(todo):
            return None
        self.cursor[account] = at + 1
        return self.nirs[todo[at]]


def build_attack(
    strategy: str,
    registry: Registry,
    *,
    accounts: int = 19,
    policy: Mapping[str, object] | None = None,
    seed: int = 0,
    material: AttackMaterial | None = None,
    horizon: float = 7 * 86_400.0,
) -> Attack:
    """Build the script of ``strategy`` for ``accounts`` stolen accounts.

    Args:
        strategy: one of :data:`STRATEGIES`.
        registry: the people the portal holds.
        accounts: number of stolen accounts.
        policy: quota name -> rate string; sets the pace of ``slow`` and ``spread``.
        seed: random seed.
        material: from :func:`attack_material` (built here when ``None``).
        horizon: seconds the attack may last (bounds the slow script's list).

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
    if strategy == "enumeration":
        return _Enumeration(material, ids, FAST_INTERVAL, seed)
    if strategy == "spread":
        return _Spread(material, ids, paced, seed)
    capacity = int(horizon / paced) + 2
    if strategy == "list":
        return _List(
            "list",
            registry,
            material,
            ids,
            FAST_INTERVAL,
            seed,
            distinct_cohorts=False,
            capacity=capacity,
        )
    if strategy == "slow":
        return _List(
            "slow", registry, material, ids, paced, seed, distinct_cohorts=True, capacity=capacity
        )
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
