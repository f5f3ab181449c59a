"""Seedable generator of valid, synthetic NIRs for tests.

Every number it makes passes :func:`nirguard.nir.validate` (strict). The
numbers are synthetic: they follow the rules, but any resemblance to a real
person's number is a coincidence of the format, so never use them as proof
that a real person exists or does not.

>>> from nirguard.testing import NIRGenerator
>>> gen = NIRGenerator(seed=7)
>>> from nirguard import nir
>>> all(nir.is_valid(n) for n in gen.many(1000))
True
>>> nir.parse(gen.generate(place="corsica")).department in ("2A", "2B")
True
>>> NIRGenerator(seed=1).many(3) == NIRGenerator(seed=1).many(3)
True
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Final, Literal

from nirguard.nir import compute_key, parse

__all__ = ["NIRGenerator", "Place", "synthetic_registry", "valid_nir"]

Place = Literal["metropolitan", "corsica", "overseas", "abroad"]

_METROPOLITAN: Final = tuple(f"{d:02d}" for d in (*range(1, 20), *range(21, 96)))
_OVERSEAS: Final = (
    "971",
    "972",
    "973",
    "974",
    "975",
    "976",
    "977",
    "978",
    "984",
    "986",
    "987",
    "988",
)
# A few INSEE country codes (Germany, Spain, Portugal, Italy, Morocco, Tunisia, Algeria, ...).
_COUNTRIES: Final = ("109", "134", "139", "127", "350", "351", "352", "331", "217", "404", "436")
# Month codes that are not a calendar month but do occur: unknown (20), old codes.
_SPECIAL_MONTHS: Final = (20, 30, 31, 35, 42, 50, 62, 99)

# The default mix of places of birth in :meth:`NIRGenerator.many`.
_MIX: Final[tuple[tuple[Place, float], ...]] = (
    ("metropolitan", 0.86),
    ("corsica", 0.01),
    ("overseas", 0.04),
    ("abroad", 0.09),
)


class NIRGenerator:
    """A seedable source of valid NIRs.

    Args:
        seed: seed of the private :class:`random.Random`; ``None`` for a
            random seed. The same seed gives the same sequence.
    """

    __slots__ = ("_rng",)

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def generate(
        self,
        *,
        place: Place | None = None,
        provisional: bool = False,
        special_month: bool = False,
        sex: int | None = None,
        birth_year: int | None = None,
        birth_month: int | None = None,
    ) -> str:
        """Return one valid NIR in canonical form.

        Args:
            place: where the person was born; ``None`` draws from a realistic mix.
            provisional: make a provisional number (first digit 3, 4, 7 or 8).
            special_month: use a month code that is not a calendar month (20, 30-42, 50-99).
            sex: 1 or 2 (for provisional numbers, 3/7 or 4/8 follow it).
            birth_year: 0-99.
            birth_month: 1-12 (ignored with ``special_month``).

        Raises:
            ValueError: an option is out of range.
        """
        rng = self._rng
        if sex is None:
            sex = rng.choice((1, 2))
        elif sex not in (1, 2):
            raise ValueError("sex must be 1 or 2")
        first = sex
        if provisional:
            first = rng.choice((3, 7)) if sex == 1 else rng.choice((4, 8))
        year = rng.randrange(100) if birth_year is None else birth_year
        if not 0 <= year <= 99:
            raise ValueError("birth_year must be 0-99")
        if special_month:
            month = rng.choice(_SPECIAL_MONTHS)
        elif birth_month is None:
            month = rng.randint(1, 12)
        elif 1 <= birth_month <= 12:
            month = birth_month
        else:
            raise ValueError("birth_month must be 1-12")
        if place is None:
            place = self._draw_place()
        if place == "metropolitan":
            where = rng.choice(_METROPOLITAN) + f"{rng.randint(1, 990):03d}"
        elif place == "corsica":
            where = rng.choice(("2A", "2B")) + f"{rng.randint(1, 366):03d}"
        elif place == "overseas":
            where = rng.choice(_OVERSEAS) + f"{rng.randint(1, 90):02d}"
        elif place == "abroad":
            where = "99" + rng.choice(_COUNTRIES)
        else:
            raise ValueError("place must be metropolitan, corsica, overseas or abroad")
        body = f"{first}{year:02d}{month:02d}{where}{rng.randint(1, 999):03d}"
        return f"{body}{compute_key(body):02d}"

    def _draw_place(self) -> Place:
        draw = self._rng.random()
        for place, weight in _MIX:
            draw -= weight
            if draw < 0:
                return place
        return "metropolitan"

    def many(self, count: int) -> list[str]:
        """Return ``count`` valid NIRs from a realistic mix of places of birth,
        with about 1% provisional numbers and 1% special month codes."""
        out = []
        rng = self._rng
        for _ in range(count):
            draw = rng.random()
            out.append(self.generate(provisional=draw < 0.01, special_month=0.01 <= draw < 0.02))
        return out

    def __iter__(self) -> Iterator[str]:
        """An endless stream of valid NIRs (same mix as :meth:`many`)."""
        while True:
            yield from self.many(1024)

    def __repr__(self) -> str:
        return "NIRGenerator()"


def valid_nir(seed: int | None = None, **options: object) -> str:
    """One valid NIR; ``options`` are those of :meth:`NIRGenerator.generate`.

    >>> from nirguard import nir
    >>> nir.is_valid(valid_nir(seed=3, place="overseas"))
    True
    """
    return NIRGenerator(seed).generate(**options)  # type: ignore[arg-type]


_LAST_NAMES: Final = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
)
_FIRST_NAMES: Final = ("Camille", "Louis", "Jade", "Gabriel", "Léa", "Hugo", "Chloé", "Arthur")


def synthetic_registry(size: int = 500, seed: int = 2022) -> dict[str, dict[str, Any]]:
    """A fake identity registry for demos and tests: canonical NIR -> identity.

    The same seed and size give the same registry. Names are drawn from a
    short list; sex and birth year and month come from the NIR.

    >>> registry = synthetic_registry(size=3, seed=1)
    >>> len(registry), sorted(next(iter(registry.values())))
    (3, ['birth_month', 'birth_year', 'first_name', 'last_name', 'sex'])
    """
    rng = random.Random(seed)
    registry: dict[str, dict[str, Any]] = {}
    for number in NIRGenerator(seed).many(size):
        parsed = parse(number)
        registry[parsed.canonical] = {
            "last_name": rng.choice(_LAST_NAMES),
            "first_name": rng.choice(_FIRST_NAMES),
            "sex": parsed.sex,
            "birth_year": parsed.birth_year,
            "birth_month": parsed.birth_month,
        }
    return registry
