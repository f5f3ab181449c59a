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

import random
from collections.abc import Mapping
from typing import Final

from nirguard.replay.registry import Registry, cohort_residue, nir_from_cohort
from nirguard.testing import NIRGenerator

__all__ = ["STRATEGIES", "Attack", "build_attack", "slow_interval"]

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


class _Walk:
    """A walk through order numbers of a queue of cohorts."""

    __slots__ = ("cohorts", "misses", "next_cohort", "order", "prefix", "residue")

    def __init__(self, cohorts: list[tuple[str, int]]) -> None:
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
            self.prefix, self.residue = self.cohorts[self.next_cohort]
            self.next_cohort += 1
            self.order = 1
            self.misses = 0
        order = self.order
        self.order = order + 1
        return nir_from_cohort(self.prefix, self.residue, order)

    def feedback(self, found: bool) -> None:
        self.misses = 0 if found else self.misses + 1


def _cohort_queue(registry: Registry, rng: random.Random) -> list[tuple[str, int]]:
    """Cohorts worth walking, big ones first, mixed with empty guesses."""
    sizes = [(registry.cohort_size(c), c) for c in range(registry.cohorts)]
    chosen = [c for n, c in sizes if n >= _MIN_COHORT]
    rng.shuffle(chosen)
    chosen.sort(
        key=lambda c: -registry.cohort_size(c) // 10
    )  # biggest first, shuffled within bands
    known = set(registry.cohort_prefix)
    gen = NIRGenerator(rng.randrange(2**32))
    queue: list[tuple[str, int]] = []
    for c in chosen:
        if rng.random() < _EMPTY_GUESSES:
            guess = gen.generate()[:10]
            if guess not in known:
                queue.append((guess, cohort_residue(guess)))
        queue.append((registry.cohort_prefix[c], registry.cohort_residue[c]))
    return queue


class _Enumeration(Attack):
    def __init__(self, registry: Registry, accounts: list[str], interval: float, seed: int) -> None:
        super().__init__("enumeration", accounts, interval, seed)
        queue = _cohort_queue(registry, random.Random(f"enumeration:{seed}"))
        n = len(accounts)
        self.walks = [_Walk(queue[i::n]) for i in range(n)]

    def next_nir(self, account: int) -> str | None:
        return self.walks[account].next()

    def feedback(self, account: int, found: bool) -> None:
        self.walks[account].feedback(found)


class _Spread(Attack):
    def __init__(self, registry: Registry, accounts: list[str], interval: float, seed: int) -> None:
        super().__init__("spread", accounts, interval, seed)
        self.walk = _Walk(_cohort_queue(registry, random.Random(f"spread:{seed}")))

    def next_nir(self, account: int) -> str | None:
        return self.walk.next()

    def feedback(self, account: int, found: bool) -> None:
        self.walk.feedback(found)


class _List(Attack):
    def __init__(
        self,
        name: str,
        registry: Registry,
        accounts: list[str],
        interval: float,
        seed: int,
        *,
        distinct_cohorts: bool,
    ) -> None:
        super().__init__(name, accounts, interval, seed)
        rng = random.Random(f"leak:{seed}")
        leak = rng.sample(range(len(registry)), len(registry) // 2)
        n = len(accounts)
        self.lists: list[list[str]] = []
        for i in range(n):
            part = leak[i::n]
            if distinct_cohorts:  # never two people of one cohort on one account
                seen: set[str] = set()
                kept = []
                for person in part:
                    prefix = registry.nirs[person][:10]
                    if prefix not in seen:
                        seen.add(prefix)
                        kept.append(person)
                part = kept
            part.reverse()
            self.lists.append([registry.nirs[p] for p in part])

    def next_nir(self, account: int) -> str | None:
        todo = self.lists[account]
        return todo.pop() if todo else None


def build_attack(
    strategy: str,
    registry: Registry,
    *,
    accounts: int = 19,
    policy: Mapping[str, object] | None = None,
    seed: int = 0,
) -> Attack:
    """Build the script of ``strategy`` for ``accounts`` stolen accounts.

    ``policy`` (quota name -> rate string) sets the pace of ``slow`` and
    ``spread``.

    Raises:
        ValueError: unknown strategy, or fewer than one account.
    """
    if accounts < 1:
        raise ValueError("an attack needs at least one account")
    ids = [f"stolen-{i:02d}" for i in range(accounts)]
    paced = slow_interval(policy or {})
    if strategy == "enumeration":
        return _Enumeration(registry, ids, FAST_INTERVAL, seed)
    if strategy == "list":
        return _List("list", registry, ids, FAST_INTERVAL, seed, distinct_cohorts=False)
    if strategy == "slow":
        return _List("slow", registry, ids, paced, seed, distinct_cohorts=True)
    if strategy == "spread":
        return _Spread(registry, ids, paced, seed)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
