"""France's births, where they happen and who is still here: the model the registry draws.

* births per year in France from the INSEE/INED series (about 750,000 a
  year; the baby boom above 850,000), 105 boys for 100 girls, evenly over
  the months;
* where they happen: since the 1970s nearly all in maternity towns (about
  500 communes hold 99.6% of births in 2016, 200 hold 80%, Toulouse alone
  15,000 a year); before, more maternity towns and many births at home,
  spread over the communes, 0-2 a month each;
* Corsica (``2A``/``2B`` from 1976, ``20`` before) and the overseas
  departments (``97x`` and a 2-digit commune) have their own maternities;
* people born abroad (``99`` and an INSEE country code: Algeria, Morocco,
  Portugal, ... most), some with an unknown month (code ``20``);
* who is still here: a survival curve by sex and age, and 5% of the
  French-born gone (abroad, another scheme); order numbers are handed out
  from 001 at birth, so the living keep theirs, with gaps.

``docs/replay.md`` gives the sources and assumptions. :func:`draw_cohorts`
keeps each cohort of that France with one probability, whole.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator
from typing import Final

__all__ = [
    "FIRST_YEAR",
    "LAST_YEAR",
    "LOCAL_POOL",
    "NOW_YEAR",
    "PEOPLE_PER_SCALE",
    "area_of",
    "births",
    "consultation_weight",
    "draw_cohorts",
    "france_people",
    "poisson",
    "regions",
    "survival",
    "year_of",
]

FIRST_YEAR: Final = 1926  # two-digit years stay unambiguous: 100 years, none above 99
LAST_YEAR: Final = 2025
#: Reference year for ages (the replay's "today").
NOW_YEAR: Final = 2026
#: People in a scale-1 registry (about 1,000 per account of a scale-1 portal).
PEOPLE_PER_SCALE: Final = 2_000_000

#: Births per year in France (thousands), INSEE/INED series rounded; linear in between.
_BIRTHS: Final = (
    (1926, 770), (1930, 750), (1935, 640), (1939, 612), (1941, 522), (1944, 630),
    (1946, 840), (1949, 869), (1955, 805), (1960, 816), (1964, 874), (1971, 881),
    (1973, 855), (1976, 720), (1980, 800), (1985, 768), (1990, 762), (1994, 711),
    (2000, 775), (2006, 830), (2010, 833), (2014, 811), (2018, 758), (2022, 726),
    (2023, 678), (2025, 650),
)  # fmt: skip
#: Share of births outside a maternity (at home, spread over the communes).
_HOME: Final = ((1926, 0.75), (1940, 0.6), (1950, 0.45), (1960, 0.15), (1970, 0.03), (1980, 0.006))
#: Metropolitan communes with a maternity (1975: 1,369 maternities; 2016: 498).
_MATERNITY_TOWNS: Final = (
    (1926, 1500),
    (1950, 1500),
    (1975, 1100),
    (1996, 650),
    (2016, 500),
    (2025, 450),
)
#: Zipf weights of maternity towns ``(rank + offset) ** -exponent``: fitted so that in
#: 2016 the first 200 of 500 towns hold 80% of births and the largest about 15,000.
_ZIPF_EXPONENT: Final = 1.2
_ZIPF_OFFSET: Final = 20
_BOY_SHARE: Final = 105 / 205
#: Corsica and overseas: (place code, births a year recently, first year it existed).
#: Corsican codes are ``2A``/``2B`` from 1976 and ``20`` before.
_SMALL_PLACES: Final = (
    ("2A004", 1400, 0), ("2B033", 1300, 0), ("2A247", 250, 0),
    ("97411", 5000, 0), ("97416", 4500, 0), ("97415", 2000, 0), ("97410", 1500, 0),
    ("97101", 2500, 0), ("97120", 1500, 0), ("97105", 1000, 0),
    ("97209", 3000, 0), ("97213", 500, 0),
    ("97302", 4000, 0), ("97311", 2500, 1960), ("97304", 800, 1970),
    ("97611", 9000, 1976),
)  # fmt: skip
#: Share of births in France that are in Corsica and overseas (the rest metropolitan).
_SMALL_SHARE: Final = 0.05
#: People alive in France who were born abroad (immigrants and French born abroad).
_ABROAD_PEOPLE: Final = 8_700_000
#: Country (INSEE code) -> share of people born abroad (Insee, immigrants by country
#: of birth, plus the French born in Algeria before 1962); the rest spread over others.
_COUNTRIES: Final = (
    ("352", 0.18), ("350", 0.12), ("139", 0.07), ("351", 0.05), ("127", 0.04),
    ("134", 0.035), ("208", 0.03), ("109", 0.02), ("132", 0.017), ("131", 0.015),
    ("341", 0.015), ("114", 0.014), ("216", 0.012), ("335", 0.012), ("326", 0.012),
    ("322", 0.01), ("243", 0.01), ("122", 0.01), ("333", 0.009), ("432", 0.008),
    ("397", 0.007),
)  # fmt: skip
_OTHER_COUNTRIES: Final = 120
#: Share of people born abroad whose month of birth is unknown (month code 20).
_UNKNOWN_MONTH: Final = 0.02
#: Share of the French-born registered at birth who are gone (abroad, another scheme).
_GONE: Final = 0.05
#: Population of the largest departments (millions, rounded); others 0.45.
_DEPARTMENT_PEOPLE: Final = {
    "59": 2.6, "75": 2.1, "13": 2.0, "69": 1.9, "93": 1.7, "92": 1.6, "33": 1.6,
    "62": 1.5, "94": 1.4, "31": 1.4, "44": 1.4, "78": 1.4, "77": 1.4, "91": 1.3,
    "38": 1.3, "76": 1.25, "95": 1.2, "34": 1.2, "06": 1.1, "67": 1.1,
}  # fmt: skip
_METROPOLITAN: Final = tuple(f"{d:02d}" for d in (*range(1, 20), *range(21, 96)))
#: GP consultations a year by age (DREES, rounded): how often a cohort is looked up.
_CONSULTATIONS: Final = ((0, 6.0), (5, 2.5), (15, 3.0), (45, 4.5), (65, 6.5), (75, 8.5))


def _interpolate(table: tuple[tuple[int, float], ...], year: int) -> float:
    if year <= table[0][0]:
        return float(table[0][1])
    for (y0, v0), (y1, v1) in itertools.pairwise(table):
        if year <= y1:
            return v0 + (v1 - v0) * (year - y0) / (y1 - y0)
    return float(table[-1][1])


def births(year: int) -> float:
    """Births in France in ``year`` (the model's rounded series)."""
    return 1000.0 * _interpolate(_BIRTHS, year)


def survival(sex: int, age: int) -> float:
    """Share of a birth cohort still alive at ``age`` (a Gompertz curve fitted to French
    life tables: men 62% at 80 and 23% at 90, women 74% and 41%)."""
    a = 8e-6 if sex == 1 else 5e-6
    b = 0.11
    return math.exp(-a / b * (math.exp(b * age) - 1.0))


def consultation_weight(year: int) -> float:
    """How often someone born in ``year`` sees a doctor, relative to other ages."""
    age = NOW_YEAR - year
    weight = _CONSULTATIONS[0][1]
    for start, value in _CONSULTATIONS:
        if age >= start:
            weight = value
    return weight


def poisson(rng: random.Random, lam: float, normal_above: float = 40.0) -> int:
    """A Poisson draw (its normal approximation above ``normal_above``); the replay's
    draws, registry and practitioners alike."""
    if lam <= 0:
        return 0
    if lam > normal_above:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def year_of(prefix: str) -> int:
    """Year of birth of a cohort prefix (two-digit years from :data:`FIRST_YEAR`)."""
    yy = int(prefix[1:3])
    return 1900 + yy if 1900 + yy >= FIRST_YEAR else 2000 + yy


#: People a practitioner's "local" patients are drawn from: a French department's
#: population (68 million people in 101 departments). See :func:`regions`.
LOCAL_POOL: Final = 670_000


def regions(area_people: dict[str, int]) -> dict[str, str]:
    """Group departments (in code order) into regions of at least :data:`LOCAL_POOL` people.

    A registry holds a fraction ``f`` of France's cohorts, each whole. A
    practitioner drawing "local" patients from one department of it would
    meet each of that department's cohorts ``1 / f`` times as often as a real
    practitioner does, and look like an enumerator. So the local pool keeps
    a real department's size: at scale 1 a region is about a third of the
    country; in smaller worlds there is one region; from about scale 30
    (the whole country) a region is one department. People born abroad are
    their own pool.
    """
    regions: dict[str, str] = {"99": "99"} if "99" in area_people else {}
    group: list[str] = []
    count = 0
    french = sorted(a for a in area_people if a != "99")
    for area in french:
        group.append(area)
        count += area_people[area]
        if count >= LOCAL_POOL:
            for member in group:
                regions[member] = group[0]
            group, count = [], 0
    if group:  # the remainder joins the last region (or is the only one)
        last = (
            regions.get(french[-len(group) - 1], group[0]) if len(group) < len(french) else group[0]
        )
        for member in group:
            regions[member] = last
    return regions


def area_of(prefix: str) -> str:
    """Department of birth of a prefix (``"2A"``, ``"974"``, ...), ``"99"`` abroad."""
    place = prefix[5:7]
    if place in ("97", "98"):
        return prefix[5:8]
    if place == "20":
        return "2A"
    return place


def france_people() -> float:
    """People alive in the model's France (born there or abroad), for the scale."""
    total = 0.0
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        b = births(year)
        age = NOW_YEAR - year
        total += b * (_BOY_SHARE * survival(1, age) + (1 - _BOY_SHARE) * survival(2, age))
    return total * (1 - _GONE) + _ABROAD_PEOPLE


def _town_weights(count: int) -> list[float]:
    raw = [(k + _ZIPF_OFFSET) ** -_ZIPF_EXPONENT for k in range(1, count + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def _towns(rng: random.Random, count: int) -> list[str]:
    """Ranked maternity towns (5-character place codes), largest first."""
    departments = list(_METROPOLITAN)
    weights = [_DEPARTMENT_PEOPLE.get(d, 0.45) for d in departments]
    seen: set[str] = set()
    towns: list[str] = []
    while len(towns) < count:
        place = rng.choices(departments, weights)[0] + f"{rng.randint(1, 700):03d}"
        if place not in seen:
            seen.add(place)
            towns.append(place)
    return towns


def _abroad_year_weights() -> list[float]:
    """Birth years of people born abroad: mostly aged 25-70 now."""
    raw = []
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        age = NOW_YEAR - year
        raw.append(math.exp(-(((age - 48) / 20) ** 2)) + 0.08)
    total = sum(raw)
    return [w / total for w in raw]


def _skips(rng: random.Random, count: int, fraction: float) -> Iterator[int]:
    """Indices ``0 .. count - 1`` each kept with probability ``fraction`` (geometric skips)."""
    if fraction >= 1:
        yield from range(count)
        return
    log_miss = math.log1p(-fraction)
    k = -1
    while True:
        k += 1 + int(math.log(1.0 - rng.random()) / log_miss)
        if k >= count:
            return
        yield k


#: Cohorts being drawn: prefix -> (people alive, highest order number handed out).
Cohorts = dict[str, tuple[int, int]]


def _add(cohorts: Cohorts, prefix: str, alive: int, top: int) -> None:
    if alive <= 0:
        return
    old = cohorts.get(prefix)
    if old is not None:  # two home births in one commune and month
        alive, top = alive + old[0], top + old[1]
    cohorts[prefix] = (min(alive, 999), min(999, max(top, alive)))


def draw_cohorts(fraction: float, seed: int) -> Cohorts:
    """Every cohort of the model's France, each kept whole with probability ``fraction``.

    The same fraction and seed give the same cohorts.
    """
    rng = random.Random(f"registry:{seed}")
    cohorts: Cohorts = {}
    towns = _towns(rng, max(n for _, n in _MATERNITY_TOWNS))
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        for sex in (1, 2):
            _french(cohorts, rng, fraction, towns, year, sex)
    _abroad(cohorts, rng, fraction)
    return cohorts


def _french(cohorts: Cohorts, rng: random.Random, fraction: float, towns: list[str],
            year: int, sex: int) -> None:  # fmt: skip
    """One year's cohorts of one sex born in France: maternity towns, home births,
    Corsica and overseas."""
    random_ = rng.random
    departments = list(_METROPOLITAN)
    cum_departments = list(
        itertools.accumulate(_DEPARTMENT_PEOPLE.get(d, 0.45) for d in departments)
    )
    small_total = sum(n for _, n, _ in _SMALL_PLACES)
    home = _interpolate(_HOME, year)
    town_count = round(_interpolate(_MATERNITY_TOWNS, year))
    town_weights = _town_weights(town_count)
    # Born ~ Poisson(m), so the living ~ Poisson(m * p) and the dead ~ Poisson(m * (1 - p)),
    # independently: the order numbers handed out are the two together.
    alive_share = survival(sex, NOW_YEAR - year) * (1 - _GONE)
    sex_births = births(year) / 12 * (_BOY_SHARE if sex == 1 else 1 - _BOY_SHARE)
    metro = sex_births * (1 - _SMALL_SHARE)
    in_towns = metro * (1 - home)
    for month in range(1, 13):
        head = f"{sex}{year % 100:02d}{month:02d}"
        # Maternity towns: one cohort per town, kept with probability `fraction`.
        for k in _skips(rng, town_count, fraction):
            expected = in_towns * town_weights[k]
            alive = poisson(rng, expected * alive_share)
            if alive:
                gone = poisson(rng, expected * (1 - alive_share))
                _add(cohorts, head + towns[k], alive, alive + gone)
        # Births at home: a commune sees 0-2 a month, so each is its own cohort.
        for _ in range(poisson(rng, fraction * metro * home * alive_share)):
            i = bisect.bisect_right(cum_departments, random_() * cum_departments[-1])
            place = departments[min(i, len(departments) - 1)]
            top = 2 if random_() < 0.05 else 1
            _add(cohorts, f"{head}{place}{701 + int(random_() * 299):03d}", 1, top)
        for place, recent, since in _SMALL_PLACES:
            if year < since or random_() >= fraction:
                continue
            if place[:2] in ("2A", "2B") and year < 1976:
                place = "20" + place[2:]
            expected = sex_births * _SMALL_SHARE * recent / small_total * (1 - home)
            alive = poisson(rng, expected * alive_share)
            if alive:
                gone = poisson(rng, expected * (1 - alive_share))
                _add(cohorts, head + place, alive, alive + gone)


def _abroad(cohorts: Cohorts, rng: random.Random, fraction: float) -> None:
    """People born abroad: ``99`` + country, some with month code 20 (unknown)."""
    named = sum(share for _, share in _COUNTRIES)
    known = {code for code, _ in _COUNTRIES}
    others = [f"{c:03d}" for c in rng.sample(range(101, 500), _OTHER_COUNTRIES + 40)]
    others = [c for c in others if c not in known][:_OTHER_COUNTRIES]
    countries = list(_COUNTRIES) + [
        (code, (1 - named) * w) for code, w in zip(others, _town_weights(len(others)), strict=True)
    ]
    year_weights = _abroad_year_weights()
    years = range(FIRST_YEAR, LAST_YEAR + 1)
    months = (*range(1, 13), 20)
    slots = [(year, sex, month) for year in years for sex in (1, 2) for month in months]
    for code, share in countries:
        for i in _skips(rng, len(slots), fraction):
            year, sex, month = slots[i]
            expected = _ABROAD_PEOPLE * share * year_weights[year - FIRST_YEAR] / 2
            expected *= _UNKNOWN_MONTH if month == 20 else (1 - _UNKNOWN_MONTH) / 12
            alive = poisson(rng, expected)
            if alive:
                top = round(alive / (0.75 + 0.2 * rng.random()))
                _add(cohorts, f"{sex}{year % 100:02d}{month:02d}99{code}", alive, top)
