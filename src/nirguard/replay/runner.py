"""Run the week: legitimate traffic and one attack, under one configuration.

Simulated time, no sleeping: events are processed in time order and the
guard's clock (which its in-process store follows too) returns the time of
the event being processed (see :mod:`nirguard.replay.simulation` for the
passes, and how the legitimate week is shared between attacks).

Configurations:

``none``
    No guard: every lookup runs. The attack scripts run alone, as
    legitimate traffic cannot change what they get.
``quotas``
    The guard with the per-practitioner and portal quotas of the policy and
    a fixed lockout; every detection option off.
``detection``
    The whole policy: quotas plus detection and escalating lockouts.

The legitimate week runs once per guarded configuration, each attack once
per configuration; with ``jobs`` above 1 and a platform that forks, these
tasks run in worker processes that inherit the registry and the workload.
The result does not depend on ``jobs``.
"""

from __future__ import annotations

import bisect
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

from nirguard.replay.attacks import (
    ATTACK_START,
    STRATEGIES,
    Attack,
    AttackMaterial,
    attack_material,
    build_attack,
)
from nirguard.replay.practitioners import DAY, HOUR, TYPO, Workload, build_workload
from nirguard.replay.registry import Registry, build_registry
from nirguard.replay.simulation import EPOCH, CohortIndex, PassResult, run_pass, run_spliced

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
#: Policy fields the ``quotas`` configuration keeps; every other field that can
#: be switched off (``None``, or an empty escalation: every lockout lasts
#: ``lockout``) is detection and is switched off.
QUOTA_FIELDS: Final = frozenset(
    {
        "lookups",
        "distinct_patients",
        "invalid_nirs",
        "misses",
        "portal",
        "lockout",
        "lockout_memory",
    }
)
#: The detection fields of the policy this replay was tuned with, and their "off" value.
DETECTION_FIELDS: Final[dict[str, object]] = {
    "cohort": None,
    "portal_cohort": None,
    "miss_ratio": None,
    "lockout_escalation": (),
}


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
        desk_policy: the policy of hospital and pharmacy desks (``None``: the
            replay's recommended desk policy, :data:`nirguard.replay.tuning.DESK_POLICY`).
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
        legit_refused_by_kind: refusals by kind of account.
        typos_rejected: mistyped numbers rejected as invalid (correct refusals).
        legit_alerted: legitimate accounts that raised an alert (false alarms).
        legit_alerts_by_signal: those alerts by signal.
        first_alert_lookups: attempts by all stolen accounts before the first
            alert on one of them (``None``: no alert).
        first_alert_account_lookups: attempts by the alerted account up to
            and including the one that raised it.
        first_alert_seconds: simulated time from the start of the attack to the alert.
        first_alert_signal: what raised it.
        accounts_alerted: stolen accounts that raised an alert.
        accounts_stopped: stolen accounts locked until an administrator unlocks them.
        legit_accounts_replayed: legitimate accounts replayed together with the
            attack (the others cannot interact with it; see
            :mod:`nirguard.replay.simulation`).
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
    legit_refused_by_kind: dict[str, int] = field(default_factory=dict)
    typos_rejected: int = 0
    legit_alerted: int = 0
    legit_alerts_by_signal: dict[str, int] = field(default_factory=dict)
    first_alert_lookups: int | None = None
    first_alert_account_lookups: int | None = None
    first_alert_seconds: float | None = None
    first_alert_signal: str | None = None
    accounts_alerted: int = 0
    accounts_stopped: int = 0
    legit_accounts_replayed: int = 0
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
    """The same quotas with every detection option off.

    Fields outside :data:`QUOTA_FIELDS` are switched off when the policy
    accepts ``None`` (or an empty tuple) for them; parameters of a signal
    that cannot be off (such as ``miss_ratio_min_lookups``) are kept.
    """
    from nirguard.errors import PolicyError
    from nirguard.policy import QuotaPolicy

    data = policy.model_dump()
    for name in data:
        if name in QUOTA_FIELDS:
            continue
        for off in (DETECTION_FIELDS.get(name, None), None, ()):
            try:
                QuotaPolicy(**{**data, name: off})
            except PolicyError:
                continue
            data[name] = off
            break
    return QuotaPolicy(**data)


# --------------------------------------------------------------------------- the run


class _Shared:
    """Inputs shared by every pair (inherited by forked workers)."""

    registry: Registry
    workload: Workload
    material: AttackMaterial
    attackers: int
    seed: int
    policies: dict[str, tuple[QuotaPolicy, QuotaPolicy]]
    hours: int
    index: CohortIndex


_SHARED: _Shared | None = None


def _hour_curve(times: list[float], hours: int) -> list[int]:
    """Cumulative count of sorted ``times`` at the end of each hour."""
    return [bisect.bisect_right(times, (h + 1) * HOUR) for h in range(hours)]


def _run_unguarded(shared: _Shared, strategy: str) -> Outcome:
    """The attack with nobody watching."""
    attack = _fresh_attack(shared, strategy)
    exposed, found, attempts = attack.unguarded(shared.registry, shared.hours * HOUR)
    events = shared.workload.events
    typos = sum(1 for e in events if e[4] == TYPO)
    return Outcome(
        strategy=strategy,
        configuration="none",
        exposed=len(exposed),
        exposed_per_account_max=max(found, default=0),
        attack_lookups=attempts,
        legit_lookups=len(events) - typos,
        typos_rejected=typos,
        exposure_by_hour=_hour_curve(sorted(exposed.values()), shared.hours),
    )


def _fresh_attack(shared: _Shared, strategy: str) -> Attack:
    return build_attack(
        strategy,
        shared.registry,
        accounts=shared.attackers,
        policy=policy_dict(shared.policies["detection"][0]),
        seed=shared.seed,
        material=shared.material,
        horizon=shared.hours * HOUR,
    )


def _policy_lookup(shared: _Shared, configuration: str) -> Callable[[str], QuotaPolicy]:
    gp_policy, desk_policy = shared.policies[configuration]
    desks = shared.workload.desks

    def policy_for(practitioner: str) -> QuotaPolicy:
        return desk_policy if practitioner in desks else gp_policy

    return policy_for


def _key(configuration: str) -> bytes:
    return f"nirguard-replay-{configuration}".encode().ljust(32, b".")


def _run_baseline(shared: _Shared, configuration: str) -> PassResult:
    """The legitimate week alone under one configuration."""
    result = run_pass(
        registry=shared.registry,
        workload=shared.workload,
        policy_for=_policy_lookup(shared, configuration),
        key=_key(configuration),
        attack=None,
        events=range(len(shared.workload.events)),
        end=shared.hours * HOUR,
    )
    result.included = frozenset(range(len(shared.workload.practitioners)))
    return result


def _legit_tally(
    shared: _Shared, status: dict[int, str], keep: Callable[[int], bool]
) -> tuple[Counter[str], Counter[str], int]:
    """Refusals by code and by kind of account, and typos, over accounts kept."""
    events = shared.workload.events
    kinds = [p.kind for p in shared.workload.practitioners]
    by_code: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    typos = 0
    for e, code in status.items():
        who = events[e][1]
        if not keep(who):
            continue
        if events[e][4] == TYPO:
            typos += 1
        else:
            by_code[code] += 1
            by_kind[kinds[who]] += 1
    return by_code, by_kind, typos


def _run_attack(shared: _Shared, strategy: str, configuration: str) -> PassResult:
    """The attack under one configuration, with the legitimate accounts it can meet."""
    return run_spliced(
        registry=shared.registry,
        workload=shared.workload,
        index=shared.index,
        policy_for=_policy_lookup(shared, configuration),
        policies=shared.policies[configuration],
        key=_key(configuration),
        make_attack=lambda: _fresh_attack(shared, strategy),
        end=shared.hours * HOUR,
    )


def _outcome(
    shared: _Shared, strategy: str, configuration: str, baseline: PassResult, result: PassResult
) -> Outcome:
    """Splice an attack pass with the baseline week of the accounts it left out."""
    included = result.included
    base_code, base_kind, base_typos = _legit_tally(
        shared, baseline.status, lambda who: who not in included
    )
    new_code, new_kind, new_typos = _legit_tally(shared, result.status, lambda who: who in included)
    by_code, by_kind = base_code + new_code, base_kind + new_kind
    names = [p.id for p in shared.workload.practitioners]
    legit_ids = {names[i] for i in range(len(names))}
    included_ids = {names[i] for i in included}
    legit_alerts = [a for a in baseline.alerts if a[1] not in included_ids] + [
        a for a in result.alerts if a[1] in legit_ids
    ]
    attacker_alerts = [a for a in result.alerts if a[1] not in legit_ids]
    first = min(attacker_alerts, default=None)
    events = shared.workload.events
    typos = sum(1 for e in events if e[4] == TYPO)
    attack_start = ATTACK_START
    return Outcome(
        strategy=strategy,
        configuration=configuration,
        exposed=len(result.exposed),
        exposed_per_account_max=max(result.got, default=0),
        attack_lookups=result.attempts,
        legit_lookups=len(events) - typos,
        legit_refused=sum(by_code.values()),
        legit_refused_by=dict(sorted(by_code.items())),
        legit_refused_by_kind=dict(sorted(by_kind.items())),
        typos_rejected=base_typos + new_typos,
        legit_alerted=len({a[1] for a in legit_alerts}),
        legit_alerts_by_signal=dict(sorted(Counter(a[2] for a in legit_alerts).items())),
        first_alert_lookups=first[3] if first else None,
        first_alert_account_lookups=first[4] if first else None,
        first_alert_seconds=(first[0] - attack_start) if first else None,
        first_alert_signal=first[2] if first else None,
        accounts_alerted=len({a[1] for a in attacker_alerts}),
        accounts_stopped=result.stopped,
        legit_accounts_replayed=len(included),
        exposure_by_hour=_hour_curve(sorted(result.exposed.values()), shared.hours),
    )


def _run_task(task: tuple[str, str]) -> Outcome | PassResult:
    shared = _SHARED
    assert shared is not None
    strategy, configuration = task
    if strategy == "":
        return _run_baseline(shared, configuration)
    if configuration == "none":
        return _run_unguarded(shared, strategy)
    return _run_attack(shared, strategy, configuration)


def _map(tasks: list[tuple[str, str]], jobs: int) -> list[Outcome | PassResult]:
    """Run tasks, in worker processes when asked and possible (same results either way)."""
    if jobs > 1 and len(tasks) > 1 and _can_fork():
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
            return list(pool.map(_run_task, tasks, chunksize=1))
    return [_run_task(t) for t in tasks]


def _can_fork() -> bool:
    import multiprocessing

    return (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and sys.platform != "darwin"
    )


def _policies(settings: ReplaySettings) -> dict[str, tuple[QuotaPolicy, QuotaPolicy]]:
    from nirguard.policy import QuotaPolicy
    from nirguard.replay.tuning import desk_policy

    gp = settings.policy if settings.policy is not None else QuotaPolicy()
    desk = settings.desk_policy if settings.desk_policy is not None else desk_policy()
    return {
        "quotas": (without_detection(gp), without_detection(desk)),
        "detection": (gp, desk),
    }


def _prepare(settings: ReplaySettings, say: Callable[[str], None] = lambda _: None) -> _Shared:
    """Build everything the passes share: registry, week, attackers' material."""
    shared = _Shared()
    shared.policies = _policies(settings)
    say(f"building a registry of {settings.people:,} people")
    shared.registry = build_registry(settings.people, seed=settings.seed)
    say(f"building a week of {settings.practitioners:,} practitioners")
    shared.workload = build_workload(
        shared.registry, settings.practitioners, days=settings.days, seed=settings.seed
    )
    shared.hours = int(settings.days * DAY // HOUR)
    shared.attackers = settings.attackers
    shared.seed = settings.seed
    say("building the attackers' cohort queue and leaked list")
    shared.material = attack_material(shared.registry, settings.seed)
    shared.index = CohortIndex(shared.workload.events)
    return shared


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
    shared = _prepare(settings, say)
    registry, workload, policies = shared.registry, shared.workload, shared.policies
    gp_policy = policies["detection"][0]
    intervals = {s: _fresh_attack(shared, s).interval for s in settings.strategies}
    guarded = [c for c in settings.configurations if c != "none"]
    # Longest first: the legitimate week per configuration, then the attacks.
    tasks = [("", c) for c in guarded]
    tasks += [(s, c) for s in settings.strategies for c in guarded]
    tasks += [(s, "none") for s in settings.strategies if "none" in settings.configurations]
    say(
        f"replaying the legitimate week under {', '.join(guarded) or 'no guard'}"
        f" and {len(tasks) - len(guarded)} attacks"
    )
    _SHARED = shared
    try:
        done: dict[tuple[str, str], Any] = dict(zip(tasks, _map(tasks, settings.jobs), strict=True))
    finally:
        _SHARED = None
    outcomes = []
    for s in settings.strategies:
        for c in settings.configurations:
            found = done[(s, c)]
            if c != "none":
                found = _outcome(shared, s, c, done[("", c)], found)
            outcomes.append(found)
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
            "attack_interval_seconds": {s: round(i, 1) for s, i in intervals.items()},
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
