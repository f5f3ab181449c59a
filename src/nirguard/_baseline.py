"""Each account against its own normal, and its peers: the ``baseline`` signal.

The memory engine's half of the signal; ``_redis/_baseline.lua`` is its twin,
step for step, on the same fields of the account record (counts and EWMAs,
never a pseudonym):

* today (a local day, ``baseline_utc_offset`` from UTC): ``bl:d`` the day,
  ``bl:n`` new patients let through, ``bl:u`` of them born at places the
  account seldom serves, ``bl:o`` of them at hours it does not work,
  ``bl:l`` lookups let through, ``blx`` whether the day breached;
* history: ``bl:h`` days with lookups; ``bl:m`` / ``bl:v`` the EWMA mean and
  upper semi-variance of new patients a day, ``bl:a`` / ``bl:w`` the same of
  new patients from unusual places; ``bl:r`` the EWMA share of repeats;
  ``bl:p`` an hours profile (24 bytes: 12 two-hour slots on weekdays, then
  12 at weekends) and ``bl:q`` a places profile (64 bytes: the department of
  birth, keyed-hashed into 64 buckets by the guard), counts of lookups halved
  when one reaches 255;
* ``blc``: a CUSUM over days; ``unlock()`` forgets it and sets ``blx`` to -1: the
  rest of the day goes through and rolls in at zero (the history stays); a reason
  that the account step grants for a breach sets it to -2 (vouched): the rest of
  the day breaches again only past 1.5 times ``baseline``, with the CUSUM carried
  from the days before counted at most at 0.8 times ``baseline``, and it rolls in at
  most at that.

A day's score is ``z = (x - expected) / sd`` of ``x``, the new patients from
unusual places (those at unusual hours weigh ``baseline_off_hours``), counted
only when the day's volume of new patients is also above its usual by one sd
(a locum's new practice changes places, not volume; a busy day changes volume,
not places). The volume alone also scores, ``baseline_volume`` sd less than it
measures: ``z = max(z, (n - expected) / sd - baseline_volume)``, so that a harvest
on a working owner's account, born where the owner's patients are, still counts
as the volume the owner never did (``None``: the volume only gates). The expected day blends the account's own EWMAs with its peers'
prior (``baseline_prior``), the prior fading out over ``baseline_prior_days``
days of history. Within the day, today so far is compared with the share of the
day that the account's hours profile has done by the end of this two-hour slot
(at least a third; the whole day until the profile holds enough lookups): the
share's mean, and an sd of at least its Poisson noise. A new patient is refused
(``baseline``) when ``cusum + max(0, z - baseline_slack)``, this patient included,
passes ``baseline``; at the day's end ``cusum += z - baseline_slack`` (kept in
``[0, 2 * baseline]``), and a day that breached rolls in at the cap, so that a
harvester stopped late in a day is refused from the next day's first new
patient. A day enters the EWMAs at most two sd above what was expected of it, so
that one harvested day does not widen the normal the next is measured against.
Nothing runs in the background: a day rolls when its next lookup
reads the record, and a refused lookup writes nothing of it.

>>> from nirguard import QuotaPolicy
>>> p = QuotaPolicy.only(distinct_patients="1000/day", baseline=4.0)._compiled
>>> day, slot = clock(p, 10 * 3600.0)
>>> breach({}, p, slot, 3) is None
True
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy
    from nirguard._engine import Decision

__all__ = [
    "ALPHA",
    "FIELDS",
    "PLACES",
    "breach",
    "check",
    "clock",
    "count",
    "expected",
    "open_day",
    "roll",
    "shown",
    "so_far",
    "state_of",
    "summary",
]

#: Weight of the newest day in the EWMAs once the account has 21 days of history.
ALPHA: Final = 1 / 21
#: The account record's baseline fields (see the module docstring).
FIELDS: Final = (
    *("bl:d", "bl:n", "bl:u", "bl:o", "bl:l", "blx"),
    *("bl:h", "bl:m", "bl:v", "bl:a", "bl:w", "bl:r", "bl:p", "bl:q", "blc"),
)
#: Buckets of the places profile (a place outside them: unknown, always unusual).
PLACES: Final = 64
_SLOTS: Final = 24
#: A profile says "usual" or not once it holds this many lookups.
_PROFILE_MIN: Final = 60
#: An hours slot is usual from 1% of the profile's lookups, a place from 4%.
_USUAL_HOURS: Final = 0.01
_USUAL_PLACE: Final = 0.04
#: The least day-to-day spread assumed: Poisson noise and 20% of the mean.
_CV: Final = 0.2
_DAY: Final = 86400.0
#: The peers' nights: two-hour slots 22:00-06:00 (local), weekdays and weekends alike.
_NIGHT: Final = (11, 0, 1, 2)
#: Within a day, the least share of it counted as done: a score at 07:00 compares
#: with a third of the day, not with a sliver of it.
_SO_FAR_MIN: Final = 1 / 3
#: ``blx`` of a day that a stated reason vouched for: the rest of it breaches again
#: only past ``_VOUCHED_BAR`` times ``baseline``, and it rolls in at most at
#: ``_VOUCHED_ROLL`` times ``baseline`` (not at the cap: the next day does not start
#: refused; measured in docs/guard.md).
_VOUCHED: Final = -2
_VOUCHED_BAR: Final = 1.5
_VOUCHED_ROLL: Final = 0.8
#: A day goes into the EWMAs at most this many sd above what was expected: one
#: harvested day must not widen the normal that the next day is measured against.
_CLIP: Final = 2.0


def clock(p: CompiledPolicy, now: float) -> tuple[int, int]:
    """The local day number and the hours slot (0-11 weekdays, 12-23 weekends) of ``now``."""
    local = now + p.baseline_offset
    day = math.floor(local / _DAY)
    hour = math.floor((local - day * _DAY) / 3600.0)
    weekend = 12 if (day + 3) % 7 >= 5 else 0  # day 0 (1970-01-01) was a Thursday
    return day, min(hour, 23) // 2 + weekend


def _blend(own: float, var: float, h: int, p: CompiledPolicy) -> tuple[float, float]:
    w = min(1.0, h / p.baseline_prior_days)
    mu = w * own + (1 - w) * p.baseline_mean
    v = w * var + (1 - w) * p.baseline_sd * p.baseline_sd
    return mu, math.sqrt(max(v, mu + _CV * _CV * mu * mu, 1.0))


def expected(state: dict[str, Any], p: CompiledPolicy) -> tuple[float, float, float, float]:
    """New patients a day expected and their sd, then the same of new patients from
    unusual places: the account's own EWMAs and its peers' prior, blended."""
    h = state.get("bl:h", 0)
    mu, sd = _blend(state.get("bl:m", 0.0), state.get("bl:v", 0.0), h, p)
    mu_u, sd_u = _blend(state.get("bl:a", 0.0), state.get("bl:w", 0.0), h, p)
    return mu, sd, mu_u, sd_u


def _part(mu: float, sd: float, f: float) -> tuple[float, float]:
    """The share ``f`` of a day's mean and its sd (Poisson noise of the part, at least)."""
    if f >= 1.0:
        return mu, sd
    m = f * mu
    return m, math.sqrt(max(f * sd * sd, m + _CV * _CV * m * m, 1.0))


def so_far(state: dict[str, Any], slot: int) -> float:
    """The share of the account's day that is done by the end of ``slot``: its hours
    profile's lookups in this day's slots up to ``slot``, over all of this day's
    (weekdays or weekends); 1 until that profile holds ``_PROFILE_MIN`` lookups."""
    hours: bytes = state.get("bl:p", b"")
    first = slot - slot % 12
    total = sum(hours[first : first + 12])
    if total < _PROFILE_MIN:
        return 1.0
    return max(_SO_FAR_MIN, sum(hours[first : slot + 1]) / total)


def _score(
    state: dict[str, Any], p: CompiledPolicy, n: int, u: int, off: int, f: float = 1.0
) -> float:
    mu, sd, mu_u, sd_u = expected(state, p)
    mu, sd = _part(mu, sd, f)
    mu_u, sd_u = _part(mu_u, sd_u, f)
    x = u + (p.baseline_off_hours - 1) * off
    z = (x - mu_u) / sd_u
    zn = (n - mu) / sd
    if n < mu + sd:
        z = min(z, zn)
    return z if p.baseline_volume is None else max(z, zn - p.baseline_volume)


def _ewma(m: float, v: float, x: float, a: float) -> tuple[float, float]:
    delta = x - m
    up = max(delta, 0.0)  # the upper semi-variance: quiet days (a Saturday) widen nothing
    return m + a * delta, (1 - a) * (v + a * 2 * up * up)


def roll(record: dict[str, Any], p: CompiledPolicy, day: int) -> dict[str, Any]:
    """The fields that change when ``day`` starts (empty when it already has): the day
    that ended goes into the CUSUM and the EWMAs, today's counts start at zero."""
    if record.get("bl:d") == day:
        return {}
    out: dict[str, Any] = {"bl:d": day, "bl:n": 0, "bl:u": 0, "bl:o": 0, "bl:l": 0, "blx": 0}
    lookups = record.get("bl:l", 0)
    if lookups <= 0:
        return out
    n, u, h = record.get("bl:n", 0), record.get("bl:u", 0), record.get("bl:h", 0)
    top = 2 * (p.baseline or 0.0)
    c = record.get("blc", 0.0) + _score(record, p, n, u, record.get("bl:o", 0))
    c -= p.baseline_slack
    x = record.get("blx", 0)  # 1: breached; -1: unlock() forgave it; -2: a reason vouched
    cap = (p.baseline or 0.0) * _VOUCHED_ROLL if x == _VOUCHED else top
    out["blc"] = top if x == 1 else 0.0 if x == -1 else min(max(c, 0.0), cap)
    a = max(ALPHA, 1 / (h + 1))
    mu, sd, mu_u, sd_u = expected(record, p)
    n_in, u_in = min(n, mu + _CLIP * sd), min(u, mu_u + _CLIP * sd_u)
    out["bl:m"], out["bl:v"] = _ewma(record.get("bl:m", 0.0), record.get("bl:v", 0.0), n_in, a)
    out["bl:a"], out["bl:w"] = _ewma(record.get("bl:a", 0.0), record.get("bl:w", 0.0), u_in, a)
    r = record.get("bl:r", 0.0)
    out["bl:r"] = r + a * ((lookups - n) / lookups - r)
    out["bl:h"] = min(h + 1, 10_000)
    return out


def _usual(profile: bytes, at: int, share: float) -> bool:
    if not 0 <= at < len(profile):
        return False
    total = sum(profile)
    return total >= _PROFILE_MIN and profile[at] >= share * total


def _unusual(state: dict[str, Any], p: CompiledPolicy, slot: int, place: int) -> tuple[int, int]:
    """Whether a new patient now is off-hours, and from an unusual place (0 or 1 each).
    Until the account has ``baseline_prior_days`` days of its own, its peers' hours
    apply too: no practice works at night (22:00-06:00 local)."""
    hours = state.get("bl:p", b"")
    off = 0 if sum(hours) < _PROFILE_MIN or _usual(hours, slot, _USUAL_HOURS) else 1
    if state.get("bl:h", 0) < p.baseline_prior_days and slot % 12 in _NIGHT:
        off = 1
    return off, 0 if _usual(state.get("bl:q", b""), place, _USUAL_PLACE) else 1


def open_day(record: dict[str, Any], changes: dict[str, Any], p: CompiledPolicy, now: float) -> int:
    """Roll the account's day into ``changes`` when one started; the hours slot of ``now``
    (0 with ``baseline`` off: nothing to do)."""
    if p.baseline is None:
        return 0
    day, slot = clock(p, now)
    changes.update(roll(record, p, day))
    return slot


def state_of(record: dict[str, Any], changes: dict[str, Any]) -> int:
    """The day's ``blx`` as this call leaves it."""
    return int(changes.get("blx", record.get("blx", 0)))


def check(
    record: dict[str, Any],
    changes: dict[str, Any],
    p: CompiledPolicy,
    slot: int,
    place: int,
    base: Decision,
    vouched: bool = False,
) -> tuple[str, int | None, int | None] | None:
    """The account step's check of a new patient: ``("baseline", new patients today, of
    them from unusual places)`` with the rest of the evidence on ``base``, or ``None``.
    A breach marks the day (``blx``), whatever the account step decides next: breached,
    or, when ``vouched`` (a reason stated with break-glass budget left: the account step
    grants it), acknowledged: the rest of the day goes through and rolls in at zero."""
    found = breach({**record, **changes}, p, slot, place)
    if found is None:
        return None
    changes["blx"] = _VOUCHED if vouched and state_of(record, changes) != _VOUCHED else 1
    base.usual, base.history, base.off_hours = found[2:]
    return "baseline", found[0], found[1]


def breach(
    state: dict[str, Any], p: CompiledPolicy, slot: int, place: int
) -> tuple[int, int, float, int, int] | None:
    """Whether one more new patient now passes the threshold (``state``: the record with
    today's roll applied): ``(new patients today, of them from unusual places, expected
    of those, days of history, off-hours new patients today)``, or ``None``."""
    x = state.get("blx", 0)
    if x == -1:  # unlocked today: the rest of the day goes through
        return None
    off, far = _unusual(state, p, slot, place)
    n = state.get("bl:n", 0) + 1
    u = state.get("bl:u", 0) + far
    o = state.get("bl:o", 0) + off
    c = state.get("blc", 0.0)
    z = _score(state, p, n, u, o, so_far(state, slot))
    bar = (p.baseline or 0.0) * (_VOUCHED_BAR if x == _VOUCHED else 1.0)
    if x == _VOUCHED:  # the reason vouches for the days before too, as the roll will
        c = min(c, (p.baseline or 0.0) * _VOUCHED_ROLL)
    if c + max(0.0, z - p.baseline_slack) <= bar:
        return None
    mu_u = expected(state, p)[2]
    return n, u, mu_u, int(state.get("bl:h", 0)), o


def _counted(profile: bytes, size: int, at: int) -> bytes:
    out = bytearray(profile or bytes(size))
    if not 0 <= at < size:
        return bytes(out)
    if out[at] >= 255:
        out = bytearray(b // 2 for b in out)
    out[at] += 1
    return bytes(out)


def count(
    state: dict[str, Any],
    changes: dict[str, Any],
    p: CompiledPolicy,
    new: bool,
    slot: int,
    place: int,
) -> None:
    """Count a lookup let through (a new patient or not) into today and the profiles."""
    if new:
        off, far = _unusual(state, p, slot, place)
        changes["bl:n"] = state.get("bl:n", 0) + 1
        changes["bl:u"] = state.get("bl:u", 0) + far
        changes["bl:o"] = state.get("bl:o", 0) + off
    changes["bl:p"] = _counted(state.get("bl:p", b""), _SLOTS, slot)
    changes["bl:q"] = _counted(state.get("bl:q", b""), PLACES, place)
    changes["bl:l"] = state.get("bl:l", 0) + 1


def summary(record: dict[str, Any], p: CompiledPolicy, now: float) -> dict[str, float] | None:
    """The account's normal as ``status()`` shows it (``None`` without any history)."""
    day, _ = clock(p, now)
    state = {**record, **roll(record, p, day)}
    if not state.get("bl:h", 0) and not state.get("bl:l", 0):
        return None
    mu, sd, mu_u, _ = expected(state, p)
    values = (state.get("bl:h", 0), state.get("bl:m", 0.0), mu, sd, mu_u)
    today = (state.get("bl:n", 0), state.get("bl:u", 0), state.get("blc", 0.0))
    return shown((*values, state.get("bl:r", 0.0), *today))


def shown(values: tuple[float, ...]) -> dict[str, float]:
    """:func:`summary`'s dict from its values in order (the Redis engine sends them)."""
    h, m, mu, sd, mu_u, r, n, u, c = values
    return {
        "days": float(h),
        "new_per_day": round(m, 2),
        "expected": round(mu, 2),
        "sd": round(sd, 2),
        "expected_unusual_places": round(mu_u, 2),
        "repeat_share": round(r, 3),
        "new_today": float(n),
        "unusual_places_today": float(u),
        "cusum": round(c, 2),
    }
