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

import random
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from nirguard.replay.habits import (
    DAY,
    GP,
    HOUR,
    LOOKUP,
    TYPO,
    UNKNOWN,
    Account,
    Day,
    Hospital,
    NewGP,
    Pharmacy,
    Raw,
    typo,
)
from nirguard.replay.registry import Registry

__all__ = [
    "DAY",
    "HOUR",
    "KINDS",
    "LOOKUP",
    "POLICY_KIND",
    "TYPO",
    "UNKNOWN",
    "Practitioner",
    "PractitionerKind",
    "Workload",
    "build_workload",
    "typo",
]


PractitionerKind = Literal["gp", "new_gp", "hospital", "pharmacy"]
KINDS: Final[tuple[PractitionerKind, ...]] = ("gp", "new_gp", "hospital", "pharmacy")
#: The policy each kind of account gets (the ``name`` of its ``QuotaPolicy``).
POLICY_KIND: Final[dict[str, str]] = {
    "gp": "gp",
    "new_gp": "gp",
    "hospital": "desk",
    "pharmacy": "desk",
}

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


def _accounts(
    registry: Registry, count: int, days: int, rng: random.Random
) -> tuple[list[Practitioner], list[Account]]:
    """The legitimate accounts and their habits."""
    accounts: list[Practitioner] = []
    habits: list[Account] = []
    name = {"gp": "gp", "new_gp": "newgp", "hospital": "hospital", "pharmacy": "pharmacy"}
    for kind, number in _kinds(count):
        for n in range(number):
            who = len(accounts)
            area = registry.draw_area(rng)
            accounts.append(Practitioner(f"{name[kind]}-{n:05d}", kind, area))
            if kind == "gp":
                habits.append(GP(registry, rng, who, area))
            elif kind == "new_gp":
                habits.append(NewGP(registry, rng, who, area, days))
            elif kind == "hospital":
                habits.append(Hospital(registry, rng, who, area))
            else:
                habits.append(Pharmacy(registry, rng, who, area))
    return accounts, habits


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
    accounts, habits = _accounts(registry, practitioners, days, rng)
    work = Workload(accounts, days, attack_day)
    work.week_lookups = [0] * len(accounts)
    work.week_new = [0] * len(accounts)
    seen: list[set[int]] = [set() for _ in accounts]
    carry: list[Raw] = []
    for day in range(days):
        d = Day(registry, rng, carry, day)
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
        _append(work, registry, d.events[:cut], seen if day >= attack_day else None)
        if progress is not None:
            progress((day + 1) / days)
    if attack_day >= days:
        work.split = len(work.times)
    return work


def _append(
    work: Workload, registry: Registry, kept: list[Raw], seen: list[set[int]] | None
) -> None:
    """Add a day's events to the columns (``seen``: the attack week's, counted per account)."""
    if not kept:
        return
    first = len(work.times)
    times, whos, persons, kinds, typed = zip(*kept, strict=True)
    work.times.extend(times)
    work.who.extend(whos)
    work.person.extend(persons)
    work.kind.extend(kinds)
    cohort_of = registry.cohort_of
    work.cohort.extend([cohort_of(p) if p >= 0 else -1 for p in persons])
    for i, number in enumerate(typed):
        if number:
            work.typed[first + i] = number
    if seen is None:
        return
    for who, person, kind in zip(whos, persons, kinds, strict=True):
        if kind == TYPO:
            continue
        work.week_lookups[who] += 1
        if person >= 0 and person not in seen[who]:
            seen[who].add(person)
            work.week_new[who] += 1
