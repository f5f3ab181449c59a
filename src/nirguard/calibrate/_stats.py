"""Distributions of what practitioners do, in the windows a policy's thresholds cut.

Counts follow the engine's own rules, so that a threshold read off a
distribution means what the guard will do with it:

* **fixed windows** per practitioner (and per practitioner and birth cohort
  for ``cohort``), each starting at its first hit and lasting its period, as
  the guard's counters do; every closed window adds its count to a
  histogram, so percentiles are over windows (a practitioner's busy day and
  quiet day both count);
* a patient is **new** to a practitioner unless they were new to them less
  than ``seen`` ago (the longest new-patient window of the candidate policy,
  7 days by default), as in the engine;
* every **attempt** counts, whatever the guard answered: a refused lookup is
  still a patient the practitioner wanted;
* a new patient is in a **hot cohort** when the replay of the candidate says
  so (its ``hot_cohort`` settings, the whole portal's traffic): the
  threshold proposed for ``portal_cohort`` then means what it will mean
  under the proposal, which keeps those settings.

Memory holds one small record per practitioner, one per (practitioner,
patient) pair seen within ``seen``, one per (practitioner, cohort) window
open, and histograms (one entry per distinct count): it does not grow with
the length of the log.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from nirguard.calibrate._read import INVALID, MISS, Entry

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy

__all__ = ["FIELDS", "PERIODS", "AccountMaxima", "KindStats", "Statistics"]

#: The windows every report shows, per policy field (seconds); a candidate's
#: own windows are added to these.
PERIODS: Final[dict[str, tuple[int, ...]]] = {
    "lookups": (60, 86400),
    "distinct_patients": (600, 86400, 604800),
    "cohort": (86400,),
    "portal_cohort": (86400, 604800),
    "misses": (3600, 86400),
    "invalid_nirs": (3600, 86400),
    "break_glass": (86400, 604800),
}
FIELDS: Final = tuple(PERIODS)
#: Where a patient counts as new when the candidate has no new-patient window.
DEFAULT_SEEN: Final = 604800.0

Histogram = dict[int, int]
AccountMaxima = dict[tuple[str, int], float]


@dataclass(slots=True)
class _Account:
    ends: dict[str, list[float]]
    counts: dict[str, list[int]]
    maxima: AccountMaxima
    ratio_end: float = float("-inf")
    ratio_n: int = 0
    ratio_m: int = 0
    ratio_peak: float = -1.0


@dataclass(slots=True)
class KindStats:
    """Totals and histograms of one kind of practitioner."""

    kind: str | None
    periods: dict[str, tuple[int, ...]]
    seen: float
    ratio_window: float
    ratio_min: int
    lookups: int = 0
    invalid: int = 0
    misses: int = 0
    new_patients: int = 0
    hot_new: int = 0
    hot_new_logged: int = 0
    break_glass: int = 0
    cohort_known: int = 0
    #: field -> period -> count -> windows
    histograms: dict[str, dict[int, Histogram]] = field(default_factory=dict)
    #: peak miss ratio in percent -> [windows, lookups in them]
    ratios: dict[int, list[int]] = field(default_factory=dict)
    #: windows with too few lookups for the miss ratio to apply
    ratio_short: int = 0
    accounts: dict[str, _Account] = field(default_factory=dict)
    _novel: dict[tuple[str, str], float] = field(default_factory=dict)
    _novel_due: deque[tuple[float, tuple[str, str]]] = field(default_factory=deque)
    _walks: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    _walk_due: deque[tuple[float, tuple[str, str]]] = field(default_factory=deque)

    @property
    def attempts(self) -> int:
        """Lookups of valid numbers and invalid numbers together."""
        return self.lookups + self.invalid


def _periods(policy: CompiledPolicy | None) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for name, standard in PERIODS.items():
        own = {w.seconds for w in getattr(policy, name)} if policy is not None else set()
        out[name] = tuple(sorted(set(standard) | own))
    return out


class Statistics:
    """Streams entries into per-kind distributions.

    Args:
        policies: the candidate policy of each kind (``None`` key: untagged
            events and kinds without their own candidate).
        exclude: practitioners left out of every distribution.
    """

    __slots__ = ("_exclude", "_policies", "kinds")

    def __init__(
        self,
        policies: dict[str | None, CompiledPolicy],
        exclude: frozenset[str] = frozenset(),
    ) -> None:
        self._policies = policies
        self._exclude = exclude
        self.kinds: dict[str | None, KindStats] = {}

    def kind(self, kind: str | None) -> KindStats:
        """The statistics of ``kind`` (made empty if it has none yet)."""
        if kind in self.kinds:
            return self.kinds[kind]
        policy = self._policies.get(kind) or self._policies.get(None)
        seen = policy.seen if policy is not None and policy.seen > 0 else DEFAULT_SEEN
        stats = KindStats(
            kind,
            _periods(policy),
            seen,
            policy.miss_ratio_window if policy is not None else 86400.0,
            policy.miss_ratio_min if policy is not None else 20,
        )
        stats.histograms = {
            name: {period: {} for period in periods} for name, periods in stats.periods.items()
        }
        self.kinds[kind] = stats
        return stats

    def add(self, e: Entry, hot: bool | None = None) -> None:
        """Count one entry; ``hot``: its cohort was hot, as the candidate's replay judged
        (``None``: as the log's own ``hot_cohort`` signal says)."""
        who = e.practitioner
        if who in self._exclude:
            return
        k = self.kinds.get(e.kind) or self.kind(e.kind)
        now = e.time
        self._expire(k, now)
        account = k.accounts.get(who)
        if account is None:
            account = k.accounts[who] = _Account(
                {name: [float("-inf")] * len(p) for name, p in k.periods.items()},
                {name: [0] * len(p) for name, p in k.periods.items()},
                {},
            )
        if e.action == INVALID:
            k.invalid += 1
            self._hit(k, account, "invalid_nirs", now)
            return
        k.lookups += 1
        self._hit(k, account, "lookups", now)
        self._ratio(k, account, now, e.action == MISS)
        if e.action == MISS:
            k.misses += 1
            self._hit(k, account, "misses", now)
        if e.break_glass:
            k.break_glass += 1
            self._hit(k, account, "break_glass", now)
        assert e.patient is not None
        pair = (who, e.patient)
        if k._novel.get(pair, float("-inf")) > now:
            return
        until = now + k.seen
        k._novel[pair] = until
        k._novel_due.append((until, pair))
        k.new_patients += 1
        self._hit(k, account, "distinct_patients", now)
        if e.hot:
            k.hot_new_logged += 1
        if e.hot if hot is None else hot:
            k.hot_new += 1
            self._hit(k, account, "portal_cohort", now)
        if e.cohort is not None:
            k.cohort_known += 1
            self._walk(k, account, (who, e.cohort), now)

    @staticmethod
    def _hit(k: KindStats, account: _Account, name: str, now: float) -> None:
        ends, counts = account.ends[name], account.counts[name]
        periods = k.periods[name]
        for i, period in enumerate(periods):
            if ends[i] <= now:
                if counts[i]:
                    _emit(k, account.maxima, name, period, counts[i])
                ends[i] = now + period
                counts[i] = 1
            else:
                counts[i] += 1

    @staticmethod
    def _ratio(k: KindStats, account: _Account, now: float, miss: bool) -> None:
        if account.ratio_end <= now:
            _emit_ratio(k, account)
            account.ratio_end = now + k.ratio_window
            account.ratio_n = account.ratio_m = 0
            account.ratio_peak = -1.0
        n = account.ratio_n
        if n >= k.ratio_min:
            account.ratio_peak = max(account.ratio_peak, account.ratio_m / n)
        account.ratio_n = n + 1
        if miss:
            account.ratio_m += 1

    @staticmethod
    def _walk(k: KindStats, account: _Account, key: tuple[str, str], now: float) -> None:
        periods = k.periods["cohort"]
        walk = k._walks.get(key)
        if walk is None:
            walk = k._walks[key] = [float("-inf")] * len(periods) + [0.0] * len(periods)
        n = len(periods)
        latest = max(walk[:n])
        for i, period in enumerate(periods):
            if walk[i] <= now:
                if walk[n + i]:
                    _emit(k, account.maxima, "cohort", period, int(walk[n + i]))
                walk[i] = now + period
                walk[n + i] = 1
            else:
                walk[n + i] += 1
        if max(walk[:n]) > latest:
            k._walk_due.append((max(walk[:n]), key))

    def _expire(self, k: KindStats, now: float) -> None:
        due = k._novel_due
        novel = k._novel
        while due and due[0][0] <= now:
            until, pair = due.popleft()
            if novel.get(pair) == until:
                del novel[pair]
        walks = k._walk_due
        while walks and walks[0][0] <= now:
            until, key = walks.popleft()
            walk = k._walks.get(key)
            if walk is None or max(walk[: len(walk) // 2]) != until:
                continue
            self._close_walk(k, key, walk)

    @staticmethod
    def _close_walk(k: KindStats, key: tuple[str, str], walk: list[float]) -> None:
        n = len(walk) // 2
        maxima = k.accounts[key[0]].maxima
        for i, period in enumerate(k.periods["cohort"]):
            if walk[n + i]:
                _emit(k, maxima, "cohort", period, int(walk[n + i]))
        del k._walks[key]

    def finish(self) -> None:
        """Close every open window (the end of the log ends them)."""
        for k in self.kinds.values():
            for key, walk in list(k._walks.items()):
                self._close_walk(k, key, walk)
            k._walk_due.clear()
            k._novel.clear()
            k._novel_due.clear()
            for account in k.accounts.values():
                for name, periods in k.periods.items():
                    counts = account.counts[name]
                    for i, period in enumerate(periods):
                        if counts[i]:
                            _emit(k, account.maxima, name, period, counts[i])
                            counts[i] = 0
                _emit_ratio(k, account)
                account.ratio_n = 0

    def pairs(self) -> int:
        """(practitioner, patient) pairs held now (what memory follows)."""
        return sum(len(k._novel) + len(k._walks) for k in self.kinds.values())


def _emit(k: KindStats, maxima: AccountMaxima, name: str, period: int, count: int) -> None:
    hist = k.histograms[name][period]
    hist[count] = hist.get(count, 0) + 1
    if count > maxima.get((name, period), 0):
        maxima[(name, period)] = count


def _emit_ratio(k: KindStats, account: _Account) -> None:
    n, m = account.ratio_n, account.ratio_m
    if not n:
        return
    if n >= k.ratio_min:
        account.ratio_peak = max(account.ratio_peak, m / n)
    if account.ratio_peak < 0:
        k.ratio_short += 1
        return
    percent = math.ceil(round(account.ratio_peak * 100, 6))
    slot = k.ratios.setdefault(percent, [0, 0])
    slot[0] += 1
    slot[1] += n
    key = ("miss_ratio", 0)
    if account.ratio_peak > account.maxima.get(key, -1.0):
        account.maxima[key] = account.ratio_peak


def percentile(hist: Histogram, q: float) -> int:
    """Nearest-rank percentile ``q`` (0-100) of a histogram ``value -> windows``; 0 if empty."""
    total = sum(hist.values())
    if not total:
        return 0
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value
    return max(hist)


def excess(hist: Histogram, threshold: int) -> int:
    """Hits beyond ``threshold`` in the windows of ``hist`` (what that quota alone refuses)."""
    return sum(n * (c - threshold) for c, n in hist.items() if c > threshold)
