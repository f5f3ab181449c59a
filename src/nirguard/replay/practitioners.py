"""Legitimate practitioners: weeks of lookups made while caring for patients.

Four kinds of accounts (``docs/replay.md`` has the figures and where they come from):

* ``gp``: general practitioners, about 25 lookups a working day (a
  log-normal spread between practitioners, busier Mondays, now and then a
  busy day at 1.6 times the usual volume), on a consultation schedule
  (plus 15% paperwork at any time of the session), Monday to Friday and for
  some a Saturday morning. Each GP has a patient list of 1,000-2,000
  people, 55% born in the GP's region (see the registry) and the rest anywhere,
  born abroad included; 80% of lookups
  are people of the list, favouring a core of frequent patients (so
  patients come back within the week), the rest people off the list;
  twins are looked up together.
* ``new_gp``: a GP whose patients are all new to them: a locum covering a
  practice for one or two weeks at a time (a new practice each time), or a
  GP who opens a practice during the replay. Same volume and schedule.
* ``hospital``: admission desks, around the clock, about 250 lookups a
  day, nearly all distinct people from the area.
* ``pharmacy``: Monday to Saturday, about 120 lookups a day among a
  clientele of 2,000-4,000 regulars.

About 2% of typed numbers carry a typo (one digit replaced, or two adjacent
digits swapped), which the control key catches; the practitioner then types
the number again. About 0.3% of lookups are valid numbers of people the
portal does not know (another scheme), which the portal answers with "no
such patient".

Day 0 is a Monday; times are seconds from its midnight. The weeks before
``attack_day`` are the portal's history; the attack week follows.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from nirguard import nir
from nirguard.replay.registry import Registry, poisson

__all__ = [
    "DAY",
    "HOUR",
    "KINDS",
    "POLICY_KIND",
    "Practitioner",
    "PractitionerKind",
    "Workload",
    "build_workload",
    "typo",
]

DAY: Final = 86_400.0
HOUR: Final = 3_600.0

PractitionerKind = Literal["gp", "new_gp", "hospital", "pharmacy"]
KINDS: Final[tuple[PractitionerKind, ...]] = ("gp", "new_gp", "hospital", "pharmacy")
#: The policy each kind of account gets (the ``name`` of its ``QuotaPolicy``).
POLICY_KIND: Final[dict[str, str]] = {
    "gp": "gp",
    "new_gp": "gp",
    "hospital": "desk",
    "pharmacy": "desk",
}

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
#: Accounts per 1,000 of each kind besides GPs.
_HOSPITALS: Final = 5
_PHARMACIES: Final = 15
_NEW_GPS: Final = 40
#: Accounts of a scale-1 portal.
ACCOUNTS_PER_SCALE: Final = 2000


@dataclass(frozen=True)
class Practitioner:
    """A legitimate account.

    Attributes:
        id: the practitioner id given to the guard.
        kind: ``gp``, ``new_gp``, ``hospital`` or ``pharmacy``.
        area: department where most of their patients were born.
    """

    id: str
    kind: PractitionerKind
    area: str

    @property
    def policy_kind(self) -> str:
        """``"gp"`` or ``"desk"``: which policy the account gets."""
        return POLICY_KIND[self.kind]


@dataclass
class Workload:
    """Weeks of legitimate lookups, in time order, stored as columns.

    Event ``e`` happens at ``times[e]``, by account ``who[e]``; ``person[e]``
    is the person looked up (``-1`` for a typo or someone the portal does
    not know, whose typed number is ``typed[e]``), ``cohort[e]`` their
    cohort, ``kind[e]`` one of ``LOOKUP``, ``TYPO``, ``UNKNOWN``.

    Attributes:
        practitioners: the accounts; events refer to them by index.
        days: days replayed (history and attack week).
        attack_day: first day of the attack week (history is before it).
        split: index of the first event of the attack week.
        week_lookups: lookups (valid numbers) per account in the attack week.
        week_new: distinct people per account in the attack week.
    """

    practitioners: list[Practitioner]
    days: int
    attack_day: int
    times: array[float] = field(default_factory=lambda: array("d"))
    who: array[int] = field(default_factory=lambda: array("l"))
    person: array[int] = field(default_factory=lambda: array("q"))
    cohort: array[int] = field(default_factory=lambda: array("l"))
    kind: array[int] = field(default_factory=lambda: array("b"))
    typed: dict[int, str] = field(default_factory=dict)
    split: int = 0
    week_lookups: list[int] = field(default_factory=list)
    week_new: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.times)

    def count(self, lo: int = 0, hi: int | None = None) -> dict[str, int]:
        """Lookups (valid numbers: people found or not) and typos in events ``lo..hi``."""
        kinds = self.kind[lo:hi]
        typos = kinds.count(TYPO)
        return {"lookups": len(kinds) - typos, "typos": typos}

    def count_by_kind(self, lo: int = 0, hi: int | None = None) -> dict[str, int]:
        """Lookups (valid numbers) per kind of account in events ``lo..hi``."""
        out: dict[str, int] = dict.fromkeys(KINDS, 0)
        kinds = [p.kind for p in self.practitioners]
        who, kind = self.who, self.kind
        for e in range(lo, len(self.times) if hi is None else hi):
            if kind[e] != TYPO:
                out[kinds[who[e]]] += 1
        return out

    def weekly_volume(self, kind: str = "gp") -> dict[str, float]:
        """Lookups and distinct people per account of one kind in the attack week:
        median, 90th and 99th percentile and maximum."""
        idx = [i for i, p in enumerate(self.practitioners) if p.kind == kind]
        out: dict[str, float] = {}
        for name, values in (("lookups", self.week_lookups), ("distinct", self.week_new)):
            ranked = sorted(values[i] for i in idx)
            if not ranked:
                continue
            for q, label in ((0.5, "median"), (0.9, "p90"), (0.99, "p99")):
                out[f"{name}_{label}"] = ranked[min(len(ranked) - 1, int(q * len(ranked)))]
            out[f"{name}_max"] = ranked[-1]
        return out


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


class _Patients:
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
_Raw = tuple[float, int, int, int, str]


@dataclass
class _Day:
    """Lookups of one day being built."""

    registry: Registry
    rng: random.Random
    events: list[_Raw]
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


class _Account:
    """One account's habits; :meth:`day` adds its lookups of a day."""

    def __init__(self, registry: Registry, rng: random.Random, who: int, area: str) -> None:
        self.registry = registry
        self.who = who
        self.area = area

    def day(self, d: _Day) -> None:
        raise NotImplementedError


class _GP(_Account):
    def __init__(self, registry: Registry, rng: random.Random, who: int, area: str) -> None:
        super().__init__(registry, rng, who, area)
        self.patients = _Patients(registry, area, rng.randint(1000, 2000), _LOCAL, rng)
        self.rate = min(60.0, 25.0 * math.exp(rng.gauss(-0.045, 0.3)))
        self.saturday = rng.random() < 0.3
        self.skew = rng.uniform(1.6, 2.4)

    def works(self, day: int) -> bool:
        weekday = day % 7
        return weekday < 5 or (weekday == 5 and self.saturday)

    def volume(self, d: _Day) -> int:
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

    def day(self, d: _Day) -> None:
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


class _NewGP(_GP):
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

    def _practice(self) -> _Patients:
        area = self.area if not self.locum else self.registry.draw_area(self.rng)
        return _Patients(self.registry, area, self.rng.randint(1000, 2000), _LOCAL, self.rng)

    def works(self, day: int) -> bool:
        return day in self.active and (day % 7 < 5 or (day % 7 == 5 and self.saturday))

    def day(self, d: _Day) -> None:
        if d.day in self.firsts:
            self.patients = self._practice()
        super().day(d)


class _Hospital(_Account):
    def __init__(self, registry: Registry, rng: random.Random, who: int, area: str) -> None:
        super().__init__(registry, rng, who, area)
        self.patients = _Patients(registry, area, 10**9, 0.7, rng)
        self.rate = 250.0 * math.exp(rng.gauss(0.0, 0.3))
        self.recent: list[int] = []

    def day(self, d: _Day) -> None:
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


class _Pharmacy(_Account):
    def __init__(self, registry: Registry, rng: random.Random, who: int, area: str) -> None:
        super().__init__(registry, rng, who, area)
        self.patients = _Patients(registry, area, rng.randint(2000, 4000), 0.6, rng)
        self.rate = 120.0 * math.exp(rng.gauss(0.0, 0.3))

    def day(self, d: _Day) -> None:
        if d.day % 7 == 6:
            return
        rng = d.rng
        factor = math.exp(rng.gauss(0.0, 0.2))
        for t in d.times(poisson(rng, self.rate * factor, normal_above=30.0), _PHARMACY):
            slot = int(self.patients.size * rng.random() ** 1.5)
            d.emit(t, self.who, self.patients.person(slot))


def accounts_for(scale: float) -> int:
    """Legitimate accounts of a portal of ``scale`` (1: 2,000)."""
    return max(10, round(ACCOUNTS_PER_SCALE * scale))


def _kinds(count: int) -> Iterator[tuple[PractitionerKind, int]]:
    """``(kind, number of that kind)``: at least one of each kind from 20 accounts up."""

    def share(per_thousand: int) -> int:
        return max(1, round(count * per_thousand / 1000)) if count >= 20 else 0

    hospitals, pharmacies, new = share(_HOSPITALS), share(_PHARMACIES), share(_NEW_GPS)
    yield "hospital", hospitals
    yield "pharmacy", pharmacies
    yield "new_gp", new
    yield "gp", count - hospitals - pharmacies - new


def build_workload(
    registry: Registry,
    practitioners: int = ACCOUNTS_PER_SCALE,
    *,
    history_weeks: int = 3,
    attack_days: int = 7,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> Workload:
    """Build ``history_weeks`` weeks and then ``attack_days`` days of lookups by
    ``practitioners`` legitimate accounts.

    Raises:
        ValueError: ``practitioners`` or ``attack_days`` is below 1, or
            ``history_weeks`` is negative.
    """
    if practitioners < 1 or attack_days < 1 or history_weeks < 0:
        raise ValueError("practitioners and attack_days must be at least 1, history_weeks >= 0")
    rng = random.Random(f"practitioners:{seed}")
    attack_day = 7 * history_weeks
    days = attack_day + attack_days
    accounts: list[Practitioner] = []
    habits: list[_Account] = []
    for kind, number in _kinds(practitioners):
        for n in range(number):
            who = len(accounts)
            area = registry.draw_area(rng)
            name = {"gp": "gp", "new_gp": "newgp", "hospital": "hospital", "pharmacy": "pharmacy"}
            accounts.append(Practitioner(f"{name[kind]}-{n:05d}", kind, area))
            if kind == "gp":
                habits.append(_GP(registry, rng, who, area))
            elif kind == "new_gp":
                habits.append(_NewGP(registry, rng, who, area, days))
            elif kind == "hospital":
                habits.append(_Hospital(registry, rng, who, area))
            else:
                habits.append(_Pharmacy(registry, rng, who, area))
    work = Workload(accounts, days, attack_day)
    work.week_lookups = [0] * len(accounts)
    work.week_new = [0] * len(accounts)
    seen: list[set[int]] = [set() for _ in accounts]
    carry: list[_Raw] = []
    cohort_of = registry.cohort_of
    for day in range(days):
        d = _Day(registry, rng, carry, day)
        for account in habits:
            account.day(d)
        d.events.sort()
        end = (day + 1) * DAY
        cut = len(d.events)
        while cut and d.events[cut - 1][0] >= end and day < days - 1:
            cut -= 1
        carry = d.events[cut:]
        if day == attack_day:
            work.split = len(work.times)
        kept = d.events[:cut]
        if kept:
            first = len(work.times)
            times, whos, persons, kinds, typed = zip(*kept, strict=True)
            work.times.extend(times)
            work.who.extend(whos)
            work.person.extend(persons)
            work.kind.extend(kinds)
            work.cohort.extend([cohort_of(p) if p >= 0 else -1 for p in persons])
            for i, number in enumerate(typed):
                if number:
                    work.typed[first + i] = number
            if day >= attack_day:
                for who, person, kind in zip(whos, persons, kinds, strict=True):
                    if kind == TYPO:
                        continue
                    work.week_lookups[who] += 1
                    if person >= 0 and person not in seen[who]:
                        seen[who].add(person)
                        work.week_new[who] += 1
        if progress is not None:
            progress((day + 1) / days)
    if attack_day >= days:
        work.split = len(work.times)
    return work
