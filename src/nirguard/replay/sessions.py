"""Login sessions: which portal session each lookup of the replay comes from.

The guard's ``session_overlap`` signal (one account, one session at a time) reads the
portal's session id of each lookup (``guard.lookup(..., session=...)``). Its false alerts
and what it catches depend on how people and bots log in, so the replay models logins
from what is known of portals, and marks what is assumed (``docs/replay.md``, "Sessions"):

* a session ends after :data:`IDLE` without a lookup (30 minutes: the upper end of the
  15-30 minutes the OWASP Session Management Cheat Sheet gives as common idle timeouts;
  *assumed* for the portal) and at the latest :data:`LIFETIME` after its login (12 hours:
  the periodic re-authentication OWASP ASVS 3.3 asks for; *assumed*);
* a GP (new GPs and locums alike) logs in each working day at the first lookup, and again
  whenever the session has ended: after the lunch break always (the break is longer than
  :data:`IDLE`), and after any idle stretch between consultations;
* on a share of GP-days (:data:`TWO_DEVICES`, a parameter: nobody knows the real share)
  the GP also uses a second device at the same time (a laptop, the e-CPS app on a
  phone) for a stretch of one to three hours, each lookup of the stretch from either
  device (*assumed*). Whether a GP-day is one of them is drawn per GP and day, so the
  days of a smaller share are among those of a larger one;
* desks share one account between several people at once: a hospital admission desk
  :data:`HOSPITAL_STATIONS` stations in 8-hour shifts, a pharmacy
  :data:`PHARMACY_COUNTERS` counters (*assumed*), each lookup from any of them, each
  station logging in at its shift (a pharmacy's counters each day);
* a bot holding a stolen account logs in for each of its working periods
  (:meth:`nirguard.replay.tactics.Attack.session`), never with the owner's session.

:func:`legit_sessions` gives every legitimate lookup its session, :class:`Logins` keeps
the logins of one kind of client. Session ids are built here (``s12``, ``bot12``) and
given to the guard, which keeps only a keyed fingerprint of them.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Hashable
from typing import Final

from nirguard.replay.habits import DAY, HOUR
from nirguard.replay.practitioners import Workload

__all__ = [
    "HOSPITAL_STATIONS",
    "IDLE",
    "LIFETIME",
    "PHARMACY_COUNTERS",
    "TWO_DEVICES",
    "Logins",
    "legit_session",
    "legit_sessions",
    "two_device_day",
]

#: A session ends after this long without a lookup (seconds; OWASP's 15-30 minutes).
IDLE: Final = 30 * 60.0
#: ... and at the latest this long after its login (seconds; OWASP ASVS 3.3).
LIFETIME: Final = 12 * HOUR
#: Default share of GP-days on which a second device is used at the same time.
TWO_DEVICES: Final = 0.01
#: Stations of a hospital admission desk working at once, and a pharmacy's counters.
HOSPITAL_STATIONS: Final = 3
PHARMACY_COUNTERS: Final = 2
#: The second device's stretch: its length (hours), and the share of its lookups.
_STRETCH: Final = (1.0, 3.0)
_SECOND_SHARE: Final = 0.5
#: When a GP's stretch may start (hours): weekdays, Saturday mornings.
_WEEKDAY: Final = (8.5, 17.5)
_SATURDAY: Final = (8.5, 11.5)
_SHIFT: Final = 8 * HOUR
_SHIFT_START: Final = 7 * HOUR


class Logins:
    """The logins of one kind of client (practitioners' devices, or bots).

    :meth:`at` gives the session a client's request at ``t`` comes from: the client's
    current session, or a new one when the client starts a new working ``period``, has
    been idle more than :data:`IDLE`, or its session is older than :data:`LIFETIME`.
    Session numbers are unique across the clients of one :class:`Logins`.
    """

    __slots__ = ("count", "state")

    def __init__(self) -> None:
        self.count = 0
        #: client -> (session, login time, last request, period)
        self.state: dict[Hashable, tuple[int, float, float, Hashable]] = {}

    def new(self) -> int:
        """A session never given before (a login)."""
        self.count += 1
        return self.count

    def at(self, client: Hashable, t: float, period: Hashable) -> int:
        """The session of ``client``'s request at ``t`` (times in order per client)."""
        found = self.state.get(client)
        if found is not None:
            number, login, last, was = found
            if was == period and t - last <= IDLE and t - login <= LIFETIME:
                self.state[client] = (number, login, t, period)
                return number
        number = self.new()
        self.state[client] = (number, t, t, period)
        return number


def two_device_day(seed: int, who: int, day: int, share: float) -> tuple[float, float] | None:
    """The stretch (start, end, seconds from day 0) in which account ``who`` also uses a
    second device on ``day``, or ``None``: one device that day. Drawn from the GP and
    the day alone, so a GP-day with two devices at a share stays one at a larger share."""
    if share <= 0.0:
        return None
    rng = random.Random(f"two-devices:{seed}:{who}:{day}")
    if rng.random() >= share:
        return None
    length = rng.uniform(*_STRETCH) * HOUR
    lo, hi = _SATURDAY if day % 7 == 5 else _WEEKDAY
    start = day * DAY + rng.uniform(lo, hi) * HOUR
    return start, start + length


class _Devices:
    """Which device (or station) of its account each legitimate lookup comes from."""

    def __init__(self, workload: Workload, seed: int, two_devices: float) -> None:
        self.kinds = [p.kind for p in workload.practitioners]
        self.seed = seed
        self.share = two_devices
        self.rng = random.Random(f"sessions:{seed}")
        self.days: dict[tuple[int, int], tuple[tuple[float, float] | None, random.Random]] = {}

    def _stretch(self, who: int, day: int) -> tuple[tuple[float, float] | None, random.Random]:
        found = self.days.get((who, day))
        if found is None:
            if len(self.days) > 100_000:
                self.days.clear()
            stretch = two_device_day(self.seed, who, day, self.share)
            found = (stretch, random.Random(f"second-device:{self.seed}:{who}:{day}"))
            self.days[(who, day)] = found
        return found

    def device(self, who: int, t: float) -> tuple[int, Hashable]:
        """``(device, working period)`` of account ``who``'s lookup at ``t``."""
        kind = self.kinds[who]
        day = int(t // DAY)
        if kind == "hospital":
            return self.rng.randrange(HOSPITAL_STATIONS), int((t - _SHIFT_START) // _SHIFT)
        if kind == "pharmacy":
            return self.rng.randrange(PHARMACY_COUNTERS), day
        stretch, rng = self._stretch(who, day)
        if stretch is not None and stretch[0] <= t < stretch[1]:
            return (1 if rng.random() < _SECOND_SHARE else 0), day
        return 0, day


def legit_sessions(
    workload: Workload, *, seed: int, two_devices: float = TWO_DEVICES
) -> array[int]:
    """The session of every legitimate event of ``workload`` (typos included), in order.

    Deterministic per ``seed`` and ``two_devices``; the workload itself is untouched, so
    the same lookups run with sessions or without.

    Raises:
        ValueError: ``two_devices`` outside 0-1.
    """
    if not 0.0 <= two_devices <= 1.0:
        raise ValueError("two_devices is a share of GP-days, between 0 and 1")
    devices = _Devices(workload, seed, two_devices)
    logins = Logins()
    out = array("q", bytes(8 * len(workload)))
    times, whos = workload.times, workload.who
    for e in range(len(workload)):
        t, who = times[e], whos[e]
        device, period = devices.device(who, t)
        out[e] = logins.at((who, device), t, period)
    return out


def legit_session(number: int) -> str:
    """The session id the portal gives a legitimate login (never a bot's)."""
    return f"s{number}"
