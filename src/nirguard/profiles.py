"""The shipped profiles: the policy nirguard ships for each kind of account, as named data.

Two profiles, tuned on the replay of the 2022 attack (``nirguard simulate``;
docs/default-policy.md gives the figures behind every value):

* :func:`gp`: general practitioners, and every account the portal knows
  nothing special about (new practices and locums included): the values of
  ``QuotaPolicy()``, named ``"gp"``.
* :func:`desk`: high-volume desks (hospital admissions, pharmacies), which
  serve hundreds of different people a day: volume quotas an order of
  magnitude above a GP's.

:data:`KINDS` says which profile each kind of account the replay models
gets; :func:`worst_case` gives the most new patients one account of a
profile can obtain in a week, whatever its user (or the bot holding its
stolen session) does.

>>> from nirguard import QuotaPolicy, profiles
>>> profiles.gp().distinct_patients == QuotaPolicy().distinct_patients
True
>>> profiles.desk().distinct_patients
'1000/day'
>>> profiles.for_kind("pharmacy").name
'desk'
>>> sorted(profiles.PROFILES)
['desk', 'gp']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from limits import parse_many

from nirguard.errors import ConfigurationError
from nirguard.policy import QuotaPolicy, parse_duration

__all__ = ["KINDS", "PROFILES", "Bound", "desk", "for_kind", "gp", "worst_case"]

#: The desk profile's fields (the others keep ``QuotaPolicy()``'s values). The
#: replay's hospital desks peak at 12 new people in 10 minutes and 412 in a day,
#: its pharmacies at 14 and 268: none of their lookups is refused.
_DESK: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "name": "desk",
        "lookups": "60/minute;1500/day",
        "distinct_patients": "1000/day",
        "invalid_nirs": "20/hour",
        "misses": "30/hour",
        "portal": None,
        "lockout": "1 hour",
        "lockout_escalation": ("1 day", None),
        "cohort": "8/day",
        "portal_cohort": "30/day",
        # a maternity's desks look its newborns up in the order they were registered
        "sequence": None,
        # a desk's stations share the account at once: every new patient would be a return
        "session_overlap": None,
        "miss_ratio": 0.5,
        "miss_ratio_min_lookups": 50,
    }
)


def gp() -> QuotaPolicy:
    """The general practitioners' profile: ``QuotaPolicy()``'s values, named ``"gp"``.

    >>> gp().name, gp().lookups
    ('gp', '30/minute;200/day')
    """
    return QuotaPolicy(name="gp")


def desk() -> QuotaPolicy:
    """The high-volume desks' profile (hospital admissions, pharmacies), named ``"desk"``.

    >>> desk().lookups
    '60/minute;1500/day'
    """
    return QuotaPolicy(**_DESK)


PROFILES: Final[Mapping[str, QuotaPolicy]] = MappingProxyType({"gp": gp(), "desk": desk()})
"""Every shipped profile by name (read-only)."""

KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {"gp": "gp", "new_gp": "gp", "hospital": "desk", "pharmacy": "desk"}
)
"""The profile each kind of account the replay models gets: GPs, new GPs (new practices
and locums), hospital admission desks, pharmacies."""


def for_kind(kind: str) -> QuotaPolicy:
    """The profile of an account kind (a key of :data:`KINDS`) or a profile name.

    Raises:
        ConfigurationError: neither a kind nor a profile.

    >>> for_kind("new_gp").name
    'gp'
    """
    name = KINDS.get(kind, kind)
    if name not in PROFILES:
        raise ConfigurationError("unknown kind of account (see nirguard.profiles.KINDS)")
    return PROFILES[name]


# -- the worst case ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """What one account can obtain within ``days``, whatever it does (:func:`worst_case`).

    Attributes:
        paced: most new patients (break-glass grants included) over every
            schedule: the quotas' own arithmetic, reached by a script paced
            under every window. Only detection can lower what such a script gets.
        fast: most new patients for a *fast* script, one that asks for a new
            patient (or for the refused one again, with or without a reason)
            at least every ``gap`` seconds while it is not locked out, and
            waits only for lockouts to end.
        episodes: lockouts the fast script lives through, plus one: the
            stretches of asking before the lockout that lasts until ``unlock()``.
        per_episode: new patients one episode can take (the smallest
            new-patient window the fast script cannot outlast).
        grants: break-glass grants within ``days``.
        strikes: whether refusals count (the policy has a ``strikes`` quota);
            without them, a script that keeps retrying a patient refused
            with "state a reason" is never locked and the fast bound is the paced one.
        any_week: ``paced`` over any ``days`` of an account's life rather than
            from its first lookup: a window already running when they start
            adds one more window of each quota (up to twice a weekly cap).
        insisting: most new patients for a fast script that also keeps
            retrying while locked (every ``gap`` seconds, never waiting a
            lockout out) a patient refused during the lockout: such a retry is
            a strike, and the strike past the quota escalates the lockout, so
            when every finite lockout outlasts the strikes at that pace, it
            gets one episode and that episode's grants (the smallest
            ``break_glass`` window); else ``fast``. A script that asks for
            other patients while locked is refused and spends ``lookups``, but
            strikes nothing: it gets no more than the same script waiting its
            lockouts out, so ``fast`` bounds it.
    """

    paced: int
    fast: int
    any_week: int
    episodes: int
    per_episode: int
    grants: int
    strikes: bool
    insisting: int


def _windows(value: object) -> list[tuple[int, float]]:
    """``(amount, seconds)`` of each window of a rate (none when off)."""
    if not isinstance(value, str) or not value:
        return []
    return [(item.amount, float(item.get_expiry())) for item in parse_many(value)]


def _cap(windows: list[tuple[int, float]], horizon: float, *, carried: bool = False) -> float:
    """Most hits over ``horizon`` seconds: each window starts at its first hit and
    holds ``amount`` until it ends, so ``ceil(horizon / seconds)`` of them fit
    (one more when a window is ``carried`` in from before the horizon)."""
    extra = 1 if carried else 0
    return min(
        (amount * (math.ceil(horizon / seconds) + extra) for amount, seconds in windows),
        default=math.inf,
    )


def _lockouts(policy: QuotaPolicy, horizon: float) -> list[float]:
    """The finite lockouts a script lives through within ``horizon``, in order (it
    stops at the first lockout that lasts until ``unlock()``, or when time runs out).
    A lockout at least as long as ``lockout_memory`` is forgotten when it ends: the
    next one starts the escalation again."""
    memory = parse_duration(policy.lockout_memory)
    out: list[float] = []
    spent = 0.0
    level = 0
    while len(out) < 100_000:
        seconds = policy.lockout_seconds(level)
        if seconds is None or spent + seconds >= horizon:
            break
        out.append(seconds)
        spent += seconds
        level = level + 1 if seconds < memory else 0
    return out


def worst_case(policy: QuotaPolicy, *, days: float = 7, gap: float = 10.0) -> Bound:
    """The most new patients one account can obtain in ``days`` whatever it does.

    Every window of a quota starts at its first hit and ends ``seconds`` later
    (fixed windows): over a horizon starting at the account's first lookup, a
    quota ``amount/seconds`` lets through at most ``amount * ceil(horizon / seconds)``.

    * ``paced``: the tightest such cap of ``distinct_patients`` (and of
      ``lookups``), plus the break-glass grants (each a new patient past the
      new-patient quotas).
    * ``fast``: with strikes, a script asking at least every ``gap`` seconds
      cannot outlast a new-patient window of ``amount/seconds`` when
      ``gap * (amount + strikes + grants + 1) < seconds`` (``strikes``: the
      strikes it survives meanwhile): it is locked out before that window
      ends, so an episode between two lockouts starts at most one such window,
      and none when the window started in an earlier episode still runs at
      the end of this one (counted with the longest episodes and the earliest
      windows). Lockouts escalate to one that lasts until ``unlock()``.
      ``fast = min(paced, amount * windows + grants)`` for the tightest such
      window. Without strikes, a refusal that asks for a reason costs
      nothing, and neither does a ``lookups`` refusal: retrying paces the
      script for free, and ``fast = paced``.
    * ``insisting``: a fast script that also retries while locked (:class:`Bound`).

    The search (:mod:`nirguard.replay.search`) must never beat these numbers.

    Raises:
        ValueError: ``days`` or ``gap`` not positive.

    >>> bound = worst_case(gp())
    >>> bound.paced, bound.episodes, bound.per_episode, bound.grants
    (352, 3, 8, 2)
    >>> bound.fast == (26 if bound.strikes else 352)
    True
    >>> bound.insisting  # 8 new patients, 1 grant, then locked for good
    9
    """
    if not days > 0 or not gap > 0:
        raise ValueError("days and gap must be positive")
    horizon = days * 86_400.0
    grants, any_grants = (_grants(policy, horizon, carried=c) for c in (False, True))
    paced = _paced(policy, horizon, grants, carried=False)
    strikes_rate = getattr(policy, "strikes", None)
    lockouts = _lockouts(policy, horizon)
    fast_new = _fast_new(policy, strikes_rate, grants, gap, lockouts)
    if ((policy.break_glass or policy.lookups) and not strikes_rate) or fast_new is None:
        fast = insisting = paced
    else:
        fast = min(paced, fast_new[0] + grants)
        insisting = _insisting(policy, fast, fast_new[1], grants, gap, lockouts)
    return Bound(
        paced=paced,
        fast=fast,
        any_week=_paced(policy, horizon, any_grants, carried=True),
        episodes=len(lockouts) + 1,
        per_episode=fast_new[1] if fast_new is not None else paced,
        grants=grants,
        strikes=bool(strikes_rate),
        insisting=insisting,
    )


def _grants(policy: QuotaPolicy, horizon: float, *, carried: bool) -> int:
    """Break-glass grants within ``horizon`` (``carried``: a window carried in)."""
    if not policy.break_glass:
        return 0
    return _finite(_cap(_windows(policy.break_glass), horizon, carried=carried))


def _insisting(
    policy: QuotaPolicy, fast: int, per_episode: int, grants: int, gap: float, lockouts: list[float]
) -> int:
    """:attr:`Bound.insisting`: one episode and its grants when retrying while locked
    escalates every finite lockout at this pace, else ``fast``."""
    if not _escalates_while_locked(policy.strikes, gap, lockouts):
        return fast
    first = min((a for a, _ in _windows(policy.break_glass)), default=0)
    return min(fast, per_episode + min(first, grants))


def _escalates_while_locked(strikes_rate: object, gap: float, lockouts: list[float]) -> bool:
    """Whether a script retrying every ``gap`` seconds while locked strikes past the quota
    within every finite lockout (strikes start again at each lockout): then each
    lockout escalates before it ends, up to the one that lasts until ``unlock()``."""
    windows = _windows(strikes_rate)
    return bool(windows) and all(
        any(gap * (n + 1) < min(s, length) for n, s in windows) for length in lockouts
    )


def _finite(value: float, limit: int = 10**12) -> int:
    return int(min(value, limit))


def _paced(policy: QuotaPolicy, horizon: float, grants: int, *, carried: bool) -> int:
    new = _cap(_windows(policy.distinct_patients), horizon, carried=carried)
    return _finite(min(new + grants, _cap(_windows(policy.lookups), horizon, carried=carried)))


def _fast_new(
    policy: QuotaPolicy, strikes_rate: object, grants: int, gap: float, lockouts: list[float]
) -> tuple[int, int] | None:
    """New patients (grants aside) a fast script takes, and the amount of the window
    that holds it; ``None`` when it outlasts every window of ``distinct_patients``."""
    strike_windows = _windows(strikes_rate)
    best: tuple[int, int] | None = None
    for amount, seconds in _windows(policy.distinct_patients):
        # Refusals it survives while one such window runs: ``amount`` strikes per
        # strike window, one more strike window than fit (one may be carried in).
        survived = min((n * (math.ceil(seconds / s) + 1) for n, s in strike_windows), default=0)
        longest = gap * (amount + survived + grants + 1)
        if longest >= seconds:
            continue
        total = amount * _windows_started(seconds, longest, lockouts)
        if best is None or total < best[0]:
            best = (total, amount)
    return best


def _windows_started(seconds: float, longest: float, lockouts: list[float]) -> int:
    """Windows of ``seconds`` started by episodes of at most ``longest`` seconds
    separated by ``lockouts``: an episode starts none while the window started in
    an earlier one (at its start, at the earliest) outlasts it."""
    started, opened = 0, -math.inf
    earliest = latest = 0.0  # the episode's start, at the earliest and at the latest
    for n in range(len(lockouts) + 1):
        if opened + seconds < latest + longest:
            started, opened = started + 1, earliest
        if n < len(lockouts):
            earliest += lockouts[n]
            latest += longest + lockouts[n]
    return started
