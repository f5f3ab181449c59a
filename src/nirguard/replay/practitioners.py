"""Legitimate practitioners: a week of lookups made while caring for patients.

Three kinds of accounts:

* ``gp``: general practitioners, about 25 lookups a working day (a
  log-normal spread between practitioners, busier Mondays, now and then a
  busy day at 1.6 times the usual volume), on a consultation schedule
  (plus 15% paperwork at any time of the session), Monday to Friday and for
  some a Saturday morning. Each GP has a patient list of
  1,000-2,000 people, mostly born in the practitioner's own department;
  lookups favour a core of frequent patients (so patients come back within
  the week), 5% are people off the list, twins are looked up together.
* ``hospital``: admission desks, around the clock, about 250 lookups a
  day, nearly all distinct people from the area.
* ``pharmacy``: Monday to Saturday, about 120 lookups a day among a
  clientele of ~3,000 regulars.

About 2% of typed numbers carry a typo (one digit replaced, or two adjacent
digits swapped), which the control key catches; the practitioner then types
the number again. About 0.3% of lookups are valid numbers of people the
portal does not know (another scheme), which the portal answers with "no
such patient".
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from nirguard import nir
from nirguard.replay.registry import Registry, nir_from_cohort

__all__ = [
    "DAY",
    "Event",
    "Practitioner",
    "PractitionerKind",
    "Workload",
    "build_workload",
]

DAY: Final = 86_400.0
HOUR: Final = 3_600.0

PractitionerKind = Literal["gp", "hospital", "pharmacy"]

#: Event kinds.
LOOKUP: Final = 0  # a valid number of someone in the registry
TYPO: Final = 1  # a mistyped (invalid) number
UNKNOWN: Final = 2  # a valid number of someone the portal does not know

#: ``(time, practitioner index, typed number, person id or -1, kind)``.
Event = tuple[float, int, str, int, int]

_TYPO_RATE: Final = 0.02
_UNKNOWN_RATE: Final = 0.003
_OFF_LIST_RATE: Final = 0.05
_TWIN_RATE: Final = 0.02
#: Share of a GP's lookups made outside the consultation schedule.
_PAPERWORK: Final = 0.15


@dataclass(frozen=True)
class Practitioner:
    """A legitimate account.

    Attributes:
        id: the practitioner id given to the guard.
        kind: ``gp``, ``hospital`` or ``pharmacy``.
        area: department where most of their patients were born.
    """

    id: str
    kind: PractitionerKind
    area: str


@dataclass
class Workload:
    """A week of legitimate lookups, sorted by time.

    Attributes:
        practitioners: the accounts; events refer to them by index.
        events: ``(time, practitioner index, typed number, person id, kind)``;
            ``person id`` is -1 for typos and unknown people.
        days: length of the week in days.
    """

    practitioners: list[Practitioner]
    events: list[Event]
    days: int
    lookups: list[int] = field(default_factory=list)
    distinct: list[int] = field(default_factory=list)

    @property
    def desks(self) -> frozenset[str]:
        """Ids of the high-volume desks (hospital and pharmacy accounts)."""
        return frozenset(p.id for p in self.practitioners if p.kind != "gp")

    def weekly_volume(self, kind: PractitionerKind = "gp") -> dict[str, float]:
        """Lookups and distinct patients per account over the run, for one kind:
        median, 90th and 99th percentile and maximum."""
        idx = [i for i, p in enumerate(self.practitioners) if p.kind == kind]
        out: dict[str, float] = {}
        for name, values in (("lookups", self.lookups), ("distinct", self.distinct)):
            ranked = sorted(values[i] for i in idx)
            if not ranked:
                continue
            for q, label in ((0.5, "median"), (0.9, "p90"), (0.99, "p99")):
                out[f"{name}_{label}"] = ranked[min(len(ranked) - 1, int(q * len(ranked)))]
            out[f"{name}_max"] = ranked[-1]
        return out


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (normal approximation above 30)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


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
    """A practitioner's patient list, materialised lazily as slots are drawn."""

    def __init__(
        self, registry: Registry, area: str, size: int, local: float, rng: random.Random
    ) -> None:
        self.registry = registry
        self.local = registry.area_people.get(area) or registry.area_people["99"]
        self.abroad = registry.area_people.get("99") or self.local
        self.size = size
        self.local_share = local
        self.rng = rng
        self.slots: dict[int, int] = {}
        self.twin: dict[int, int] = {}

    def draw_person(self) -> int:
        rng = self.rng
        u = rng.random()
        if u < self.local_share:
            return self.local[rng.randrange(len(self.local))]
        if u < self.local_share + 0.10:
            return self.abroad[rng.randrange(len(self.abroad))]
        return rng.randrange(len(self.registry))

    def person(self, slot: int) -> int:
        found = self.slots.get(slot)
        if found is not None:
            return found
        person = self.draw_person()
        self.slots[slot] = person
        if self.rng.random() < _TWIN_RATE:
            registry = self.registry
            cohort = registry.cohort_of(person)
            if registry.cohort_size(cohort) > 1:
                other = person + 1 if person + 1 < registry.cohort_start[cohort + 1] else person - 1
                self.twin[slot] = other
        return person


@dataclass
class _Builder:
    registry: Registry
    rng: random.Random
    days: int
    events: list[Event] = field(default_factory=list)
    lookups: list[int] = field(default_factory=list)
    distinct: list[int] = field(default_factory=list)

    def unknown_number(self) -> str:
        """A valid number of someone the registry does not hold."""
        registry, rng = self.registry, self.rng
        while True:
            cohort = rng.randrange(registry.cohorts)
            top = registry.nirs[registry.cohort_start[cohort + 1] - 1]
            order = int(top[10:13]) + rng.randint(1, 30)
            if order <= 999:
                return nir_from_cohort(
                    registry.cohort_prefix[cohort], registry.cohort_residue[cohort], order
                )

    def emit(self, t: float, who: int, person: int, seen: set[int], typing: float) -> None:
        """One lookup (with its typo and retyping, or as an unknown number)."""
        rng = self.rng
        if rng.random() < _UNKNOWN_RATE:
            self.events.append((t, who, self.unknown_number(), -1, UNKNOWN))
            self.lookups[who] += 1
            return
        number = self.registry.nirs[person]
        if rng.random() < typing:
            self.events.append((t, who, typo(number, rng), -1, TYPO))
            t += rng.uniform(10.0, 60.0)
        self.events.append((t, who, number, person, LOOKUP))
        self.lookups[who] += 1
        if person not in seen:
            seen.add(person)
            self.distinct[who] += 1

    def day_times(
        self, day: int, count: int, blocks: tuple[tuple[float, float, float], ...]
    ) -> list[float]:
        """``count`` sorted times on ``day`` in weighted blocks ``(weight, start h, end h)``."""
        rng = self.rng
        cum = []
        total = 0.0
        for weight, _, _ in blocks:
            total += weight
            cum.append(total)
        times = []
        for _ in range(count):
            _, start, end = blocks[min(len(blocks) - 1, _bisect(cum, rng.random() * total))]
            times.append(day * DAY + rng.uniform(start, end) * HOUR)
        times.sort()
        return times

    def consultation_times(
        self, day: int, count: int, blocks: tuple[tuple[float, float, float], ...]
    ) -> list[float]:
        """Like :meth:`day_times`, but most lookups follow a consultation schedule
        (evenly spaced slots with some jitter); the rest (paperwork, calls
        back) fall anywhere in the block."""
        rng = self.rng
        placed = self.day_times(day, count, blocks)
        times: list[float] = []
        for weight_block in blocks:
            _, start, end = weight_block
            inside = [t for t in placed if start * HOUR <= t - day * DAY < end * HOUR]
            slots = [t for t in inside if rng.random() >= _PAPERWORK]
            if slots:
                step = (end - start) * HOUR / len(slots)
                base = day * DAY + start * HOUR
                times.extend(base + (k + rng.uniform(0.1, 0.9)) * step for k in range(len(slots)))
            times.extend(t for t in inside if t not in slots)
        times.sort()
        return times


def _bisect(cum: list[float], x: float) -> int:
    for i, c in enumerate(cum):
        if x < c:
            return i
    return len(cum) - 1


_CONSULTATION: Final = ((0.45, 8.5, 12.5), (0.55, 14.0, 19.5))
_SATURDAY: Final = ((1.0, 8.5, 12.5),)
_HOSPITAL: Final = ((0.04, 0.0, 7.0), (0.80, 7.0, 20.0), (0.16, 20.0, 24.0))
_PHARMACY: Final = ((0.4, 9.0, 12.5), (0.6, 14.0, 19.5))


def _gp_week(b: _Builder, who: int, p: Practitioner) -> None:
    rng = b.rng
    patients = _Patients(b.registry, p.area, rng.randint(1000, 2000), 0.55, rng)
    rate = 25.0 * math.exp(rng.gauss(-0.045, 0.3))
    saturday = rng.random() < 0.3
    seen: set[int] = set()
    skew = rng.uniform(1.6, 2.4)
    for day in range(b.days):
        weekday = day % 7
        if weekday == 6 or (weekday == 5 and not saturday):
            continue
        factor = math.exp(rng.gauss(0.0, 0.2))
        if weekday == 0:
            factor *= 1.2
        if weekday == 5:
            factor *= 0.4
        if rng.random() < 0.03:
            factor *= 1.6  # a busy day: an epidemic, covering for a colleague
        count = _poisson(rng, rate * factor)
        blocks = _SATURDAY if weekday == 5 else _CONSULTATION
        for t in b.consultation_times(day, count, blocks):
            if rng.random() < _OFF_LIST_RATE:
                b.emit(t, who, patients.draw_person(), seen, _TYPO_RATE)
                continue
            slot = int(patients.size * rng.random() ** skew)
            b.emit(t, who, patients.person(slot), seen, _TYPO_RATE)
            twin = patients.twin.get(slot)
            if twin is not None and rng.random() < 0.5:
                b.emit(t + rng.uniform(20.0, 90.0), who, twin, seen, _TYPO_RATE)


def _hospital_week(b: _Builder, who: int, p: Practitioner) -> None:
    rng = b.rng
    patients = _Patients(b.registry, p.area, 10**9, 0.7, rng)
    rate = 250.0 * math.exp(rng.gauss(0.0, 0.3))
    seen: set[int] = set()
    recent: list[int] = []
    for day in range(b.days):
        factor = math.exp(rng.gauss(0.0, 0.15)) * (0.7 if day % 7 >= 5 else 1.0)
        for t in b.day_times(day, _poisson(rng, rate * factor), _HOSPITAL):
            if recent and rng.random() < 0.1:
                person = recent[rng.randrange(len(recent))]
            else:
                person = patients.draw_person()
                recent.append(person)
            b.emit(t, who, person, seen, _TYPO_RATE)


def _pharmacy_week(b: _Builder, who: int, p: Practitioner) -> None:
    rng = b.rng
    patients = _Patients(b.registry, p.area, rng.randint(2000, 4000), 0.6, rng)
    rate = 120.0 * math.exp(rng.gauss(0.0, 0.3))
    seen: set[int] = set()
    for day in range(b.days):
        if day % 7 == 6:
            continue
        factor = math.exp(rng.gauss(0.0, 0.2))
        for t in b.day_times(day, _poisson(rng, rate * factor), _PHARMACY):
            slot = int(patients.size * rng.random() ** 1.5)
            b.emit(t, who, patients.person(slot), seen, _TYPO_RATE)


_WEEKS: Final[dict[str, Callable[[_Builder, int, Practitioner], None]]] = {
    "gp": _gp_week,
    "hospital": _hospital_week,
    "pharmacy": _pharmacy_week,
}


def build_workload(
    registry: Registry, practitioners: int = 2000, *, days: int = 7, seed: int = 0
) -> Workload:
    """Build ``days`` days of lookups by ``practitioners`` legitimate accounts.

    About 0.5% of accounts are hospital admission desks and 1.5% pharmacies
    (at least one of each from 20 accounts up); the rest are GPs. Day 0 is a
    Monday; times are seconds from its midnight.

    Raises:
        ValueError: ``practitioners`` or ``days`` is below 1.
    """
    if practitioners < 1 or days < 1:
        raise ValueError("practitioners and days must be at least 1")
    rng = random.Random(f"practitioners:{seed}")
    hospitals = max(1, round(practitioners * 0.005)) if practitioners >= 20 else 0
    pharmacies = max(1, round(practitioners * 0.015)) if practitioners >= 20 else 0
    areas = [a for a in registry.area_people if a != "99"] or ["99"]
    area_weights = [len(registry.area_people[a]) for a in areas]
    accounts: list[Practitioner] = []
    for i in range(practitioners):
        kind: PractitionerKind
        if i < hospitals:
            kind, name = "hospital", f"hospital-{i:03d}"
        elif i < hospitals + pharmacies:
            kind, name = "pharmacy", f"pharmacy-{i - hospitals:03d}"
        else:
            kind, name = "gp", f"gp-{i - hospitals - pharmacies:04d}"
        accounts.append(Practitioner(name, kind, rng.choices(areas, area_weights)[0]))
    builder = _Builder(
        registry, rng, days, lookups=[0] * practitioners, distinct=[0] * practitioners
    )
    for who, p in enumerate(accounts):
        _WEEKS[p.kind](builder, who, p)
    builder.events.sort()
    return Workload(accounts, builder.events, days, builder.lookups, builder.distinct)
