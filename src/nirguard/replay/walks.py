"""What attackers know and how they walk it: the cohort queue, the leaked list, walks.

An enumerator holds a cohort (the first 10 characters of a NIR) fixed and
walks its order numbers, computing the control key. The attackers' material
(:func:`attack_material`) is built once per registry and seed: the cohorts
worth walking, largest first, mixed with guesses where nobody is registered,
and a leaked list of half the registry in a scrambled order.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final, Protocol

from nirguard.replay.registry import Registry, cohort_residue, nir_from_cohort

__all__ = [
    "GIVE_UP",
    "AttackMaterial",
    "NumberSource",
    "ParallelWalk",
    "RandomWalk",
    "Target",
    "Walk",
    "attack_material",
]

#: Misses in a row after which an enumerator leaves a cohort.
GIVE_UP: Final = 10
#: Share of the enumerator's cohorts that are guesses where nobody is registered.
_EMPTY_GUESSES: Final = 0.1

#: A cohort to walk: prefix, key residue, cohort id in the registry (-1: nobody there).
Target = tuple[str, int, int]


class NumberSource(Protocol):
    """Numbers to try, one after the other, told whether each found someone."""

    def next(self) -> str | None:
        """The next number; ``None`` when there is none left."""

    def feedback(self, found: bool) -> None:
        """Whether the last number found someone."""


class Walk:
    """A walk through the order numbers of a queue of cohorts, 001 upwards."""

    __slots__ = ("cohorts", "misses", "next_cohort", "order", "prefix", "residue")

    def __init__(self, cohorts: list[Target]) -> None:
        self.cohorts = cohorts
        self.next_cohort = 0
        self.prefix = ""
        self.residue = 0
        self.order = 1000
        self.misses = 0

    def next(self) -> str | None:
        """The next order number (the next cohort after 999 or :data:`GIVE_UP` misses)."""
        if self.order > 999 or self.misses >= GIVE_UP:
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
        """Count misses in a row."""
        self.misses = 0 if found else self.misses + 1


class RandomWalk:
    """Each cohort's order numbers 1..R in a random order (R guessed from its size)."""

    __slots__ = ("cohorts", "next_cohort", "pending", "prefix", "residue", "rng", "tops")

    def __init__(self, cohorts: list[Target], tops: list[int], rng: random.Random) -> None:
        self.cohorts = cohorts
        self.tops = tops
        self.rng = rng
        self.next_cohort = 0
        self.pending: list[int] = []
        self.prefix = ""
        self.residue = 0

    def next(self) -> str | None:
        """The next number of the shuffled cohort."""
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
        """A random walk does not care."""


class ParallelWalk:
    """Several sequential walks at once, taking turns (``width`` cohorts walked at once)."""

    __slots__ = ("last", "turn", "walks")

    def __init__(self, cohorts: list[Target], width: int) -> None:
        self.walks = [Walk(cohorts[i::width]) for i in range(width)]
        self.turn = 0
        self.last = 0

    def next(self) -> str | None:
        """The next number of the next walk that has one."""
        for _ in range(len(self.walks)):
            walk = self.walks[self.turn]
            self.last = self.turn
            self.turn = (self.turn + 1) % len(self.walks)
            number = walk.next()
            if number is not None:
                return number
        return None

    def feedback(self, found: bool) -> None:
        """Feedback to the walk that gave the last number."""
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

    queue: list[Target]
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
    queue: list[Target] = []
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
