"""Each account against its own normal, and its peers: the ``baseline`` signal.

The memory engine's half of the signal; ``_redis/_baseline.lua`` is its twin,
step for step, on the same fields of the account record (counts and EWMAs,
never a pseudonym):

* today (a local day, ``baseline_utc_offset`` from UTC): ``bl:d`` the day,
  ``bl:n`` new patients let through, ``bl:l`` lookups let through, ``bl:o``
  new patients at hours the account does not work;
* history: ``bl:h`` days with lookups, ``bl:m`` / ``bl:v`` the EWMA mean and
  variance of new patients a day, ``bl:r`` the EWMA share of repeats;
  ``bl:p`` an hours profile (24 bytes: 12 two-hour slots on weekdays, then 12
  at weekends; counts of lookups, halved when one reaches 255);
* ``blc``: a CUSUM over days of (new patients - expected) / sd - slack, where
  a new patient at hours the account does not work weighs
  ``baseline_off_hours`` (``unlock()`` forgets it, keeps the history).

The expected day blends the account's own mean and variance with its peers'
(``baseline_prior``) by shrinkage: weight ``days / (days + baseline_prior_days)``
on its own. A new patient is refused (``baseline``) when the CUSUM as of
yesterday plus today so far, this patient included, passes ``baseline``.
Days roll when the first lookup of a new day reads the record: nothing runs
in the background, and a refused lookup writes nothing of it.

>>> from nirguard import QuotaPolicy
>>> p = QuotaPolicy.only(distinct_patients="1000/day", baseline=4.0)._compiled
>>> state: dict[str, object] = {}
>>> day, slot = clock(p, 10 * 3600.0)
>>> breach(state, p, slot) is None
True
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy

__all__ = [
    "ALPHA",
    "FIELDS",
    "breach",
    "clock",
    "count",
    "expected",
    "roll",
    "shown",
    "summary",
]

#: Weight of the newest day in the EWMAs once the account has 21 days of history.
ALPHA: Final = 1 / 21
#: The account record's baseline fields (see the module docstring).
FIELDS: Final = (
    "bl:d",
    "bl:n",
    "bl:l",
    "bl:o",
    "bl:x",
    "bl:h",
    "bl:m",
    "bl:v",
    "bl:r",
    "bl:p",
    "blc",
)
_SLOTS: Final = 24
#: An hours profile says "usual" or not once it holds this many lookups.
_PROFILE_MIN: Final = 60
#: A slot is usual when it holds at least this share of the profile's lookups.
_USUAL_SHARE: Final = 0.01
_DAY: Final = 86400.0
#: The least day-to-day spread assumed: Poisson noise and 20% of the mean.
_CV: Final = 0.2


def clock(p: CompiledPolicy, now: float) -> tuple[int, int]:
    """The local day number and the hours slot (0-11 weekdays, 12-23 weekends) of ``now``."""
    local = now + p.baseline_offset
    day = math.floor(local / _DAY)
    hour = math.floor((local - day * _DAY) / 3600.0)
    weekend = 12 if (day + 3) % 7 >= 5 else 0  # day 0 (1970-01-01) was a Thursday
    return day, min(hour, 23) // 2 + weekend


def expected(state: dict[str, Any], p: CompiledPolicy) -> tuple[float, float]:
    """New patients a day the account is expected to make, and their standard deviation:
    its own EWMAs and its peers' prior, blended by shrinkage."""
    h = state.get("bl:h", 0)
    w = min(1.0, h / p.baseline_prior_days)
    mu = w * state.get("bl:m", 0.0) + (1 - w) * p.baseline_mean
    var = w * state.get("bl:v", 0.0) + (1 - w) * p.baseline_sd * p.baseline_sd
    return mu, math.sqrt(max(var, mu + _CV * _CV * mu * mu, 1.0))


def roll(record: dict[str, Any], p: CompiledPolicy, day: int) -> dict[str, Any]:
    """The fields that change when ``day`` starts (empty when it already has): the day
    that ended goes into the CUSUM and the EWMAs, today's counts start at zero."""
    if record.get("bl:d") == day:
        return {}
    out: dict[str, Any] = {"bl:d": day, "bl:n": 0, "bl:l": 0, "bl:o": 0}
    lookups = record.get("bl:l", 0)
    if lookups <= 0:
        return out
    n, h = record.get("bl:n", 0), record.get("bl:h", 0)
    mu, sd = expected(record, p)
    x = n + (p.baseline_off_hours - 1) * record.get("bl:o", 0)
    top = 2 * (p.baseline or 0.0)
    c = record.get("blc", 0.0) + (x - mu) / sd - p.baseline_slack
    out["blc"] = top if record.get("bl:x") else min(max(c, 0.0), top)
    out["bl:x"] = 0
    a = max(ALPHA, 1 / (h + 1))
    m = record.get("bl:m", 0.0)
    delta = n - m
    up = max(delta, 0.0)  # the upper semi-variance: quiet days (a Saturday) widen nothing
    out["bl:m"] = m + a * delta
    out["bl:v"] = (1 - a) * (record.get("bl:v", 0.0) + a * 2 * up * up)
    r = record.get("bl:r", 0.0)
    out["bl:r"] = r + a * ((lookups - n) / lookups - r)
    out["bl:h"] = min(h + 1, 10_000)
    return out


def _usual(profile: bytes, slot: int) -> bool:
    total = sum(profile)
    return total < _PROFILE_MIN or profile[slot] >= _USUAL_SHARE * total


def breach(
    state: dict[str, Any], p: CompiledPolicy, slot: int
) -> tuple[int, int, float, int, int] | None:
    """Whether one more new patient now passes the threshold (``state``: the record with
    today's roll applied): ``(new patients today, the day's limit, expected, days of
    history, off-hours new patients today)``, or ``None``."""
    mu, sd = expected(state, p)
    n = state.get("bl:n", 0) + 1
    off = state.get("bl:o", 0) + (0 if _usual(state.get("bl:p", b""), slot) else 1)
    x = n + (p.baseline_off_hours - 1) * off
    c = state.get("blc", 0.0)
    threshold = p.baseline or 0.0
    if c + max(0.0, (x - mu) / sd - p.baseline_slack) <= threshold:
        return None
    limit = mu + (threshold + p.baseline_slack - c) * sd
    return n, max(0, math.floor(limit)), mu, int(state.get("bl:h", 0)), off


def count(state: dict[str, Any], changes: dict[str, Any], new: bool, slot: int) -> None:
    """Count a lookup let through (a new patient or not) into today and the hours profile."""
    profile = bytearray(state.get("bl:p", b"") or bytes(_SLOTS))
    if new and not _usual(bytes(profile), slot):
        changes["bl:o"] = state.get("bl:o", 0) + 1
    if profile[slot] >= 255:
        profile = bytearray(b // 2 for b in profile)
    profile[slot] += 1
    changes["bl:p"] = bytes(profile)
    changes["bl:l"] = state.get("bl:l", 0) + 1
    if new:
        changes["bl:n"] = state.get("bl:n", 0) + 1


def summary(record: dict[str, Any], p: CompiledPolicy, now: float) -> dict[str, float] | None:
    """The account's normal as ``status()`` shows it (``None`` without any history)."""
    day, _ = clock(p, now)
    state = {**record, **roll(record, p, day)}
    if not state.get("bl:h", 0) and not state.get("bl:l", 0):
        return None
    mu, sd = expected(state, p)
    values = (state.get("bl:h", 0), state.get("bl:m", 0.0), mu, sd)
    return shown((*values, state.get("bl:r", 0.0), state.get("bl:n", 0), state.get("blc", 0.0)))


def shown(values: tuple[float, ...]) -> dict[str, float]:
    """:func:`summary`'s dict from its values in order (the Redis engine sends them)."""
    h, m, mu, sd, r, n, c = values
    return {
        "days": float(h),
        "new_per_day": round(m, 2),
        "expected": round(mu, 2),
        "sd": round(sd, 2),
        "repeat_share": round(r, 3),
        "new_today": float(n),
        "cusum": round(c, 2),
    }
