"""The memory engine's records: one object per store key, each carrying its own expiry.

These are the in-process twins of the Redis records of ``_admit.lua`` (the
same contents, the same decisions; docs/redis.md gives their layout):

* :class:`Record`: named fields (a practitioner's account, the portal quota);
* :class:`Recent`: one practitioner's recent patients (pattern fingerprint ->
  end of its new-patient window), break-glass grants (fingerprint -> end of
  the grant) and cohort walks (cohort fingerprint -> the cohort quota's windows,
  a compact :data:`Walk`);
* :class:`Heat`: one cohort's decayed heat and baseline, its alert window,
  and the patients it counted within the heat window (fingerprint -> end).

``expires`` is for garbage collection only (``queued``: when the record's
entry in the engine's sweep heap is due): a decision reads the windows'
own ends, so a record past its ``expires`` holds nothing a decision would
read. Entries are kept in the order they were added, so the dead ones are
dropped from the front as the record is written.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from nirguard._compiled import Window

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy
    from nirguard._engine import Decision

__all__ = [
    "Heat",
    "Recent",
    "Record",
    "Walks",
    "bump",
    "forgotten",
    "heat_end",
    "heat_step",
    "hit",
    "level_of",
    "overflow",
    "prune",
    "remaining",
    "used",
]

Ends = dict[bytes, float]
#: One cohort walk as :class:`Recent` keeps it: its field names (a tuple shared by every
#: walk written with the same ones), the end of its last window (``e``), then each
#: name's value. A dict per walk cost ~190 bytes more, and a practitioner walks a
#: cohort per new patient (issue 20: bytes per practitioner).
Walk = tuple[Any, ...]
#: The field names of walks, each tuple kept once (a policy's cohort windows: a few).
_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {}


class Walks(dict[bytes, Walk]):
    """A practitioner's walks by cohort fingerprint. A subclass so that the garbage
    collector never untracks it: a plain dict of untracked tuples is untracked by a full
    collection, then tracked again, as a young object, when the next walk goes in, and
    every young collection would read its entries (1.5 ms each at 20,000 practitioners)."""

    __slots__ = ()


class Record(dict[str, Any]):
    """Named fields of one record, and when the record expires."""

    __slots__ = ("expires", "queued")

    def __init__(self) -> None:
        super().__init__()
        self.expires = 0.0
        self.queued = 0.0


def prune(entries: Ends, now: float) -> None:
    """Drop the dead entries at the front (the oldest added first)."""
    while entries:
        fp = next(iter(entries))
        if entries[fp] > now:
            return
        del entries[fp]


def _add(entries: Ends, fp: bytes, end: float, now: float) -> None:
    entries.pop(fp, None)  # re-added: to the back, with the others of its age
    entries[fp] = end
    prune(entries, now)


class Recent:
    """One practitioner's recent patients, grants and cohort walks."""

    __slots__ = ("expires", "grants", "queued", "seen", "walks")

    def __init__(self) -> None:
        self.seen: Ends = {}
        self.grants: Ends = {}
        self.walks: dict[bytes, Walk] = Walks()
        self.expires = 0.0
        self.queued = 0.0

    def see(self, fp: bytes, end: float, now: float) -> None:
        _add(self.seen, fp, end, now)
        self.expires = max(self.expires, end + 60)

    def grant(self, fp: bytes, end: float, now: float) -> None:
        _add(self.grants, fp, end, now)
        self.expires = max(self.expires, end + 60)

    def walk(self, cohort: bytes, now: float) -> dict[str, Any]:
        """The walk record of one cohort (empty once every window it holds has ended)."""
        found = self.walks.get(cohort)
        if found is None or found[1] <= now:
            return {}
        out = dict(zip(found[0], found[2:], strict=True))
        out["e"] = found[1]
        return out

    def save_walk(
        self, cohort: bytes, walk: dict[str, Any], changes: dict[str, Any], now: float
    ) -> None:
        """Write a walk: its windows' counts and ends, and ``e``, the last of its ends
        (``changes`` holds every window: a walk is written when each one counts a hit)."""
        walk = {**walk, **changes}
        end = walk.pop("e", 0.0)
        for name, value in changes.items():
            if value > end and name.endswith(":e"):
                end = value
        names = tuple(walk)
        walks = self.walks
        walks.pop(cohort, None)
        walks[cohort] = (_NAMES.setdefault(names, names), end, *walk.values())
        while walks:
            first = next(iter(walks))
            if walks[first][1] > now:
                break
            del walks[first]
        self.expires = max(self.expires, end + 60)


def heat_end(t: float, baseline: float, window: float, base: float) -> float:
    """When a cohort's heat record is forgotten: once its baseline (``base`` at ``t``) has
    decayed to one patient, and at least a heat window after its last new patient."""
    return t + max(window, baseline * math.log(base)) if base > 1 else t + window


class Heat:
    """One cohort's heat: ``s`` (decayed over the heat window) and ``l`` (over the
    baseline) as of ``t``, the end of its alert window ``a``, and the patients it
    counted within the heat window."""

    __slots__ = ("a", "expires", "l", "queued", "s", "seen", "t")

    def __init__(self) -> None:
        self.s = 0.0
        self.l = 0.0
        self.t: float | None = None
        self.a = 0.0
        self.seen: Ends = {}
        self.expires = 0.0
        self.queued = 0.0


def forgotten(heat: Heat, p: CompiledPolicy) -> float:
    """When ``heat`` is forgotten (:func:`heat_end`, and not before its alert window ends)."""
    return max(heat.a, heat_end(heat.t or 0.0, p.hot_baseline, p.hot_window, heat.l))


def heat_step(
    heat: Heat | None, p: CompiledPolicy, fp: bytes, base: Decision, now: float, warm: bool = True
) -> Heat | None:
    """Count a patient new to the practitioner in its cohort's heat (once per heat
    window, portal-wide); whether the cohort is hot, and its first alert, into
    ``base`` (never while the store is warming up: ``warm`` false). The record to keep, or ``None`` when nothing changed."""
    window, baseline = p.hot_window, p.hot_baseline
    if heat is None or (heat.t is not None and now > forgotten(heat, p)):
        heat = Heat()
    s, l_ = heat.s, heat.l
    if heat.t is not None:
        dt = max(0.0, now - heat.t)
        s *= math.exp(-dt / window)
        l_ *= math.exp(-dt / baseline)
    changed = False
    if heat.seen.get(fp, 0.0) <= now:
        s, l_ = s + 1, l_ + 1
        heat.s, heat.l, heat.t = s, l_, now
        seen, end = heat.seen, now + window
        if seen or end <= now:
            _add(seen, fp, end, now)
        else:  # a cohort's first patient (most are, at scale): nothing to move or prune
            seen[fp] = end
        changed = True
    expected = l_ * window / baseline
    base.heat, base.expected = s, expected
    if warm and s > (p.hot_cohort or 0.0) * expected + p.hot_cohort_min:
        base.hot = True
        if heat.a <= now:
            base.hot_alert = True
            heat.a = now + window
            changed = True
    if not changed:
        return None
    heat.expires = forgotten(heat, p) + 60
    return heat


# -- fixed windows: "<quota>:<seconds>" holds the count, "<quota>:<seconds>:e" the end -----


def used(record: dict[str, Any], w: Window, now: float) -> int:
    ends = record.get(w.ends)
    if ends is not None and ends > now:
        return int(record.get(w.field, 0))
    return 0


def overflow(
    record: dict[str, Any], windows: tuple[Window, ...], now: float
) -> tuple[Window, int] | None:
    get = record.get  # used() inlined: four calls a lookup, one window or two each
    for w in windows:
        ends = get(w.ends)
        count = int(get(w.field, 0)) + 1 if ends is not None and ends > now else 1
        if count > w.amount:
            return w, count
    return None


def hit(
    record: dict[str, Any], windows: tuple[Window, ...], changes: dict[str, Any], now: float
) -> None:
    get = record.get
    for w in windows:
        ends = get(w.ends)
        if ends is not None and ends > now:
            changes[w.field] = get(w.field, 0) + 1
        else:
            changes[w.field] = 1
            changes[w.ends] = now + w.seconds


def remaining(record: Record, windows: tuple[Window, ...], now: float) -> int | None:
    if not windows:
        return None
    return min(w.amount - used(record, w, now) for w in windows)


def bump(record: Record, changes: dict[str, Any], name: str, seconds: float, now: float) -> None:
    if record.get(name + ":e", 0) > now:
        changes[name] = record.get(name, 0) + 1
    else:
        changes[name] = 1
        changes[name + ":e"] = now + seconds


def level_of(record: Record, now: float) -> int:
    if record.get("lockout_level:e", 0) > now:
        return int(record.get("lockout_level", 0))
    return 0
