"""Run the replay: build the world, replay the history once, then each attack week.

Simulated time, no sleeping (see :mod:`nirguard.replay.simulation`).

Configurations:

``none``
    No guard: every lookup runs. The attack scripts run alone, as
    legitimate traffic cannot change what they get.
``quotas``
    The policy with every detection signal off (``cohort``,
    ``portal_cohort``, ``hot_cohort``, ``miss_ratio``) and no lockout
    escalation: what plain rate limits do.
``guard``
    The whole policy: what ``LookupGuard`` does by default.

For each guarded configuration the legitimate history (the weeks before
the attack) runs once; the guard is snapshotted, and every strategy's week
(plus a ``quiet`` week with no attack) starts from that snapshot. With
``shadow``, the ``guard`` configuration is replayed a second time with
``LookupGuard(enforce=False)``. With ``jobs`` above 1 on a platform that
forks, the weeks run in worker processes that inherit the snapshot; the
result does not depend on ``jobs``.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, TypeVar

from nirguard.replay.attacks import (
    ATTACK_OFFSET,
    STRATEGIES,
    Attack,
    AttackMaterial,
    attack_material,
    build_attack,
)
from nirguard.replay.practitioners import (
    DAY,
    HOUR,
    KINDS,
    POLICY_KIND,
    Workload,
    accounts_for,
    build_workload,
)
from nirguard.replay.registry import Registry, build_registry
from nirguard.replay.simulation import (
    PORTAL_SIGNALS,
    AttackTally,
    GuardFeatures,
    LegitTally,
    Pass,
    Snapshot,
    guard_features,
)

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = [
    "CONFIGURATIONS",
    "LegitSummary",
    "Outcome",
    "ReplayResult",
    "ReplaySettings",
    "run_replay",
]

CONFIGURATIONS: Final = ("none", "quotas", "guard")
QUIET: Final = "quiet"
#: Policy fields the ``quotas`` configuration keeps; every other field that can
#: be switched off (``None``, or an empty escalation) is switched off.
QUOTA_FIELDS: Final = frozenset(
    {
        "name",
        "lookups",
        "distinct_patients",
        "invalid_nirs",
        "misses",
        "portal",
        "lockout",
        "lockout_memory",
        "break_glass",
        "break_glass_access",
    }
)
#: Off values to try for detection fields, before ``None``.
_OFF: Final[dict[str, object]] = {"lockout_escalation": ()}


@dataclass(frozen=True)
class ReplaySettings:
    """What to replay.

    Attributes:
        seed: seed of every random choice; the same settings give the same result.
        scale: size of the portal: 1 is 2,000 legitimate accounts and about
            2,000,000 people (registry and accounts grow together).
        history_weeks: weeks of legitimate traffic before the attack week.
        attack_days: days of the attack week (the attack starts on its
            first day at 01:00 and runs to its end).
        attackers: stolen accounts per strategy.
        strategies: which attack strategies to run.
        configurations: which configurations to run (see the module doc).
        shadow: also replay the ``guard`` configuration in shadow mode.
        policy: the GPs' (and stolen accounts') policy; ``None``: ``QuotaPolicy()``.
        desk_policy: hospital and pharmacy desks' policy; ``None``: the replay's
            :func:`nirguard.replay.tuning.desk_policy`.
        jobs: worker processes (1: everything in this process).
    """

    seed: int = 0
    scale: float = 1.0
    history_weeks: int = 3
    attack_days: int = 7
    attackers: int = 19
    strategies: tuple[str, ...] = STRATEGIES
    configurations: tuple[str, ...] = ("none", "guard")
    shadow: bool = True
    policy: QuotaPolicy | None = None
    desk_policy: QuotaPolicy | None = None
    jobs: int = 1


@dataclass
class LegitSummary:
    """What a guard cost legitimate accounts over some weeks (JSON-ready).

    Attributes:
        lookups: lookups (valid numbers typed) per kind of account.
        refused: refused lookups per kind.
        asked: lookups answered "a reason is required" per kind (the
            practitioner states one and is let through within budget).
        break_glass: lookups let through on a stated reason, per kind.
        refused_by: refusals by quota or signal.
        typos: mistyped numbers (refused as invalid: correct refusals, not lookups).
        locked: accounts locked out at least once, per kind.
        locked_by: those lockouts by the signal that started them.
        portal_locked: accounts locked by a portal-wide signal (``hot_cohort``,
            ``portal_cohort``).
        alerts: alerts on legitimate accounts, by signal.
    """

    lookups: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)
    break_glass: dict[str, int] = field(default_factory=dict)
    refused_by: dict[str, int] = field(default_factory=dict)
    typos: int = 0
    locked: dict[str, int] = field(default_factory=dict)
    locked_by: dict[str, int] = field(default_factory=dict)
    portal_locked: int = 0
    alerts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, tally: LegitTally, kinds: list[str]) -> LegitSummary:
        """Summarise a tally (``kinds``: kind of each legitimate account)."""
        locked_kinds = Counter(kinds[who] for who in tally.locked)
        return cls(
            lookups={k: tally.lookups[k] for k in KINDS},
            refused={k: tally.refused[k] for k in KINDS},
            asked={k: tally.asked[k] for k in KINDS},
            break_glass={k: tally.break_glass[k] for k in KINDS},
            refused_by=dict(sorted(tally.by_code.items())),
            typos=tally.typos,
            locked={k: locked_kinds[k] for k in KINDS},
            locked_by=dict(sorted(Counter(tally.locked.values()).items())),
            portal_locked=sum(1 for s in tally.locked.values() if s in PORTAL_SIGNALS),
            alerts=dict(sorted(tally.alerts.items())),
        )

    def rate(self, policy_kind: str) -> float:
        """Share of lookups refused for accounts of one policy (``gp`` or ``desk``)."""
        kinds = [k for k in KINDS if POLICY_KIND[k] == policy_kind]
        lookups = sum(self.lookups.get(k, 0) for k in kinds)
        refused = sum(self.refused.get(k, 0) for k in kinds)
        return refused / lookups if lookups else 0.0

    @property
    def total_lookups(self) -> int:
        """Lookups by every legitimate account."""
        return sum(self.lookups.values())

    @property
    def total_refused(self) -> int:
        """Refused lookups of every legitimate account."""
        return sum(self.refused.values())


@dataclass
class ShadowCheck:
    """Shadow mode against enforcement for one week (history included).

    Attributes:
        accounts: accounts with a first refusal under enforcement or in shadow.
        same: of those, accounts whose first would-refusal is enforcement's
            first refusal (same lookup, same quota or signal).
        differences: a few accounts that differ, described without a NIR.
        refused: lookups the shadow guard refused (it must refuse none).
    """

    accounts: int = 0
    same: int = 0
    differences: list[str] = field(default_factory=list)
    refused: int = 0

    @property
    def equal(self) -> bool:
        """Every account matches and nothing was refused."""
        return self.same == self.accounts and self.refused == 0


@dataclass
class Outcome:
    """What one strategy achieved under one configuration in the attack week.

    Attributes:
        exposed: distinct people whose identity was returned to a stolen account.
        exposed_per_account_max: the most any one stolen account obtained.
        attack_lookups: lookups tried by the stolen accounts (allowed or refused).
        break_glass: of those, let through on a stated reason.
        accounts_stopped: stolen accounts locked until an administrator unlocks them.
        accounts_signalled: stolen accounts refused or alerted on at least once.
        first_signal_lookups: lookups by all stolen accounts up to the first
            refusal of one of them, alert naming one, or portal alert in a cohort
            the attack had walked (``None``: nothing noticed).
        first_signal_seconds: simulated time from the start of the attack to it.
        first_signal: the quota or signal.
        account_signal_median: per stolen account, its own lookups up to its
            first refusal or alert: the median over accounts (``None``: most never).
        account_signal_max: the most (``None``: some account was never refused).
        exposure_by_hour: identities exposed by the end of each hour of the attack week.
        legit: what the guard cost legitimate accounts in that week.
        legit_all: the same over the history and that week together.
        shadow: shadow mode against enforcement (``guard`` only).
    """

    strategy: str
    configuration: str
    exposed: int = 0
    exposed_per_account_max: int = 0
    attack_lookups: int = 0
    break_glass: int = 0
    accounts_stopped: int = 0
    accounts_signalled: int = 0
    first_signal_lookups: int | None = None
    first_signal_seconds: float | None = None
    first_signal: str | None = None
    account_signal_median: int | None = None
    account_signal_max: int | None = None
    exposure_by_hour: list[int] = field(default_factory=list)
    legit: LegitSummary | None = None
    legit_all: LegitSummary | None = None
    shadow: ShadowCheck | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        if self.first_signal_seconds is not None:
            out["first_signal_seconds"] = round(self.first_signal_seconds, 1)
        return out


@dataclass
class ReplayResult:
    """Every outcome, plus what the run was made of.

    Attributes:
        settings: the settings (policies as dicts).
        world: sizes of the registry and the workload, and the legitimate
            weekly volumes per kind.
        features: what the installed guard offers (shadow, break-glass, snapshot).
        history: per guarded configuration, what the guard cost legitimate
            accounts in the weeks before the attack.
        outcomes: one per strategy and configuration, plus one ``quiet``
            week (no attack) per guarded configuration.
        seconds: wall-clock seconds per stage.
    """

    settings: dict[str, Any]
    world: dict[str, Any]
    features: dict[str, bool]
    history: dict[str, LegitSummary]
    outcomes: list[Outcome]
    seconds: dict[str, float] = field(default_factory=dict)

    def outcome(self, strategy: str, configuration: str) -> Outcome:
        """The outcome of one pair.

        Raises:
            KeyError: the pair was not run.
        """
        for o in self.outcomes:
            if o.strategy == strategy and o.configuration == configuration:
                return o
        raise KeyError((strategy, configuration))

    @property
    def strategies(self) -> list[str]:
        """Strategies run, in order (``quiet`` excluded)."""
        return list(dict.fromkeys(o.strategy for o in self.outcomes if o.strategy != QUIET))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "settings": self.settings,
            "world": self.world,
            "features": self.features,
            "history": {k: asdict(v) for k, v in self.history.items()},
            "outcomes": [o.to_dict() for o in self.outcomes],
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


# --------------------------------------------------------------------------- policies


def policy_dict(policy: QuotaPolicy) -> dict[str, Any]:
    """The fields of a policy as plain JSON values."""
    return dict(policy.model_dump(mode="json"))


def named(policy: QuotaPolicy, name: str) -> QuotaPolicy:
    """``policy`` with ``name`` set, unless it already has one."""
    from nirguard.policy import QuotaPolicy

    if policy.name is not None:
        return policy
    return QuotaPolicy(**{**policy.model_dump(), "name": name})


def without_detection(policy: QuotaPolicy) -> QuotaPolicy:
    """The same quotas with every detection signal off.

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
        for off in (_OFF.get(name, None), None, ()):
            try:
                QuotaPolicy(**{**data, name: off})
            except PolicyError:
                continue
            data[name] = off
            break
    return QuotaPolicy(**data)


def _policies(settings: ReplaySettings) -> dict[str, tuple[QuotaPolicy, QuotaPolicy]]:
    from nirguard.policy import QuotaPolicy
    from nirguard.replay.tuning import desk_policy

    gp = named(settings.policy if settings.policy is not None else QuotaPolicy(), "gp")
    desk = named(
        settings.desk_policy if settings.desk_policy is not None else desk_policy(), "desk"
    )
    return {
        "quotas": (without_detection(gp), without_detection(desk)),
        "guard": (gp, desk),
    }


# --------------------------------------------------------------------------- progress


class _Progress:
    """Turns stage fractions into one fraction of the whole run for ``callback``."""

    def __init__(self, callback: Callable[[str, float], None] | None, total: float) -> None:
        self.callback = callback
        self.total = max(total, 1.0)
        self.done = 0.0

    def stage(self, units: float) -> Callable[[str, float], None]:
        """A reporter for a stage worth ``units``; the stage ends at the next call."""
        start = self.done
        self.done += units

        def report(label: str, fraction: float) -> None:
            if self.callback is not None:
                share = (start + min(1.0, max(0.0, fraction)) * units) / self.total
                self.callback(label, min(1.0, share))

        return report


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    """Everything the passes share, built once per settings."""

    settings: ReplaySettings
    registry: Registry
    workload: Workload
    material: AttackMaterial
    policies: dict[str, tuple[QuotaPolicy, QuotaPolicy]]
    features: GuardFeatures

    @property
    def attack_start(self) -> float:
        """Time of the first attempt (seconds from day 0)."""
        return self.workload.attack_day * DAY + ATTACK_OFFSET

    @property
    def end(self) -> float:
        """End of the replay (seconds from day 0)."""
        return self.workload.days * DAY

    def attack(self, strategy: str) -> Attack:
        """A fresh script of ``strategy``, paced on the ``guard`` policy."""
        return build_attack(
            strategy,
            self.registry,
            accounts=self.settings.attackers,
            policy=policy_dict(self.policies["guard"][0]),
            seed=self.settings.seed,
            material=self.material,
            start=self.attack_start,
        )

    def attackers(self) -> list[str]:
        """Ids of the stolen accounts."""
        return [f"stolen-{i:02d}" for i in range(self.settings.attackers)]

    def policy_for(self, configuration: str) -> Callable[[str], QuotaPolicy]:
        """Practitioner id -> policy: desks get the desk policy, everyone else the GPs'."""
        gp, desk = self.policies[configuration]
        desks = frozenset(
            p.id for p in self.workload.practitioners if POLICY_KIND[p.kind] == "desk"
        )

        def policy_for(practitioner: str) -> QuotaPolicy:
            return desk if practitioner in desks else gp

        return policy_for


def build_world(
    settings: ReplaySettings, progress: Callable[[str, float], None] | None = None
) -> World:
    """Build the registry, the legitimate weeks and the attackers' material."""
    say = progress or (lambda _text, _done: None)
    say("building the registry", 0.0)
    registry = build_registry(settings.scale, seed=settings.seed)
    say("building the legitimate weeks", 0.2)
    workload = build_workload(
        registry,
        accounts_for(settings.scale),
        history_weeks=settings.history_weeks,
        attack_days=settings.attack_days,
        seed=settings.seed,
        progress=lambda done: say("building the legitimate weeks", 0.2 + 0.8 * done),
    )
    material = attack_material(registry, settings.seed)
    return World(settings, registry, workload, material, _policies(settings), guard_features())


# --------------------------------------------------------------------------- passes


def _key(configuration: str) -> bytes:
    return f"nirguard-replay-{configuration}".encode().ljust(32, b".")


@dataclass
class _Week:
    """What a worker sends back for one week of one (configuration, mode)."""

    strategy: str
    legit: LegitTally
    attack: AttackTally | None
    first: list[tuple[int, str, str] | None]
    shadow_refused: int


_CURRENT: tuple[Pass, Snapshot | None, World] | None = None


def _run_week(strategy: str) -> _Week:
    """One attack week from the end of the history: restored from the snapshot, or,
    in a process forked after the history, from the state it was forked with."""
    assert _CURRENT is not None
    p, state, world = _CURRENT
    if state is not None:
        p.restore(state)
    attack = world.attack(strategy) if strategy != QUIET else None
    legit, tally = p.run(world.workload.split, len(world.workload), attack=attack, end=world.end)
    if tally is not None:
        tally.touched = set()  # not needed by the parent; keeps the answer small
    return _Week(strategy, legit, tally, list(p.first), p.shadow_refused)


def _map_weeks(
    p: Pass, world: World, tasks: list[str], done: Callable[[str], None]
) -> dict[str, _Week]:
    """Every week of ``tasks`` from the state ``p`` is in now.

    Where processes fork, each week runs in a process forked for it (the
    fork is the snapshot: nothing to copy or restore), ``jobs`` at a time.
    Elsewhere the pass is snapshotted and restored before each week.
    """
    global _CURRENT
    out: dict[str, _Week] = {}
    try:
        if _can_fork():
            _CURRENT = (p, None, world)
            for week in _forked(_run_week, tasks, max(1, world.settings.jobs)):
                out[week.strategy] = week
                done(week.strategy)
            return out
        _CURRENT = (p, p.snapshot(), world)
        for task in tasks:
            out[task] = _run_week(task)
            done(task)
        return out
    finally:
        _CURRENT = None


_T = TypeVar("_T")


def _forked(work: Callable[[str], _T], tasks: list[str], jobs: int) -> Iterator[_T]:
    """``work(task)`` for each task, each in a process forked for it, ``jobs`` at a time.

    Plain processes and pipes, no pool: the parent starts no thread, so
    forking stays safe, and each child sees the parent's state as it is now.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("fork")
    todo = list(tasks)
    running: dict[Any, Any] = {}
    while todo or running:
        while todo and len(running) < jobs:
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=_child, args=(work, todo.pop(0), send), daemon=False)
            child.start()
            send.close()
            running[receive] = child
        for ready in wait(list(running)):
            answer = _answer(running.pop(ready), ready)
            if isinstance(answer, BaseException):
                for other, proc in running.items():
                    proc.terminate()
                    other.close()
                raise answer
            yield answer


def _answer(child: Any, receive: Any) -> Any:
    """What a forked child sent back (its result, or the exception it met), once it ended."""
    try:
        answer = receive.recv()
    except EOFError:
        answer = RuntimeError("a replay process ended without an answer")
    receive.close()
    child.join()
    return answer


def _child(work: Callable[[str], Any], task: str, send: Any) -> None:
    try:
        send.send(work(task))
    except Exception as exc:  # the parent re-raises it
        send.send(RuntimeError(f"replay week failed: {type(exc).__name__}: {exc}"))
    finally:
        send.close()


def _can_fork() -> bool:
    import multiprocessing

    return (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and sys.platform != "darwin"
    )


def _replay_configuration(
    world: World,
    configuration: str,
    enforce: bool,
    tasks: list[str],
    progress: _Progress,
) -> tuple[LegitTally, dict[str, _Week]]:
    label = configuration if enforce else f"{configuration} (shadow)"
    p = Pass(
        registry=world.registry,
        workload=world.workload,
        policy_for=world.policy_for(configuration),
        key=_key(configuration),
        attackers=world.attackers(),
        enforce=enforce,
        features=world.features,
    )
    split = world.workload.split
    report = progress.stage(split)
    history, _ = p.run(0, split, progress=lambda n: report(f"{label}: history", n / max(1, split)))
    finished: list[str] = []
    report = progress.stage(len(tasks) * (len(world.workload) - split))

    def done(strategy: str) -> None:
        finished.append(strategy)
        report(f"{label}: {strategy}", len(finished) / len(tasks))

    return history, _map_weeks(p, world, tasks, done)


def world_features(world: World | None) -> GuardFeatures:
    """The installed guard's features (from ``world`` when there is one)."""
    return world.features if world is not None else guard_features()


def _groups(passes: list[tuple[str, bool]], jobs: int) -> list[list[tuple[str, bool]]]:
    """Passes shared round robin between ``jobs`` processes (the first group is ours)."""
    count = max(1, min(jobs, len(passes))) if _can_fork() else 1
    return [passes[i::count] for i in range(count)] if passes else []


_Found = dict[tuple[str, bool], tuple[LegitTally, dict[str, _Week]]]


def _run_group(
    world: World,
    group: list[tuple[str, bool]],
    tasks: list[str],
    progress: _Progress,
) -> _Found:
    found: _Found = {}
    for configuration, enforce in group:
        found[(configuration, enforce)] = _replay_configuration(
            world, configuration, enforce, tasks, progress
        )
    return found


def _run_groups(
    world: World, groups: list[list[tuple[str, bool]]], tasks: list[str], progress: _Progress
) -> _Found:
    """Run the groups of passes: the first here, the others in forked processes at once."""
    if not groups:
        return {}
    import multiprocessing

    jobs = max(1, world.settings.jobs // len(groups))
    local = replace(world, settings=replace(world.settings, jobs=jobs))
    context = multiprocessing.get_context("fork")
    children = []
    for group in groups[1:]:
        receive, send = context.Pipe(duplex=False)
        work = functools.partial(_run_group, local, group, tasks, _Progress(None, 1))
        child = context.Process(target=_child, args=(_ignore_task(work), "", send), daemon=False)
        child.start()
        send.close()
        children.append((child, receive))
    found = _run_group(local, groups[0], tasks, progress)
    for child, receive in children:
        progress.stage(0)("waiting for the other passes", 1.0)
        answer = _answer(child, receive)
        if isinstance(answer, BaseException):
            raise answer
        found.update(answer)
    return found


def _ignore_task(work: Callable[[], _T]) -> Callable[[str], _T]:
    return lambda _task: work()


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _hour_curve(times: array[float] | list[float], start: float, hours: int) -> list[int]:
    counts = [0] * hours
    for t in times:
        h = int((t - start) // HOUR)
        if 0 <= h < hours:
            counts[h] += 1
    total, out = 0, []
    for c in counts:
        total += c
        out.append(total)
    return out


def _attack_outcome(
    world: World, strategy: str, configuration: str, tally: AttackTally, legit: LegitSummary
) -> Outcome:
    week_start = world.workload.attack_day * DAY
    hours = world.settings.attack_days * 24
    signals = tally.account_signal
    known = sorted(s for s in signals if s is not None)
    first = tally.first_signal
    return Outcome(
        strategy=strategy,
        configuration=configuration,
        exposed=len(tally.exposed),
        exposed_per_account_max=max(tally.got, default=0),
        attack_lookups=tally.attempts,
        break_glass=tally.break_glass,
        accounts_stopped=tally.stopped,
        accounts_signalled=len(known),
        first_signal_lookups=first[0] if first else None,
        first_signal_seconds=(first[1] - world.attack_start) if first else None,
        first_signal=first[2] if first else None,
        account_signal_median=known[len(signals) // 2] if len(known) > len(signals) // 2 else None,
        account_signal_max=known[-1] if known and len(known) == len(signals) else None,
        exposure_by_hour=_hour_curve(sorted(tally.exposed.values()), week_start, hours),
        legit=legit,
    )


def _unguarded(world: World, strategy: str) -> Outcome:
    attack = world.attack(strategy)
    times, found, attempts = attack.unguarded(world.registry, world.end)
    hours = world.settings.attack_days * 24
    return Outcome(
        strategy=strategy,
        configuration="none",
        exposed=len(times),
        exposed_per_account_max=max(found, default=0),
        attack_lookups=attempts,
        exposure_by_hour=_hour_curve(times, world.workload.attack_day * DAY, hours),
    )


def _compare(
    names: list[str],
    enforced: list[tuple[int, str, str] | None],
    shadow: list[tuple[int, str, str] | None],
    refused: int,
) -> ShadowCheck:
    check = ShadowCheck(refused=refused)
    for i, (a, b) in enumerate(zip(enforced, shadow, strict=True)):
        if a is None and b is None:
            continue
        check.accounts += 1
        if a == b:
            check.same += 1
        elif len(check.differences) < 5:
            check.differences.append(f"{names[i]}: enforced {a}, shadow {b}")
    return check


def run_replay(
    settings: ReplaySettings | None = None,
    *,
    progress: Callable[[str, float], None] | None = None,
    world: World | None = None,
) -> ReplayResult:
    """Replay the portal's history and its attack week under each configuration.

    Args:
        settings: what to run (defaults: scale 1, 3 weeks of history, a
            7-day attack week, 19 stolen accounts, every strategy, no guard
            and the shipped policy, shadow check on).
        progress: called with a stage label and the fraction of that stage done.
        world: a world already built for these settings (the tuning sweeps
            reuse one); built here when ``None``.

    Raises:
        ValueError: unknown strategy or configuration, or sizes out of range.
        PolicyError: a policy could not be built.
    """
    import time

    settings = settings or ReplaySettings()
    for name in settings.configurations:
        if name not in CONFIGURATIONS:
            raise ValueError(f"unknown configuration {name!r}")
    for strategy in settings.strategies:
        if strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}"
            )
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    # Units of work: one event replayed through a guard; building costs about a third.
    events = (
        accounts_for(settings.scale) * 142 * (settings.history_weeks + settings.attack_days / 7)
    )
    guarded = [c for c in settings.configurations if c != "none"]
    passes = [(c, True) for c in guarded]
    shadow_ok = settings.shadow and world_features(world).shadow
    if "guard" in guarded and shadow_ok:
        passes.append(("guard", False))
    tasks = list(settings.strategies) or [QUIET]
    groups = _groups(passes, settings.jobs)
    week_units = (
        events / (settings.history_weeks + settings.attack_days / 7) * settings.attack_days / 7
    )
    mine = len(groups[0]) if groups else 0
    plan = _Progress(
        progress, events * 0.3 + mine * (events - week_units + len(tasks) * week_units)
    )
    if world is None:
        world = build_world(settings, plan.stage(events * 0.3))
    else:
        plan.stage(events * 0.3)
        world = World(
            settings,
            world.registry,
            world.workload,
            world.material,
            _policies(settings),
            world.features,
        )
    seconds["world"] = time.perf_counter() - started
    workload = world.workload
    kinds: list[str] = [p.kind for p in workload.practitioners]
    names = [p.id for p in workload.practitioners] + world.attackers()
    outcomes: list[Outcome] = []
    history: dict[str, LegitSummary] = {}
    weeks: dict[tuple[str, bool], dict[str, _Week]] = {}
    tallies: dict[str, LegitTally] = {}
    t0 = time.perf_counter()
    for (configuration, enforce), (tally, found) in _run_groups(world, groups, tasks, plan).items():
        weeks[(configuration, enforce)] = found
        if enforce:
            history[configuration] = LegitSummary.of(tally, kinds)
            tallies[configuration] = tally
    seconds["guarded passes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say = plan.stage(0)
    for strategy in settings.strategies:
        for configuration in settings.configurations:
            if configuration == "none":
                say(f"no guard: {strategy}", 1.0)
                outcomes.append(_unguarded(world, strategy))
                continue
            week = weeks[(configuration, True)][strategy]
            assert week.attack is not None
            outcome = _attack_outcome(
                world, strategy, configuration, week.attack, LegitSummary.of(week.legit, kinds)
            )
            outcome.legit_all = LegitSummary.of(tallies[configuration].merge(week.legit), kinds)
            shadow = weeks.get((configuration, False))
            if shadow is not None:
                other = shadow[strategy]
                outcome.shadow = _compare(names, week.first, other.first, other.shadow_refused)
            outcomes.append(outcome)
    for configuration in guarded if tasks == [QUIET] else ():
        week = weeks[(configuration, True)][QUIET]
        quiet = Outcome(
            QUIET,
            configuration,
            legit=LegitSummary.of(week.legit, kinds),
            legit_all=LegitSummary.of(tallies[configuration].merge(week.legit), kinds),
        )
        shadow = weeks.get((configuration, False))
        if shadow is not None:
            other = shadow[QUIET]
            quiet.shadow = _compare(names, week.first, other.first, other.shadow_refused)
        outcomes.append(quiet)
    seconds["no guard"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    seconds["cpu"] = _cpu()
    return ReplayResult(
        settings=_settings_dict(settings, world),
        world=_world_dict(world),
        features=asdict(world.features),
        history=history,
        outcomes=outcomes,
        seconds=seconds,
    )


def _settings_dict(settings: ReplaySettings, world: World) -> dict[str, Any]:
    gp, desk = world.policies["guard"]
    return {
        "seed": settings.seed,
        "scale": settings.scale,
        "history_weeks": settings.history_weeks,
        "attack_days": settings.attack_days,
        "attackers": settings.attackers,
        "strategies": list(settings.strategies),
        "configurations": list(settings.configurations),
        "shadow": settings.shadow and world.features.shadow,
        "policy": policy_dict(gp),
        "desk_policy": policy_dict(desk),
        "attack_interval_seconds": {
            s: round(world.attack(s).interval, 1) for s in settings.strategies
        },
    }


def _world_dict(world: World) -> dict[str, Any]:
    registry, workload = world.registry, world.workload
    sizes = sorted((registry.size(c) for c in range(registry.cohorts)), reverse=True)
    split = workload.split
    return {
        "people": len(registry),
        "cohorts": registry.cohorts,
        "cohort_fraction": round(registry.fraction, 6),
        "largest_cohorts": sizes[:5],
        "people_in_cohorts_of_120_or_more": sum(n for n in sizes if n >= 120),
        "accounts": dict(Counter(p.kind for p in workload.practitioners)),
        "history_lookups": workload.count(0, split),
        "attack_week_lookups": workload.count(split),
        "attack_week_lookups_by_kind": workload.count_by_kind(split),
        "weekly_volume": {k: workload.weekly_volume(k) for k in KINDS},
    }


def default_jobs() -> int:
    """Worker processes to use by default: the CPUs, at most 2."""
    return max(1, min(2, os.cpu_count() or 1))
