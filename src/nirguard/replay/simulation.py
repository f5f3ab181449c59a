"""Passes of the replay through a guard, and how legitimate traffic is shared.

One *pass* feeds lookups to a fresh :class:`nirguard.LookupGuard` in time
order: some of the legitimate lookups, and an attack script whose accounts
are processes in a heap (when they try next depends on the guard's
answers). The guard's clock returns the time of the lookup being processed.

Replaying the 350,000 legitimate lookups of the week once per strategy and
configuration would cost eight full passes. It is not needed: the guard
keeps its state per practitioner, except for the portal-wide counters
(``portal`` and ``portal_cohort``). With ``portal`` off, a legitimate
account can only notice an attack (or be noticed by it) through
``portal_cohort``: a lookup in a cohort that a stolen account also touched,
close enough in time to share a window. So for each configuration the
legitimate week runs once, alone (the *baseline*), and each attack then runs
with only the legitimate accounts it can interact with:

1. run the attack alone;
2. a cohort the attack touched is *hot* when its lookups, attack and
   legitimate together, could exceed a ``portal_cohort`` amount within one
   window (the most lookups that fit in any span of the window's length):
   only then can a decision in that cohort differ from the baseline, however
   the store anchors its windows;
3. replay the attack with the full week of every legitimate account that
   looks up someone in a hot cohort; recompute the hot cohorts from this
   pass; repeat until no new account is needed.

Accounts left out behave exactly as in the baseline: every cohort they look
up stays at or under its limit in every window, with or without the
attack, and nothing else couples accounts. When the policy sets ``portal``
(one counter for everyone), every pass includes every account.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from nirguard.replay.attacks import Attack
from nirguard.replay.practitioners import LOOKUP, TYPO, Event, Workload
from nirguard.replay.registry import Registry

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = ["CohortIndex", "PassResult", "coupling_windows", "run_pass", "run_spliced"]

#: POSIX time of the simulated Monday 00:00 (2026-03-02 UTC).
EPOCH: Final = 1_772_409_600.0
#: Status of a legitimate lookup rejected as an invalid number.
INVALID: Final = "invalid"
_MAX_ROUNDS: Final = 6
#: Above this share of accounts, replay everyone rather than iterate.
_FULL_SHARE: Final = 0.6


@dataclass
class PassResult:
    """What happened in one pass.

    Attributes:
        status: legitimate event index -> ``"invalid"`` or the refusal code;
            allowed lookups are absent.
        alerts: ``(time, practitioner, signal, attempts so far, attempts by
            that account)`` for every alert.
        exposed: person id -> time first returned to an attacker.
        got: distinct people returned to each stolen account.
        attempts: attempts by stolen accounts.
        stopped: stolen accounts locked until unlocked.
        touches: ``(cohort prefix, time)`` of every attempt by a stolen account.
        included: legitimate accounts replayed in this pass.
    """

    status: dict[int, str] = field(default_factory=dict)
    alerts: list[tuple[float, str, str, int, int]] = field(default_factory=list)
    exposed: dict[int, float] = field(default_factory=dict)
    got: list[int] = field(default_factory=list)
    attempts: int = 0
    stopped: int = 0
    touches: list[tuple[str, float]] = field(default_factory=list)
    included: frozenset[int] = frozenset()


class CohortIndex:
    """Legitimate lookups of valid numbers, by cohort prefix and time."""

    def __init__(self, events: Sequence[Event]) -> None:
        grouped: dict[str, tuple[list[float], list[int]]] = {}
        for t, who, number, _, kind in events:
            if kind == TYPO:
                continue
            times, whos = grouped.setdefault(number[:10], ([], []))
            times.append(t)
            whos.append(who)
        self.by_cohort = grouped
        self.events_of: dict[int, list[int]] = {}
        self.cohorts_of: dict[int, set[str]] = {}
        for i, (_, who, number, _, kind) in enumerate(events):
            self.events_of.setdefault(who, []).append(i)
            if kind != TYPO:
                self.cohorts_of.setdefault(who, set()).add(number[:10])
        self._hot: dict[tuple[tuple[float, int], ...], frozenset[str]] = {}

    def hot_cohorts(self, windows: list[tuple[float, int]]) -> frozenset[str]:
        """Cohorts whose legitimate lookups alone could exceed an amount in one window."""
        key = tuple(windows)
        found = self._hot.get(key)
        if found is None:
            found = frozenset(
                prefix
                for prefix, (times, _) in self.by_cohort.items()
                if any(
                    len(times) > amount and _busiest(times, seconds) > amount
                    for seconds, amount in windows
                )
            )
            self._hot[key] = found
        return found

    def between(self, prefix: str, start: float, end: float) -> tuple[int, list[int]]:
        """Lookups in a cohort within ``[start, end]``: their count and who made them."""
        found = self.by_cohort.get(prefix)
        if found is None:
            return 0, []
        times, whos = found
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        return hi - lo, whos[lo:hi]


def coupling_windows(policies: Iterable[QuotaPolicy]) -> tuple[bool, list[tuple[float, int]]]:
    """How the policies couple practitioners: ``(global, portal_cohort windows)``.

    ``global`` is true when a ``portal`` quota counts everyone together;
    windows are ``(seconds, amount)`` of every ``portal_cohort`` rate.
    """
    shared = False
    windows: set[tuple[float, int]] = set()
    for policy in policies:
        shared = shared or bool(getattr(policy, "portal", None))
        for item in policy.items("portal_cohort"):
            windows.add((float(item.get_expiry()), int(item.amount)))
    return shared, sorted(windows)


def _busiest(times: list[float], seconds: float) -> int:
    """Most of the sorted ``times`` that fit in one span of ``seconds``."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _hot_accounts(
    touches: Iterable[tuple[str, float]],
    index: CohortIndex,
    windows: list[tuple[float, int]],
) -> set[int]:
    """Legitimate accounts whose lookups the attack can change, or that can change it.

    A cohort is hot when its lookups (legitimate, plus the attack's if it
    touched it) could exceed a ``portal_cohort`` amount within one window.
    The accounts are those with a lookup in a hot cohort the attack touched,
    closed over: an account taken in brings in every other account of each
    hot cohort it looks up, since decisions there depend on all of them.
    """
    attack_times: dict[str, list[float]] = {}
    for prefix, t in touches:
        attack_times.setdefault(prefix, []).append(t)
    legit_hot = index.hot_cohorts(windows)
    frontier: set[int] = set()
    done: set[str] = set()
    for prefix, times in attack_times.items():
        legit = index.by_cohort.get(prefix)
        if legit is None:
            continue
        merged = sorted(legit[0] + times)
        if any(_busiest(merged, seconds) > amount for seconds, amount in windows):
            frontier.update(legit[1])
            done.add(prefix)
    hot = set(frontier)
    while frontier:
        reached: set[int] = set()
        for who in frontier:
            for prefix in index.cohorts_of.get(who, ()):
                if prefix in done:
                    continue
                if prefix in legit_hot or (
                    prefix in attack_times
                    and any(
                        _busiest(sorted(index.by_cohort[prefix][0] + attack_times[prefix]), s)
                        > amount
                        for s, amount in windows
                    )
                ):
                    done.add(prefix)
                    reached.update(index.by_cohort[prefix][1])
        frontier = reached - hot
        hot |= reached
    return hot


def run_pass(
    *,
    registry: Registry,
    workload: Workload,
    policy_for: Callable[[str], QuotaPolicy],
    key: bytes,
    attack: Attack | None,
    events: Sequence[int],
    end: float,
) -> PassResult:
    """Feed the legitimate events ``events`` (indices, in time order) and the
    attack (if any) to a fresh guard, in time order, until ``end``."""
    from nirguard.errors import InvalidNIR, LookupDenied
    from nirguard.guard import LookupGuard
    from nirguard.keys import SecretKey
    from nirguard.pseudonym import Pseudonymiser

    now = [0.0]
    out = PassResult()
    accounts = attack.accounts if attack is not None else []
    attacker_index = {name: i for i, name in enumerate(accounts)}
    account_attempts = [0] * len(accounts)

    def on_alert(alert: Any) -> None:
        who = str(alert.practitioner)
        i = attacker_index.get(who, -1)
        by_account = account_attempts[i] if i >= 0 else 0
        out.alerts.append((now[0], who, str(alert.signal), out.attempts, by_account))

    guard = LookupGuard(
        policy=policy_for,
        storage="memory://",
        pseudonymiser=Pseudonymiser(SecretKey(key, "replay"), purpose="guard"),
        alert=on_alert,
        clock=lambda: EPOCH + now[0],
    )
    lookup = guard.lookup
    index = registry.index
    names = [p.id for p in workload.practitioners]
    all_events = workload.events
    status = out.status
    got: list[set[int]] = [set() for _ in accounts]
    exposed = out.exposed
    touches = out.touches
    pending: list[str | None] = [None] * len(accounts)
    heap = [(t, i) for i, t in enumerate(attack.start)] if attack is not None else []
    heapq.heapify(heap)
    interval = attack.interval if attack is not None else 0.0
    inf = float("inf")
    for e in itertools.chain(events, (-1,)):
        t_legit = all_events[e][0] if e >= 0 else inf
        while heap and heap[0][0] <= t_legit:
            assert attack is not None
            t, i = heap[0]
            if t >= end:
                heap.clear()
                break
            number = pending[i] or attack.next_nir(i)
            if number is None:
                heapq.heappop(heap)
                continue
            now[0] = t
            out.attempts += 1
            account_attempts[i] += 1
            touches.append((number[:10], t))
            try:
                with lookup(accounts[i], number) as lk:
                    found = index.get(number)
                    lk.record(found)
            except LookupDenied as exc:
                pending[i] = number
                if exc.retry_after is None:
                    out.stopped += 1
                    heapq.heappop(heap)
                else:
                    heapq.heapreplace(heap, (t + max(float(exc.retry_after), 1.0), i))
                continue
            pending[i] = None
            if found is not None:
                got[i].add(found)
                if found not in exposed:
                    exposed[found] = t
            attack.feedback(i, found is not None)
            heapq.heapreplace(heap, (t + interval, i))
        if e < 0:
            break
        _, who, typed, person, kind = all_events[e]
        now[0] = t_legit
        try:
            with lookup(names[who], typed) as lk:
                lk.record(person if kind == LOOKUP else None)
        except InvalidNIR:
            status[e] = INVALID
        except LookupDenied as exc:
            status[e] = INVALID if kind == TYPO else exc.code
    out.got = [len(s) for s in got]
    return out


def run_spliced(
    *,
    registry: Registry,
    workload: Workload,
    index: CohortIndex,
    policy_for: Callable[[str], QuotaPolicy],
    policies: Iterable[QuotaPolicy],
    key: bytes,
    make_attack: Callable[[], Attack],
    end: float,
) -> PassResult:
    """The attack with every legitimate account it can interact with (see the module doc).

    The result's ``status`` covers the included accounts only; the others
    keep the baseline's.
    """
    shared, windows = coupling_windows(policies)
    everyone = frozenset(range(len(workload.practitioners)))
    included: frozenset[int] = everyone if shared else frozenset()
    for _ in range(_MAX_ROUNDS):
        events = sorted(e for who in included for e in index.events_of.get(who, ()))
        result = run_pass(
            registry=registry,
            workload=workload,
            policy_for=policy_for,
            key=key,
            attack=make_attack(),
            events=events,
            end=end,
        )
        result.included = included
        if included == everyone or not windows:
            return result
        hot = _hot_accounts(result.touches, index, windows)
        if hot <= included:
            return result
        included = included | hot
        if len(included) > _FULL_SHARE * len(everyone):
            break
    included = everyone
    result = run_pass(
        registry=registry,
        workload=workload,
        policy_for=policy_for,
        key=key,
        attack=make_attack(),
        events=range(len(workload.events)),
        end=end,
    )
    result.included = included
    return result
