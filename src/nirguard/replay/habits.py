"""How each kind of legitimate account looks patients up, one day at a time.

:class:`Day` collects the lookups of a day; each account's habits
(:class:`GP`, :class:`NewGP`, :class:`Hospital`, :class:`Pharmacy`) add
theirs: when (a consultation schedule, a desk's hours), how many, and whom
(a patient list drawn lazily from the registry, people off the list, twins).
About 2% of typed numbers carry a typo (:func:`typo`), typed again 10-60 s
later; about 0.3% of lookups are valid numbers of people the portal does
not know. :mod:`~nirguard.replay.practitioners` has the figures.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from nirguard import nir
from nirguard.replay.registry import Registry, poisson

__all__ = [
    "DAY",
    "HOUR",
    "LOOKUP",
    "TYPO",
    "UNKNOWN",
    "Account",
    "Day",
    "GP",
    "Hospital",
    "NewGP",
    "Patients",
    "Pharmacy",
    "Raw",
    "typo",
]

DAY: Final = 86_400.0
HOUR: Final = 3_600.0
#: Event kinds.
LOOKUP: Final = 0  # a valid number of someone in the registry
TYPO: Final = 1  # a mistyped (invalid) number
UNKNOWN: Final = 2  # a valid number of someone the portal does not know

_TYPO_RATE: Final = 0.02
_UNKNOWN_RATE: Final = 0.003
_OFF_LIST_RATE: Final = 0.20
_TWIN_RATE: Final = 0.02
#: Share of a GP's lookups made outside the consultation schedule.
_PAPERWORK: Final = 0.15
_LOCAL: Final = 0.55


def typo(number: str, rng: random.Random) -> str:
    """A single-digit substitution or a swap of two adjacent different digits.

    The result always fails validation (the mod-97 key catches both).
    """
    for _ in range(100):
        chars = list(number)
        digits = [i for i, c in enumerate(chars) if c.isdigit() and not (i == 5 and chars[6] > "9")]
        if rng.random() < 0.7:
            i = rng.choice(digits)
            chars[i] = rng.choice([d for d in "0123456789" if d != chars[i]])
        else:
            pairs = [i for i in digits if i + 1 in digits and chars[i] != chars[i + 1]]
            if not pairs:
                continue
            i = rng.choice(pairs)
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        typed = "".join(chars)
        if not nir.is_valid(typed):
            return typed
    return number[:14]  # pragma: no cover - a truncated number as a last resort


class Patients:
    """A patient list, materialised lazily as its slots are drawn."""

    __slots__ = ("area", "local", "registry", "rng", "size", "slots", "twin")

    def __init__(
        self, registry: Registry, area: str, size: int, local: float, rng: random.Random
    ) -> None:
        self.registry = registry
        self.area = area
        self.size = size
        self.local = local
        self.rng = rng
        self.slots: dict[int, int] = {}
        self.twin: dict[int, int] = {}

    def draw_person(self) -> int:
        if self.rng.random() < self.local:
            return self.registry.draw(self.rng, self.area)
        return self.registry.draw(self.rng)  # anyone, born abroad included

    def person(self, slot: int) -> int:
        found = self.slots.get(slot)
        if found is not None:
            return found
        person = self.draw_person()
        self.slots[slot] = person
        if self.rng.random() < _TWIN_RATE:
            registry = self.registry
            cohort = registry.cohort_of(person)
            if registry.size(cohort) > 1:
                end = registry.start(cohort + 1)
                self.twin[slot] = person + 1 if person + 1 < end else person - 1
        return person


#: ``(time, account, person, kind, typed number or "")``
Raw = tuple[float, int, int, int, str]


@dataclass
class Day:
    """Lookups of one day being built."""

    registry: Registry
    rng: random.Random
    events: list[Raw]
    day: int

    def unknown_number(self) -> str:
        """A valid number of someone the registry does not hold."""
        registry, rng = self.registry, self.rng
        while True:
            cohort = rng.randrange(registry.cohorts)
            order = registry.top(cohort) + rng.randint(1, 30)
            if order <= 999:
                return registry.nir_from_order(cohort, order)

    def emit(self, t: float, who: int, person: int) -> None:
        """One lookup (with its typo and retyping, or as an unknown number)."""
        rng = self.rng
        if rng.random() < _UNKNOWN_RATE:
            self.events.append((t, who, -1, UNKNOWN, self.unknown_number()))
            return
        if rng.random() < _TYPO_RATE:
            self.events.append((t, who, -1, TYPO, typo(self.registry.nir(person), rng)))
            t += rng.uniform(10.0, 60.0)
        self.events.append((t, who, person, LOOKUP, ""))

    def times(self, count: int, blocks: tuple[tuple[float, float, float], ...]) -> list[float]:
        """``count`` sorted times in weighted blocks ``(weight, start h, end h)``."""
        rng = self.rng
        total = sum(b[0] for b in blocks)
        out = []
        base = self.day * DAY
        for _ in range(count):
            x = rng.random() * total
            chosen = blocks[-1]
            for block in blocks:
                if x < block[0]:
                    chosen = block
                    break
                x -= block[0]
            out.append(base + rng.uniform(chosen[1], chosen[2]) * HOUR)
        out.sort()
        return out

    def consultations(
        self, count: int, blocks: tuple[tuple[float, float, float], ...]
    ) -> list[float]:
        """Like :meth:`times`, but most lookups follow a consultation schedule
        (evenly spaced slots with some jitter); the rest (paperwork, calls
        back) fall anywhere in the block."""
        rng = self.rng
        placed = self.times(count, blocks)
        base = self.day * DAY
        out: list[float] = []
        for _, start, end in blocks:
            inside = [t for t in placed if start * HOUR <= t - base < end * HOUR]
            slots = [t for t in inside if rng.random() >= _PAPERWORK]
            if slots:
                step = (end - start) * HOUR / len(slots)
                first = base + start * HOUR
                out.extend(first + (k + rng.uniform(0.1, 0.9)) * step for k in range(len(slots)))
            kept = set(slots)
            out.extend(t for t in inside if t not in kept)
        out.sort()
        return out


_CONSULTATION: Final = ((0.45, 8.5, 12.5), (0.55, 14.0, 19.5))
_SATURDAY: Final = ((1.0, 8.5, 12.5),)
_HOSPITAL: Final = ((0.04, 0.0, 7.0), (0.80, 7.0, 20.0), (0.16, 20.0, 24.0))
_PHARMACY: Final = ((0.4, 9.0, 12.5), (0.6, 14.0, 19.5))


class Account:
    """One account's habits; :meth:`day` adds its lookups of a day."""

    def __init__(self, registry: Registry, rng: random.Random, who: int, area: str) -> None:
        self.registry = registry
        self.who = who
        self.area = area

    def day(self, d: Day) -> None:
        raise NotImplementedError


class GP(Account):
    def __init__(self, registry: Registry, rng: random.Random, who: int, area: str) -> None:
        super().__init__(registry, rng, who, area)
        self.patients = Patients(registry, area, rng.randint(1000, 2000), _LOCAL, rng)
        self.rate = min(60.0, 25.0 * math.exp(rng.gauss(-0.045, 0.3)))
        self.saturday = rng.random() < 0.3
        self.skew = rng.uniform(1.6, 2.4)

    def works(self, day: int) -> bool:
        weekday = day % 7
        return weekday < 5 or (weekday == 5 and self.saturday)

    def volume(self, d: Day) -> int:
        rng = d.rng
        weekday = d.day % 7
        factor = math.exp(rng.gauss(0.0, 0.2))
        if weekday == 0:
            factor *= 1.2
        if weekday == 5:
            factor *= 0.4
        if rng.random() < 0.03:
            factor *= 1.6  # a busy day: an epidemic, covering for a colleague
        return poisson(rng, self.rate * factor, normal_above=30.0)

    def day(self, d: Day) -> None:
        if not self.works(d.day):
            return
        rng = d.rng
        patients = self.patients
        blocks = _SATURDAY if d.day % 7 == 5 else _CONSULTATION
        for t in d.consultations(self.volume(d), blocks):
            if rng.random() < _OFF_LIST_RATE:
                d.emit(t, self.who, patients.draw_person())
                continue
            slot = int(patients.size * rng.random() ** self.skew)
            d.emit(t, self.who, patients.person(slot))
            twin = patients.twin.get(slot)
            if twin is not None and rng.random() < 0.5:
                d.emit(t + rng.uniform(20.0, 90.0), self.who, twin)


class NewGP(GP):
    """A locum (a new practice every one or two weeks) or a GP opening a practice."""

    def __init__(
        self, registry: Registry, rng: random.Random, who: int, area: str, days: int
    ) -> None:
        super().__init__(registry, rng, who, area)
        self.rng = rng
        self.locum = rng.random() < 0.5
        self.active: set[int] = set()
        self.firsts: set[int] = set()  # days a new practice starts
        if self.locum:  # stints of one or two working weeks, a new practice each time
            day = rng.randrange(7)
            while day < days:
                length, worked = rng.choice((5, 5, 10)), 0
                while worked < length and day < days:
                    if day % 7 < 5:
                        if worked == 0:
                            self.firsts.add(day)
                        self.active.add(day)
                        worked += 1
                    day += 1
                day += rng.randint(2, 9)
        else:  # opens a practice on a random day and stays
            start = rng.randrange(days)
            self.active.update(range(start, days))
            self.firsts.add(start)
        self.patients = self._practice()

    def _practice(self) -> Patients:
        area = self.area if not self.locum else self.registry.draw_area(self.rng)
        return Patients(self.registry, area, self.rng.randint(1000, 2000), _LOCAL, self.rng)

    def works(self, day: int) -> bool:
        return day in self.active and (day % 7 < 5 or (day % 7 == 5 and self.saturday))

    def day(self, d: Day) -> None:
        if d.day in self.firsts:
            self.patients = self._practice()
        super().day(d)


class Hospital(Account):
    def __init__(self, registry: Registry, rng: random.Random, who: int, area: str) -> None:
        super().__init__(registry, rng, who, area)
        self.patients = Patients(registry, area, 10**9, 0.7, rng)
        self.rate = 250.0 * math.exp(rng.gauss(0.0, 0.3))
        self.recent: list[int] = []

    def day(self, d: Day) -> None:
        rng = d.rng
        factor = math.exp(rng.gauss(0.0, 0.15)) * (0.7 if d.day % 7 >= 5 else 1.0)
        recent = self.recent
        for t in d.times(poisson(rng, self.rate * factor, normal_above=30.0), _HOSPITAL):
            if recent and rng.random() < 0.1:
                person = recent[rng.randrange(len(recent))]
            else:
                person = self.patients.draw_person()
                recent.append(person)
                if len(recent) > 3000:
                    del recent[:1000]
            d.emit(t, self.who, person)


class Pharmacy(Account):
    def __init__(self, registry: Registry, rng: random.Random, who: int, area: str) -> None:
        super().__init__(registry, rng, who, area)
        self.patients = Patients(registry, area, rng.randint(2000, 4000), 0.6, rng)
        self.rate = 120.0 * math.exp(rng.gauss(0.0, 0.3))

    def day(self, d: Day) -> None:
        if d.day % 7 == 6:
            return
        rng = d.rng
        factor = math.exp(rng.gauss(0.0, 0.2))
        for t in d.times(poisson(rng, self.rate * factor, normal_above=30.0), _PHARMACY):
            slot = int(self.patients.size * rng.random() ** 1.5)
            d.emit(t, self.who, self.patients.person(slot))
