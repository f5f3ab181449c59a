"""Run the week: legitimate traffic and one attack, under one configuration.

Simulated time, no sleeping: events are processed in time order and the
guard's clock (which its in-process store follows too) returns the time of
the event being processed. Legitimate lookups are generated once, in time
order; attacker accounts are processes in a heap, since when they try next
depends on the guard's answers.

Configurations:

``none``
    No guard: every lookup runs. The attack scripts run alone, as
    legitimate traffic cannot change what they get.
``quotas``
    The guard with the per-practitioner and portal quotas of the policy and
    a fixed lockout; every detection option off.
``detection``
    The whole policy: quotas plus detection and escalating lockouts.

Every strategy x configuration pair is independent; with ``jobs`` above 1
and a platform that forks, pairs run in parallel worker processes that
inherit the registry and the legitimate workload.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

from nirguard.replay.attacks import STRATEGIES, Attack, build_attack
from nirguard.replay.practitioners import DAY, HOUR, LOOKUP, TYPO, Workload, build_workload
from nirguard.replay.registry import Registry, build_registry

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = [
    "CONFIGURATIONS",
    "DETECTION_FIELDS",
    "EPOCH",
    "Outcome",
    "ReplayResult",
    "ReplaySettings",
    "run_replay",
]

CONFIGURATIONS: Final = ("none", "quotas", "detection")
#: Policy fields that the ``quotas`` configuration turns off.
DETECTION_FIELDS: Final = ("cohort", "portal_cohort", "miss_ratio", "lockout_escalation")
#: POSIX time of the simulated Monday 00:00 (2026-03-02 UTC).
EPOCH: Final = 1_772_409_600.0


@dataclass(frozen=True)
class ReplaySettings:
    """What to replay.

    Attributes:
        seed: seed of every random choice; the same settings give the same result.
        people: size of the registry.
        practitioners: legitimate accounts.
        days: length of the replay.
        attackers: stolen accounts per strategy.
        strategies: which attack strategies to run.
        configurations: which configurations to run.
        policy: the practitioners' policy (``None``: the shipped ``QuotaPolicy()``).
        desk_policy: the policy of hospital and pharmacy desks (``None``: ``policy``).
        jobs: worker processes (1: run everything in this process).
    """

    seed: int = 0
    people: int = 1_000_000
    practitioners: int = 2000
    days: int = 7
    attackers: int = 19
    strategies: tuple[str, ...] = STRATEGIES
    configurations: tuple[str, ...] = CONFIGURATIONS
    policy: QuotaPolicy | None = None
    desk_policy: QuotaPolicy | None = None
    jobs: int = 1


@dataclass
class Outcome:
    """What one strategy achieved under one configuration.

    Attributes:
        exposed: distinct people whose identity was returned to an attacker.
        exposed_per_account_max: the most any one stolen account obtained.
        attack_lookups: attempts by the stolen accounts (allowed or refused).
        legit_lookups: lookups of valid numbers by legitimate accounts.
        legit_refused: those refused by the guard.
        legit_refused_by: refusals by error code.
        typos_rejected: mistyped numbers rejected as invalid (correct refusals).
        legit_alerted: legitimate accounts that raised an alert (false alarms).
        first_alert_lookups: attempts by all stolen accounts before the first
            alert on one of them (``None``: no alert).
        first_alert_account_lookups: attempts by the alerted account up to
            and including the one that raised it.
        first_alert_seconds: simulated time from the first attempt to the alert.
        accounts_alerted: stolen accounts that raised an alert.
        accounts_stopped: stolen accounts locked until an administrator unlocks them.
        exposure_by_hour: identities exposed by the end of each simulated hour.
    """

    strategy: str
    configuration: str
    exposed: int = 0
    exposed_per_account_max: int = 0
    attack_lookups: int = 0
    legit_lookups: int = 0
    legit_refused: int = 0
    legit_refused_by: dict[str, int] = field(default_factory=dict)
    typos_rejected: int = 0
    legit_alerted: int = 0
    first_alert_lookups: int | None = None
    first_alert_account_lookups: int | None = None
    first_alert_seconds: float | None = None
    accounts_alerted: int = 0
    accounts_stopped: int = 0
    exposure_by_hour: list[int] = field(default_factory=list)

    @property
    def legit_refused_rate(self) -> float:
        """Share of legitimate lookups (valid numbers) that were refused."""
        return self.legit_refused / self.legit_lookups if self.legit_lookups else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        # Rounded: long float tails look like identifiers to leak scanners.
        out["legit_refused_rate"] = round(self.legit_refused_rate, 8)
        if self.first_alert_seconds is not None:
            out["first_alert_seconds"] = round(self.first_alert_seconds, 1)
        return out


@dataclass
class ReplayResult:
    """Every outcome, plus what the run was made of.

    Attributes:
        settings: the settings (policies as dicts).
        workload: sizes of the run and legitimate weekly volumes per kind.
        outcomes: one per strategy x configuration.
    """

    settings: dict[str, Any]
    workload: dict[str, Any]
    outcomes: list[Outcome]

    def outcome(self, strategy: str, configuration: str) -> Outcome:
        """The outcome of one pair.

        Raises:
            KeyError: the pair was not run.
        """
        for o in self.outcomes:
            if o.strategy == strategy and o.configuration == configuration:
                return o
        raise KeyError((strategy, configuration))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "settings": self.settings,
            "workload": self.workload,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


# --------------------------------------------------------------------------- policies


def policy_dict(policy: QuotaPolicy) -> dict[str, Any]:
    """The fields of a policy as plain JSON values."""
    return dict(policy.model_dump(mode="json"))


def without_detection(policy: QuotaPolicy) -> QuotaPolicy:
    """The same quotas with every detection option off."""
    from nirguard.policy import QuotaPolicy

    data = policy.model_dump()
    for name in DETECTION_FIELDS:
        if name in data:
            data[name] = None
    return QuotaPolicy(**data)


# --------------------------------------------------------------------------- the run


class _Shared:
    """Inputs shared by every pair (inherited by forked workers)."""

    registry: Registry
    workload: Workload
    attacks: dict[str, Attack]
    policies: dict[str, tuple[QuotaPolicy, QuotaPolicy]]
    hours: int


_SHARED: _Shared | None = None


def _hour_curve(times: list[float], hours: int) -> list[int]:
    """Cumulative count of sorted ``times`` at the end of each hour."""
    return [bisect.bisect_right(times, (h + 1) * HOUR) for h in range(hours)]


def _run_unguarded(shared: _Shared, strategy: str) -> Outcome:
    """The attack with nobody watching."""
    attack = _fresh_attack(shared, strategy)
    registry_index = shared.registry.index
    end = shared.hours * HOUR
    interval = attack.interval
    exposed: dict[int, float] = {}
    per_account = [0] * len(attack.accounts)
    attempts = 0
    heap = [(t, i) for i, t in enumerate(attack.start)]
    heapq.heapify(heap)
    next_nir = attack.next_nir
    feedback = attack.feedback
    while heap:
        t, i = heap[0]
        if t >= end:
            break
        number = next_nir(i)
        if number is None:
            heapq.heappop(heap)
            continue
        attempts += 1
        person = registry_index.get(number)
        if person is not None:
            per_account[i] += 1
            if person not in exposed:
                exposed[person] = t
        feedback(i, person is not None)
        heapq.heapreplace(heap, (t + interval, i))
    legit = sum(1 for e in shared.workload.events if e[4] != TYPO)
    typos = sum(1 for e in shared.workload.events if e[4] == TYPO)
    return Outcome(
        strategy=strategy,
        configuration="none",
        exposed=len(exposed),
        exposed_per_account_max=max(per_account, default=0),
        attack_lookups=attempts,
        legit_lookups=legit,
        typos_rejected=typos,
        exposure_by_hour=_hour_curve(sorted(exposed.values()), shared.hours),
    )


def _fresh_attack(shared: _Shared, strategy: str) -> Attack:
    import copy

    return copy.deepcopy(shared.attacks[strategy])


def _run_guarded(shared: _Shared, strategy: str, configuration: str) -> Outcome:
    """Legitimate traffic and the attack through one guard, in time order."""
    from nirguard.errors import InvalidNIR, LookupDenied
    from nirguard.guard import LookupGuard
    from nirguard.keys import SecretKey
    from nirguard.pseudonym import Pseudonymiser

    attack = _fresh_attack(shared, strategy)
    gp_policy, desk_policy = shared.policies[configuration]
    desks = shared.workload.desks
    policy_of: dict[str, QuotaPolicy] = {
        p.id: (desk_policy if p.id in desks else gp_policy) for p in shared.workload.practitioners
    }

    def policy_for(practitioner: str) -> QuotaPolicy:
        return policy_of.get(practitioner, gp_policy)

    now = [0.0]
    attackers = {name: i for i, name in enumerate(attack.accounts)}
    account_attempts = [0] * len(attack.accounts)
    counters = {"attempts": 0}
    alerts: list[tuple[float, str, int, int]] = []

    def on_alert(alert: Any) -> None:
        who = str(alert.practitioner)
        i = attackers.get(who, -1)
        alerts.append((now[0], who, counters["attempts"], account_attempts[i] if i >= 0 else 0))

    material = f"nirguard-replay-{configuration}-{strategy}".encode().ljust(32, b".")
    guard = LookupGuard(
        policy=policy_for,
        storage="memory://",
        pseudonymiser=Pseudonymiser(SecretKey(material, "replay"), purpose="guard"),
        alert=on_alert,
        clock=lambda: EPOCH + now[0],
    )
    lookup = guard.lookup
    registry_index = shared.registry.index
    names = [p.id for p in shared.workload.practitioners]
    end = shared.hours * HOUR

    legit_lookups = legit_refused = typos = 0
    refused_by: Counter[str] = Counter()
    exposed: dict[int, float] = {}
    got: list[set[int]] = [set() for _ in attack.accounts]
    stopped = 0
    pending: list[str | None] = [None] * len(attack.accounts)
    heap = [(t, i) for i, t in enumerate(attack.start)]
    heapq.heapify(heap)
    interval = attack.interval
    inf = float("inf")
    sentinel = (inf, -1, "", -1, TYPO)
    for t_legit, who, number, person, kind in itertools.chain(shared.workload.events, [sentinel]):
        # Attack attempts due before this legitimate lookup.
        while heap and heap[0][0] <= t_legit:
            t, i = heap[0]
            if t >= end:
                heap.clear()
                break
            number_a = pending[i] or attack.next_nir(i)
            if number_a is None:
                heapq.heappop(heap)
                continue
            now[0] = t
            counters["attempts"] += 1
            account_attempts[i] += 1
            try:
                with lookup(attack.accounts[i], number_a) as lk:
                    found = registry_index.get(number_a)
                    lk.record(found)
            except LookupDenied as exc:
                pending[i] = number_a
                if exc.retry_after is None:
                    stopped += 1
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
        if t_legit == inf:
            break
        now[0] = t_legit
        if kind != TYPO:
            legit_lookups += 1
        try:
            with lookup(names[who], number) as lk:
                lk.record(person if kind == LOOKUP else None)
        except InvalidNIR:
            typos += 1
        except LookupDenied as exc:
            if kind == TYPO:
                typos += 1
            else:
                legit_refused += 1
                refused_by[exc.code] += 1

    attacker_alerts = [a for a in alerts if a[1] in attackers]
    first = min(attacker_alerts, default=None)
    return Outcome(
        strategy=strategy,
        configuration=configuration,
        exposed=len(exposed),
        exposed_per_account_max=max((len(s) for s in got), default=0),
        attack_lookups=counters["attempts"],
        legit_lookups=legit_lookups,
        legit_refused=legit_refused,
        legit_refused_by=dict(sorted(refused_by.items())),
        typos_rejected=typos,
        legit_alerted=len({a[1] for a in alerts if a[1] not in attackers}),
        first_alert_lookups=first[2] if first else None,
        first_alert_account_lookups=first[3] if first else None,
        first_alert_seconds=(first[0] - min(attack.start)) if first else None,
        accounts_alerted=len({a[1] for a in attacker_alerts}),
        accounts_stopped=stopped,
        exposure_by_hour=_hour_curve(sorted(exposed.values()), shared.hours),
    )


def _run_pair(pair: tuple[str, str]) -> Outcome:
    shared = _SHARED
    assert shared is not None
    strategy, configuration = pair
    if configuration == "none":
        return _run_unguarded(shared, strategy)
    return _run_guarded(shared, strategy, configuration)


def _can_fork() -> bool:
    import multiprocessing

    return (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and sys.platform != "darwin"
    )


def _policies(settings: ReplaySettings) -> dict[str, tuple[QuotaPolicy, QuotaPolicy]]:
    from nirguard.policy import QuotaPolicy

    gp = settings.policy if settings.policy is not None else QuotaPolicy()
    desk = settings.desk_policy if settings.desk_policy is not None else gp
    return {
        "quotas": (without_detection(gp), without_detection(desk)),
        "detection": (gp, desk),
    }


def run_replay(
    settings: ReplaySettings | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Replay a week of a portal under attack and measure each configuration.

    Args:
        settings: what to run (defaults: 1,000,000 people, 2,000
            practitioners, 7 days, 19 stolen accounts, every strategy and
            configuration, the shipped policy).
        progress: called with a short line of text at each stage.

    Returns:
        One :class:`Outcome` per strategy x configuration.

    Raises:
        ValueError: unknown strategy or configuration, or sizes out of range.
        PolicyError: a policy could not be built.
    """
    global _SHARED
    settings = settings or ReplaySettings()
    for name in settings.configurations:
        if name not in CONFIGURATIONS:
            raise ValueError(f"unknown configuration {name!r}")
    say = progress or (lambda _: None)
    policies = _policies(settings)
    gp_policy = policies["detection"][0]

    say(f"building a registry of {settings.people:,} people")
    registry = build_registry(settings.people, seed=settings.seed)
    say(f"building a week of {settings.practitioners:,} practitioners")
    workload = build_workload(
        registry, settings.practitioners, days=settings.days, seed=settings.seed
    )
    shared = _Shared()
    shared.registry = registry
    shared.workload = workload
    shared.policies = policies
    shared.hours = int(settings.days * DAY // HOUR)
    shared.attacks = {
        s: build_attack(
            s,
            registry,
            accounts=settings.attackers,
            policy=policy_dict(gp_policy),
            seed=settings.seed,
        )
        for s in settings.strategies
    }
    pairs = [(s, c) for s in settings.strategies for c in settings.configurations]
    say(f"replaying {len(pairs)} strategy x configuration pairs")
    _SHARED = shared
    try:
        if settings.jobs > 1 and len(pairs) > 1 and _can_fork():
            import multiprocessing

            # Longest pairs first so that the pool ends together.
            order = sorted(pairs, key=lambda p: p[1] == "none")
            with multiprocessing.get_context("fork").Pool(min(settings.jobs, len(pairs))) as pool:
                done = dict(zip(order, pool.map(_run_pair, order, chunksize=1), strict=True))
            outcomes = [done[p] for p in pairs]
        else:
            outcomes = [_run_pair(p) for p in pairs]
    finally:
        _SHARED = None
    kinds = sorted({p.kind for p in workload.practitioners})
    return ReplayResult(
        settings={
            "seed": settings.seed,
            "people": settings.people,
            "practitioners": settings.practitioners,
            "days": settings.days,
            "attackers": settings.attackers,
            "policy": policy_dict(gp_policy),
            "desk_policy": policy_dict(policies["detection"][1]),
            "attack_interval_seconds": {s: round(a.interval, 1) for s, a in shared.attacks.items()},
        },
        workload={
            "registry_people": len(registry),
            "registry_cohorts": registry.cohorts,
            "legit_events": len(workload.events),
            "accounts": dict(Counter(p.kind for p in workload.practitioners)),
            "weekly_volume": {k: workload.weekly_volume(k) for k in kinds},
        },
        outcomes=outcomes,
    )


def default_jobs() -> int:
    """Worker processes to use by default: the CPUs, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def strategies_arg(values: Sequence[str] | None) -> tuple[str, ...]:
    """Validate a list of strategy names (all when empty).

    Raises:
        ValueError: an unknown name.
    """
    if not values:
        return STRATEGIES
    for v in values:
        if v not in STRATEGIES:
            raise ValueError(f"unknown strategy {v!r}; expected one of {', '.join(STRATEGIES)}")
    return tuple(dict.fromkeys(values))
