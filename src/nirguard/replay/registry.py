"""The people a portal can look up: France's birth cohorts, a fraction of them, whole.

An enumerator holds the first 10 characters of a NIR fixed (sex, year and
month of birth, department and commune of birth, or ``99`` and the country
when born abroad: the *cohort*) and walks the order numbers. What it gets,
and how unusual its walk looks next to real traffic, depends on how large
real cohorts are. So the registry keeps cohorts *whole*, with the sizes
they have in France (:mod:`~nirguard.replay.census` models them), and
shrinks the country by keeping a fraction of the cohorts (each one
independently, with the same probability): a scale-1 registry holds about
2,000,000 people, and its largest cohorts are as large as France's (a
maternity town's month of one sex: hundreds of people).

Person ids are ``0 .. len(registry) - 1``, cohort by cohort; the order
numbers of a cohort are drawn when first needed (from the cohort's own
seed), so a registry of tens of millions costs a few bytes a person.
"""

from __future__ import annotations

import bisect
import itertools
import random
from array import array
from collections.abc import Iterator

from nirguard.replay.census import (
    LOCAL_POOL,
    PEOPLE_PER_SCALE,
    area_of,
    consultation_weight,
    draw_cohorts,
    france_people,
    poisson,
    regions,
    year_of,
)

__all__ = [
    "LOCAL_POOL",
    "PEOPLE_PER_SCALE",
    "Registry",
    "build_registry",
    "cohort_residue",
    "nir_from_cohort",
    "poisson",
]


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


def _encode(prefix: str) -> int:
    """A sortable integer for a 10-character prefix (Corsica's letters in the low bits)."""
    flag = 0
    if prefix[6] in "AB":
        flag = 1 if prefix[6] == "A" else 2
        prefix = prefix[:6] + "0" + prefix[7:]
    return int(prefix) * 4 + flag


def _decode(key: int) -> str:
    digits = f"{key >> 2:010d}"
    flag = key & 3
    if flag:
        return digits[:6] + ("A" if flag == 1 else "B") + digits[7:]
    return digits


class Registry:
    """People a portal can find, grouped in whole birth cohorts.

    Person ids are ``0 .. len(registry) - 1``; the people of cohort ``c``
    are ``start(c) .. start(c + 1) - 1``, in the order of their order numbers.

    Attributes:
        fraction: share of France's cohorts kept.
        seed: the seed it was built from.
        regions: department of birth (or ``"99"``) -> its region (see :func:`~nirguard.replay.census.regions`).
        area_cohorts: region -> ids of its cohorts.
        area_weights: region -> cumulative weights of those cohorts (people
            times how often their age sees a doctor).
        area_people: region -> people born there.
    """

    __slots__ = (
        "_filled",
        "_keys",
        "_national_cache",
        "_orders",
        "_prefix_cache",
        "_sizes",
        "_starts",
        "_tops",
        "area_cohorts",
        "area_people",
        "area_weights",
        "fraction",
        "regions",
        "seed",
    )

    def __init__(
        self,
        keys: array[int],
        sizes: array[int],
        tops: array[int],
        *,
        fraction: float,
        seed: int,
    ) -> None:
        self._keys = keys
        self._sizes = sizes
        self._tops = tops
        starts = array("q", [0])
        total = 0
        for n in sizes:
            total += n
            starts.append(total)
        self._starts = starts
        self._orders = array("H", bytes(2 * total))
        self._filled = bytearray(len(keys))
        self._prefix_cache: dict[int, str] = {}
        self._national_cache: tuple[list[str], list[float]] | None = None
        self.fraction = fraction
        self.seed = seed
        # Group cohorts by department, then departments into regions of at least
        # LOCAL_POOL people: see region_of.
        by_area: dict[str, list[int]] = {}
        area_people: dict[str, int] = {}
        for c, key in enumerate(keys):
            area = area_of(_decode(key))
            by_area.setdefault(area, []).append(c)
            area_people[area] = area_people.get(area, 0) + sizes[c]
        self.regions = regions(area_people)
        cohorts: dict[str, array[int]] = {}
        weights: dict[str, array[float]] = {}
        people: dict[str, int] = {}
        year_weight: dict[int, float] = {}
        for area in sorted(by_area):
            region = self.regions[area]
            ids = cohorts.setdefault(region, array("l"))
            cum = weights.setdefault(region, array("d"))
            mass = cum[-1] if cum else 0.0
            for c in by_area[area]:
                yy = (keys[c] >> 2) // 10_000_000 % 100
                yw = year_weight.get(yy)
                if yw is None:
                    yw = year_weight[yy] = consultation_weight(year_of(f"1{yy:02d}"))
                mass += sizes[c] * yw
                ids.append(c)
                cum.append(mass)
            people[region] = people.get(region, 0) + area_people[area]
        self.area_cohorts = cohorts
        self.area_weights = weights
        self.area_people = people

    # -- sizes --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def cohorts(self) -> int:
        """Number of cohorts."""
        return len(self._keys)

    def size(self, cohort: int) -> int:
        """People alive in a cohort."""
        return self._sizes[cohort]

    def top(self, cohort: int) -> int:
        """Highest order number handed out in a cohort (the living hold some of 1..top)."""
        return self._tops[cohort]

    def start(self, cohort: int) -> int:
        """First person id of a cohort (``start(cohorts)`` is the number of people)."""
        return self._starts[cohort]

    def cohort_of(self, person: int) -> int:
        """The cohort of a person id."""
        return bisect.bisect_right(self._starts, person) - 1

    def __repr__(self) -> str:
        return f"Registry(people={len(self)}, cohorts={self.cohorts})"

    # -- numbers ------------------------------------------------------------------------------

    def prefix(self, cohort: int) -> str:
        """The 10-character prefix of a cohort."""
        cache = self._prefix_cache
        found = cache.get(cohort)
        if found is None:
            if len(cache) > 200_000:
                cache.clear()
            found = cache[cohort] = _decode(self._keys[cohort])
        return found

    def residue(self, cohort: int) -> int:
        """:func:`cohort_residue` of the cohort's prefix."""
        return cohort_residue(self.prefix(cohort))

    def orders(self, cohort: int) -> array[int]:
        """Order numbers of the living people of a cohort, ascending."""
        start, end = self._starts[cohort], self._starts[cohort + 1]
        if not self._filled[cohort]:
            self._fill(cohort, start, end)
        return self._orders[start:end]

    def order(self, person: int, cohort: int | None = None) -> int:
        """Order number of a person."""
        if cohort is None:
            cohort = self.cohort_of(person)
        if not self._filled[cohort]:
            self._fill(cohort, self._starts[cohort], self._starts[cohort + 1])
        return self._orders[person]

    def _fill(self, cohort: int, start: int, end: int) -> None:
        n, top = end - start, self._tops[cohort]
        if n == top:
            chosen: list[int] = list(range(1, top + 1))
        else:
            rng = random.Random(self.seed * 10_000_019 + cohort)
            chosen = sorted(rng.sample(range(1, top + 1), n))
        self._orders[start:end] = array("H", chosen)
        self._filled[cohort] = 1

    def nir(self, person: int, cohort: int | None = None) -> str:
        """The NIR of a person."""
        if cohort is None:
            cohort = self.cohort_of(person)
        prefix = self.prefix(cohort)
        return nir_from_cohort(prefix, cohort_residue(prefix), self.order(person, cohort))

    def find(self, number: str) -> int | None:
        """The person id of a canonical NIR, or ``None`` when nobody holds it."""
        if len(number) != 15:
            return None
        try:
            key = _encode(number[:10])
            order = int(number[10:13])
        except ValueError:
            return None
        keys = self._keys
        c = bisect.bisect_left(keys, key)
        if c >= len(keys) or keys[c] != key:
            return None
        if self.nir_from_order(c, order) != number:
            return None
        orders = self.orders(c)
        i = bisect.bisect_left(orders, order)
        if i < len(orders) and orders[i] == order:
            return self._starts[c] + i
        return None

    def nir_from_order(self, cohort: int, order: int) -> str:
        """The valid NIR of an order number in a cohort (someone or nobody)."""
        prefix = self.prefix(cohort)
        return nir_from_cohort(prefix, cohort_residue(prefix), order)

    def cohort_index(self, prefix: str) -> int:
        """The cohort id of a prefix, or -1."""
        key = _encode(prefix)
        keys = self._keys
        c = bisect.bisect_left(keys, key)
        return c if c < len(keys) and keys[c] == key else -1

    def by_size(self) -> Iterator[int]:
        """Cohort ids, largest first (ties in id order)."""
        sizes = self._sizes
        return iter(sorted(range(len(sizes)), key=lambda c: -sizes[c]))

    def draw(self, rng: random.Random, area: str | None = None) -> int:
        """A person drawn as a doctor meets them: weighted by how often their age
        consults, from one region (see :attr:`regions`) or from everyone."""
        random_ = rng.random
        if area is None or area not in self.area_cohorts:
            areas, cum = self._national()
            i = bisect.bisect_right(cum, random_() * cum[-1])
            area = areas[min(i, len(areas) - 1)]
        cohorts, weights = self.area_cohorts[area], self.area_weights[area]
        i = bisect.bisect_right(weights, random_() * weights[-1])
        c = cohorts[min(i, len(cohorts) - 1)]
        return self._starts[c] + int(random_() * self._sizes[c])

    def _national(self) -> tuple[list[str], list[float]]:
        found = self._national_cache
        if found is None:
            areas = list(self.area_weights)
            found = self._national_cache = (
                areas,
                list(itertools.accumulate(self.area_weights[a][-1] for a in areas)),
            )
        return found

    def draw_area(self, rng: random.Random) -> str:
        """A region, weighted by the people born there (never abroad)."""
        areas = [a for a in self.area_people if a != "99"] or ["99"]
        return rng.choices(areas, [self.area_people[a] for a in areas])[0]

    def size_histogram(
        self, edges: tuple[int, ...] = (1, 2, 5, 20, 50, 120, 400, 1000)
    ) -> dict[str, int]:
        """Cohorts and people by cohort size: ``{"<edge>": cohorts, "people<edge>": ...}``."""
        out: dict[str, int] = {}
        for lo, hi in itertools.pairwise(edges):
            sizes = [n for n in self._sizes if lo <= n < hi]
            out[f"{lo}-{hi - 1}"] = len(sizes)
            out[f"people {lo}-{hi - 1}"] = sum(sizes)
        return out


def build_registry(scale: float = 1.0, *, seed: int = 0) -> Registry:
    """Build the registry of a portal of ``scale`` (1: about 2,000,000 people).

    Every cohort of the model's France is kept with probability
    ``scale * PEOPLE_PER_SCALE / france_people()``, whole. The same scale
    and seed give the same registry.

    Raises:
        ValueError: ``scale`` is not positive, or too small to hold anyone.
    """
    if not scale > 0:
        raise ValueError("scale must be positive")
    fraction = min(1.0, scale * PEOPLE_PER_SCALE / france_people())
    cohorts = draw_cohorts(fraction, seed)
    if not cohorts:
        raise ValueError("scale too small: the registry would be empty")
    encoded = sorted((_encode(p), alive, top) for p, (alive, top) in cohorts.items())
    return Registry(
        array("q", (k for k, _, _ in encoded)),
        array("H", (a for _, a, _ in encoded)),
        array("H", (t for _, _, t in encoded)),
        fraction=fraction,
        seed=seed,
    )
