"""A synthetic registry of people with realistic NIRs, built fast.

The registry stands for everyone a portal can look up. Its structure is
what an enumerator exploits: people born in the same place in the same
month share the first 10 characters of their NIR (the *cohort*: sex, year
and month of birth, department and commune or country) and differ by their
order number, which the civil registry hands out in sequence. Most births
happen in a few maternity towns, so a handful of cohorts are large and
dense (order numbers 001, 002, ... with gaps for people who died, left or
depend on another scheme) and many are small.

How it is built, from a seed:

* places of birth come from :class:`nirguard.testing.NIRGenerator`
  (metropolitan communes, Corsica, overseas, born abroad), each given a
  Zipf weight, as births concentrate in maternity towns;
* people per sex, year and month follow a rough age pyramid (1930-2025),
  plus a few special month codes (unknown month, old codes) for people born
  abroad;
* within a cohort the order numbers are drawn densely from 001 up, and the
  control key is computed from a per-cohort precomputed residue, so that a
  million numbers take about a second.
"""

from __future__ import annotations

import bisect
import itertools
import random
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Final

from nirguard.testing import NIRGenerator, Place

__all__ = ["Registry", "build_registry", "cohort_residue", "nir_from_cohort"]

#: Number of distinct places of birth of each kind, and the share of births.
_PLACE_KINDS: Final[tuple[tuple[Place, int, float], ...]] = (
    ("metropolitan", 1500, 0.855),
    ("corsica", 12, 0.005),
    ("overseas", 60, 0.03),
    ("abroad", 11, 0.11),
)
_FIRST_YEAR: Final = 1930
_LAST_YEAR: Final = 2025
#: Share of people with a special month code (only among people born abroad).
_SPECIAL_MONTH_SHARE: Final = 0.004


def cohort_residue(prefix: str) -> int:
    """``(prefix * 1000) mod 97`` for a 10-character cohort prefix (2A as 19, 2B as 18).

    The key of the NIR with order number ``o`` is then ``97 - (residue + o) % 97``.
    """
    if prefix[6] in "AB":
        prefix = prefix[:5] + ("19" if prefix[6] == "A" else "18") + prefix[7:]
    return int(prefix) * 1000 % 97


def nir_from_cohort(prefix: str, residue: int, order: int) -> str:
    """The valid NIR of order number ``order`` (1-999) in a cohort."""
    return f"{prefix}{order:03d}{97 - (residue + order) % 97:02d}"


@dataclass(frozen=True, eq=False)
class Registry:
    """People that a portal can find, with the cohort structure of their NIRs.

    Person ids are ``0 .. len(nirs) - 1``; people of cohort ``c`` are the ids
    ``cohort_start[c] .. cohort_start[c + 1] - 1``, sorted by order number.

    Attributes:
        nirs: canonical NIR of each person.
        index: canonical NIR -> person id.
        cohort_prefix: the 10-character prefix of each cohort.
        cohort_residue: :func:`cohort_residue` of each prefix.
        cohort_start: first person id of each cohort, plus a final sentinel.
        cohort_area: area of birth of each cohort: a department, or ``"99"``.
        area_people: area -> ids of the people born there.
    """

    nirs: list[str]
    index: dict[str, int]
    cohort_prefix: list[str]
    cohort_residue: array[int]
    cohort_start: array[int]
    cohort_area: list[str]
    area_people: dict[str, array[int]]

    def __len__(self) -> int:
        return len(self.nirs)

    @property
    def cohorts(self) -> int:
        """Number of cohorts."""
        return len(self.cohort_prefix)

    def cohort_of(self, person: int) -> int:
        """The cohort of a person id."""
        return bisect.bisect_right(self.cohort_start, person) - 1

    def cohort_size(self, cohort: int) -> int:
        """Number of people in a cohort."""
        return self.cohort_start[cohort + 1] - self.cohort_start[cohort]

    def __repr__(self) -> str:
        return f"Registry(people={len(self.nirs)}, cohorts={len(self.cohort_prefix)})"


def _year_weight(year: int) -> float:
    """A rough age pyramid: fewer people born long ago."""
    if year < 1950:
        return max(0.05, (year - 1925) / 25)
    return 1.0


def _places(gen: NIRGenerator, rng: random.Random) -> tuple[list[str], list[float]]:
    """Distinct places of birth (5 characters after the month) and their weights."""
    places: list[str] = []
    weights: list[float] = []
    for kind, count, share in _PLACE_KINDS:
        found: dict[str, None] = {}
        for _ in range(count * 20):
            found[gen.generate(place=kind)[5:10]] = None
            if len(found) >= count:
                break
        kind_places = list(found)
        rng.shuffle(kind_places)
        # Zipf: births concentrate in a few maternity towns.
        raw = [1.0 / (rank + 1) for rank in range(len(kind_places))]
        total = sum(raw)
        places.extend(kind_places)
        weights.extend(share * w / total for w in raw)
    return places, weights


def _place_for_year(place: str, year: int) -> str:
    """Corsica is 20 before 1976, 2A/2B after."""
    if place[:2] in ("2A", "2B") and year < 1976:
        return "20" + place[2:]
    return place


def build_registry(people: int = 1_000_000, *, seed: int = 0) -> Registry:
    """Build a registry of about ``people`` people (exactly, unless tiny).

    The same seed gives the same registry.

    Raises:
        ValueError: ``people`` is below 1000.
    """
    if people < 1000:
        raise ValueError("a registry needs at least 1000 people")
    rng = random.Random(f"registry:{seed}")
    gen = NIRGenerator(rng.randrange(2**32))
    places, place_weights = _places(gen, rng)
    cum_weights = list(itertools.accumulate(place_weights))
    abroad = [i for i, p in enumerate(places) if p.startswith("99")]
    special_months = sorted({gen.generate(special_month=True)[3:5] for _ in range(200)})

    years = range(_FIRST_YEAR, _LAST_YEAR + 1)
    year_weights = [_year_weight(y) for y in years]
    combos = [(s, y, m) for y in years for s in (1, 2) for m in range(1, 13)]
    combo_weights = [year_weights[y - _FIRST_YEAR] for _, y, _ in combos]
    total_weight = sum(combo_weights)
    regular = people - int(people * _SPECIAL_MONTH_SHARE)
    counts = [int(regular * w / total_weight) for w in combo_weights]
    for i in rng.sample(range(len(combos)), regular - sum(counts)):
        counts[i] += 1

    # (prefix, area, number of people) for every cohort.
    cohorts: list[tuple[str, str, int]] = []
    place_ids = range(len(places))
    for (sex, year, month), count in zip(combos, counts, strict=True):
        head = f"{sex}{year % 100:02d}{month:02d}"
        for place_id, n in sorted(
            Counter(rng.choices(place_ids, cum_weights=cum_weights, k=count)).items()
        ):
            place = _place_for_year(places[place_id], year)
            cohorts.append((head + place, _area(place), n))
    for _ in range(people - regular):
        sex, year = rng.choice((1, 2)), rng.choice(years)
        place = places[rng.choice(abroad)] if abroad else places[0]
        cohorts.append((f"{sex}{year % 100:02d}{rng.choice(special_months)}{place}", "99", 1))
    # Special-month people drawn into the same prefix merge into one cohort.
    merged: dict[str, tuple[str, int]] = {}
    for prefix, area, n in cohorts:
        old = merged.get(prefix)
        merged[prefix] = (area, n + (old[1] if old else 0))

    nirs: list[str] = []
    prefixes: list[str] = []
    residues = array("l")
    starts = array("l")
    areas: list[str] = []
    sample = rng.sample
    uniform = rng.uniform
    for prefix, (area, n) in merged.items():
        n = min(n, 999)
        density = uniform(0.6, 0.95)
        top = min(999, max(n, round(n / density)))
        orders = [top] if n == 1 else sorted(sample(range(1, top + 1), n))
        residue = cohort_residue(prefix)
        starts.append(len(nirs))
        prefixes.append(prefix)
        residues.append(residue)
        areas.append(area)
        nirs.extend([f"{prefix}{o:03d}{97 - (residue + o) % 97:02d}" for o in orders])
    starts.append(len(nirs))

    area_lists: dict[str, array[int]] = {}
    for c, area in enumerate(areas):
        area_lists.setdefault(area, array("l")).extend(range(starts[c], starts[c + 1]))
    return Registry(
        nirs=nirs,
        index={n: i for i, n in enumerate(nirs)},
        cohort_prefix=prefixes,
        cohort_residue=residues,
        cohort_start=starts,
        cohort_area=areas,
        area_people=area_lists,
    )


def _area(place: str) -> str:
    """Department (2 or 3 characters) of a place of birth, ``"99"`` abroad, ``"2A"``..."""
    if place[:2] in ("97", "98"):
        return place[:3]
    if place[:2] == "20":
        return "2A"
    return place[:2]
