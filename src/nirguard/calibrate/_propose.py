"""Proposing a policy from the distributions: target share, margin, floors and ceilings.

For every window of every calibrated field, in the candidate's own windows:

1. **base**: the smallest threshold at which that window alone refuses at
   most ``target`` of the kind's lookups in the log (the observed maximum
   once the heaviest ``target`` share of lookups is set aside);
2. **margin**: base x (1 + ``margin``), rounded up: next month is busier
   than the month logged;
3. **floor and ceiling**: never tighter than :data:`FLOORS` (ordinary work
   a short log may not show: twins, a family, a care home round) and never
   looser than :data:`CEILINGS` (past them no practitioner works by hand);
4. a longer window never holds less than a shorter one.

When the replay of the proposal still refuses more than ``target``, the
fields that refused are raised to the observed maximum plus the margin
(``mode="max"``), under the same ceilings. Fields the log says nothing about
are kept from the candidate, as are those a practitioner's own traffic does
not measure (lockout lengths, portal-wide ``portal`` and ``hot_cohort``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from nirguard.calibrate._stats import FIELDS, AccountMaxima, KindStats, excess
from nirguard.policy import QuotaPolicy

__all__ = ["CEILINGS", "FLOORS", "Choice", "ceiling", "floor", "over_ceiling", "propose"]

Rates = tuple[tuple[int, int], ...]
#: Never looser than these (amount, seconds): past them, nobody works by hand.
CEILINGS: Final[dict[str, Rates]] = {
    "lookups": ((60, 60), (600, 3600), (2000, 86400)),
    "distinct_patients": ((60, 600), (1000, 86400), (3000, 604800)),
    "cohort": ((30, 86400), (100, 604800)),
    "portal_cohort": ((50, 86400), (200, 604800)),
    "misses": ((30, 3600), (100, 86400)),
    "invalid_nirs": ((30, 3600), (100, 86400)),
    "break_glass": ((20, 86400), (50, 604800)),
}
#: Never tighter than these (amount, seconds): ordinary bursts a short log may miss.
FLOORS: Final[dict[str, Rates]] = {
    "lookups": ((10, 60), (100, 86400)),
    "distinct_patients": ((5, 600), (40, 86400), (100, 604800)),
    "cohort": ((3, 86400),),
    "portal_cohort": ((3, 86400), (6, 604800)),
    "misses": ((5, 3600), (10, 86400)),
    "invalid_nirs": ((5, 3600), (10, 86400)),
    "break_glass": ((1, 86400), (2, 604800)),  # the shipped default: sized on the replay
}
RATIO_CEILING: Final = 0.8
RATIO_FLOOR: Final = 0.3
_DATA: Final = {
    "lookups": "lookups",
    "distinct_patients": "new_patients",
    "cohort": "cohort_known",
    "portal_cohort": "hot_new",
    "misses": "misses",
    "invalid_nirs": "invalid",
    "break_glass": "break_glass",
}
_UNITS: Final = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))

Mode = Literal["target", "max"]


@dataclass(frozen=True, slots=True)
class Choice:
    """How one proposed value was chosen.

    Attributes:
        field: the policy field.
        period: the window (seconds); ``None`` for a field without windows.
        value: the proposed value (``None``: off).
        how: one sentence saying why.
        base: the smallest value meeting the target on the log (or the
            observed maximum in ``max`` mode).
        observed: the largest count observed in that window.
        refused: what the window alone would refuse at ``value``, in lookups.
    """

    field: str
    period: int | None
    value: float | None
    how: str
    base: float | None = None
    observed: float | None = None
    refused: int | None = None


def period_text(seconds: int) -> str:
    """``60`` -> ``"minute"``, ``600`` -> ``"10 minutes"``, ``604800`` -> ``"7 days"``."""
    for size, unit in _UNITS:
        if seconds % size == 0:
            n = seconds // size
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds} seconds"  # pragma: no cover - seconds always divide


def ceiling(name: str, period: int) -> int:
    """The loosest value a proposal may hold for ``name`` over ``period`` seconds."""
    return min(a if s >= period else a * math.ceil(period / s) for a, s in CEILINGS[name])


def floor(name: str, period: int) -> int:
    """The tightest value a proposal may hold for ``name`` over ``period`` seconds."""
    return max((a for a, s in FLOORS[name] if s <= period), default=1)


def over_ceiling(maxima: AccountMaxima) -> str | None:
    """Why an account's own maxima put it beyond any sane policy, or ``None``."""
    for (name, period), value in sorted(maxima.items()):
        if name == "miss_ratio":
            if value > RATIO_CEILING:
                return f"miss ratio {value:.2f} > ceiling {RATIO_CEILING}"
        elif value > (limit := ceiling(name, period)):
            return f"{name} per {period_text(period)}: {int(value):,} > ceiling {limit:,}"
    return None


def _base(hist: dict[int, int], budget: float) -> int:
    """Smallest threshold whose excess over ``hist`` stays within ``budget``."""
    if not hist:
        return 0
    top = max(hist)
    above = 0  # windows with a count >= t+1
    spent = 0
    t = top
    while t > 0:
        above += hist.get(t, 0)
        if spent + above > budget:
            return t
        spent += above
        t -= 1
    return 0


def _rate(
    k: KindStats, name: str, candidate: QuotaPolicy, target: float, margin: float, mode: Mode
) -> tuple[str | None, list[Choice]]:
    current = getattr(candidate, name)
    if current is None:
        return None, [Choice(name, None, None, "off in the candidate: kept off")]
    periods = sorted({item.get_expiry() for item in candidate.items(name)})
    if not getattr(k, _DATA[name]):
        why = "no data in the log"
        if name == "cohort":
            why = "no cohort pseudonyms in the log (no cohort check was on)"
        elif name == "portal_cohort":
            why = "no new patient in a hot cohort in the log (or hot_cohort was off)"
        return current, [Choice(name, None, None, f"{why}: kept {current!r}")]
    budget = target * k.attempts
    choices: list[Choice] = []
    values: list[int] = []
    for period in periods:
        hist = k.histograms[name][period]
        observed = max(hist, default=0)
        base = _base(hist, budget) if mode == "target" else observed
        value = max(1, math.ceil(base * (1 + margin)))
        low, high = floor(name, period), ceiling(name, period)
        if mode == "target":
            how = (
                f"base {base:,} (observed max {observed:,}; at {base:,} this window alone "
                f"refuses {excess(hist, base):,} of {k.attempts:,} lookups, target "
                f"{target:.2%}) + {margin:.0%} margin -> {value:,}"
            )
        else:
            how = f"observed max {observed:,} + {margin:.0%} margin -> {value:,}"
        if value < low:
            value = low
            how += f"; raised to the floor {low:,}"
        if value > high:
            value = high
            how += f"; CAPPED at the ceiling {high:,}: it refuses {excess(hist, high):,} lookups"
        if values and value < values[-1]:
            value = values[-1]
            how += f"; raised to {value:,}, what the shorter window allows"
        values.append(value)
        choices.append(Choice(name, period, value, how, base, observed, excess(hist, value)))
    text = ";".join(f"{v}/{period_text(p)}" for v, p in zip(values, periods, strict=True))
    return text, choices


def _ratio(
    k: KindStats, candidate: QuotaPolicy, target: float, margin: float, mode: Mode
) -> tuple[float | None, Choice]:
    current = candidate.miss_ratio
    if current is None:
        return None, Choice("miss_ratio", None, None, "off in the candidate: kept off")
    if not k.misses or not k.ratios:
        return current, Choice("miss_ratio", None, current, f"no data in the log: kept {current}")
    observed = max(k.ratios)
    if mode == "target":
        budget = target * k.attempts
        base, spent = 0, 0
        for percent in sorted(k.ratios, reverse=True):
            if spent + k.ratios[percent][1] > budget:
                base = percent  # a lower threshold would lock these windows out too
                break
            spent += k.ratios[percent][1]
        how = (
            f"base {base / 100:.2f} (observed peak {observed / 100:.2f} over days of at least "
            f"{k.ratio_min} lookups; windows above the base hold {spent:,} lookups)"
        )
    else:
        base = observed
        how = f"observed peak {observed / 100:.2f}"
    value = math.ceil(base / 100 * (1 + margin) * 20 - 1e-9) / 20
    how += f" + {margin:.0%} margin -> {value:.2f}"
    if value < RATIO_FLOOR:
        value = RATIO_FLOOR
        how += f"; raised to the floor {RATIO_FLOOR}"
    if value > RATIO_CEILING:
        value = RATIO_CEILING
        how += f"; CAPPED at the ceiling {RATIO_CEILING}"
    return value, Choice("miss_ratio", int(k.ratio_window), value, how, base / 100, observed / 100)


def propose(
    k: KindStats,
    candidate: QuotaPolicy,
    *,
    target: float,
    margin: float,
    modes: dict[str, Mode] | None = None,
) -> tuple[QuotaPolicy, list[Choice]]:
    """A policy for kind ``k`` derived from ``candidate``, and how each value was chosen.

    Raises:
        PolicyError: the result is not a valid policy (a bug: values are checked).
    """
    modes = modes or {}
    updates: dict[str, Any] = {}
    choices: list[Choice] = []
    for name in FIELDS:
        value, how = _rate(k, name, candidate, target, margin, modes.get(name, "target"))
        updates[name] = value
        choices.extend(how)
    ratio, how_ratio = _ratio(k, candidate, target, margin, modes.get("miss_ratio", "target"))
    updates["miss_ratio"] = ratio
    choices.append(how_ratio)
    if k.kind is not None:
        updates["name"] = k.kind
    data = candidate.model_dump()
    data.update(updates)
    return QuotaPolicy(**data), choices
