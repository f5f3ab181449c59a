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

With ``shadow``, the ``guard`` configuration is replayed a second time with
``LookupGuard(enforce=False)``. With ``jobs`` above 1 on a platform that
forks, passes and weeks run in worker processes; the result does not depend
on ``jobs``.
"""

from __future__ import annotations

import os
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from nirguard.replay.outcome import QUIET, LegitSummary, Outcome, ReplayResult, ShadowCheck
from nirguard.replay.passes import Found, Progress, Week, groups, run_groups
from nirguard.replay.policies import policy_dict
from nirguard.replay.practitioners import DAY, HOUR, KINDS, accounts_for
from nirguard.replay.tallies import LegitTally
from nirguard.replay.world import ReplaySettings, World, build_world, policies, with_sessions

__all__ = ["default_jobs", "run_replay"]


def default_jobs() -> int:
    """Worker processes to use by default: the CPUs, at most 2."""
    return max(1, min(2, os.cpu_count() or 1))


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


def _unguarded(world: World, strategy: str) -> Outcome:
    attack = world.attack(strategy)
    times, found, attempts = attack.unguarded(world.registry, world.end)
    hours = world.settings.attack_days * 24
    return Outcome(
        strategy=strategy,
        configuration="none",
        exposed=len(times),
        exposed_per_account_max=max(found, default=0),
        per_account=found,
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


class _Assembly:
    """Turns the passes' weeks into outcomes."""

    def __init__(self, world: World, found: Found) -> None:
        self.world = world
        self.kinds: list[str] = [p.kind for p in world.workload.practitioners]
        self.names = [p.id for p in world.workload.practitioners] + world.attackers()
        self.history: dict[str, LegitSummary] = {}
        self.tallies: dict[str, LegitTally] = {}
        self.weeks: dict[tuple[str, bool], dict[str, Week]] = {}
        for (configuration, enforce), (tally, weeks) in found.items():
            self.weeks[(configuration, enforce)] = weeks
            if enforce:
                self.history[configuration] = LegitSummary.of(
                    tally, self.kinds, world.history_weeks
                )
                self.tallies[configuration] = tally

    def guarded(self, strategy: str, configuration: str) -> Outcome:
        """The outcome of one strategy's week under a guarded configuration."""
        world = self.world
        week = self.weeks[(configuration, True)][strategy]
        weeks = world.attack_weeks
        outcome = Outcome(strategy, configuration)
        if week.attack is not None:
            outcome.attach(week.attack, world.attack_start)
            times = sorted(week.attack.exposed.values())
            hours = world.settings.attack_days * 24
            outcome.exposure_by_hour = _hour_curve(times, world.workload.attack_day * DAY, hours)
        outcome.legit = LegitSummary.of(week.legit, self.kinds, weeks)
        everything = self.tallies[configuration].merge(week.legit)
        outcome.legit_all = LegitSummary.of(everything, self.kinds, world.history_weeks + weeks)
        shadow = self.weeks.get((configuration, False))
        if shadow is not None:
            other = shadow[strategy]
            outcome.shadow = _compare(self.names, week.first, other.first, other.shadow_refused)
        return outcome


def _plan(settings: ReplaySettings, world: World | None) -> tuple[list[list[Any]], float, float]:
    """The groups of passes, the units of the whole run and of building the world."""
    from nirguard.replay.simulation import guard_features

    weeks = settings.history_weeks + settings.attack_days / 7
    events = accounts_for(settings.scale) * 142 * weeks
    guarded = [c for c in settings.configurations if c != "none"]
    passes = [(c, True) for c in guarded]
    features = world.features if world is not None else guard_features()
    if "guard" in guarded and settings.shadow and features.shadow:
        passes.append(("guard", False))
    parts = groups(passes, settings.jobs)
    tasks = len(settings.strategies) or 1
    week_units = events / weeks * settings.attack_days / 7
    mine = len(parts[0]) if parts else 0
    total = events * 0.3 + mine * (events - week_units + tasks * week_units)
    return parts, total, events * 0.3


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
    settings = settings or ReplaySettings()
    settings.check()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    parts, total, building = _plan(settings, world)
    plan = Progress(progress, total)
    if world is None:
        world = build_world(settings, plan.stage(building))
    else:
        plan.stage(building)
        world = with_sessions(replace(world, policies=policies(settings)), settings)
    seconds["world"] = time.perf_counter() - started
    tasks = list(settings.strategies) or [QUIET]
    t0 = time.perf_counter()
    assembly = _Assembly(world, run_groups(world, parts, tasks, plan))
    seconds["guarded passes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    outcomes = _outcomes(world, assembly, tasks, plan.stage(0))
    seconds["no guard"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    seconds["cpu"] = _cpu()
    return ReplayResult(
        settings=_settings_dict(settings, world),
        world=_world_dict(world),
        features=asdict(world.features),
        history=assembly.history,
        outcomes=outcomes,
        seconds=seconds,
    )


def _outcomes(
    world: World, assembly: _Assembly, tasks: list[str], say: Callable[[str, float], None]
) -> list[Outcome]:
    settings = world.settings
    guarded = [c for c in settings.configurations if c != "none"]
    outcomes: list[Outcome] = []
    for strategy in settings.strategies:
        for configuration in settings.configurations:
            if configuration == "none":
                say(f"no guard: {strategy}", 1.0)
                outcomes.append(_unguarded(world, strategy))
            else:
                outcomes.append(assembly.guarded(strategy, configuration))
    if tasks == [QUIET]:
        outcomes.extend(assembly.guarded(QUIET, c) for c in guarded)
    return outcomes


def _settings_dict(settings: ReplaySettings, world: World) -> dict[str, Any]:
    table = world.policies["guard"]
    sessions = {}
    if world.sessions is not None:  # absent without sessions: the reports before them
        sessions = {"sessions": True, "two_devices": settings.two_devices}
    return {
        "seed": settings.seed,
        "scale": settings.scale,
        "history_weeks": settings.history_weeks,
        "attack_days": settings.attack_days,
        "attackers": settings.attackers,
        "strategies": list(settings.strategies),
        "configurations": list(settings.configurations),
        "shadow": settings.shadow and world.features.shadow,
        "policy": policy_dict(table["gp"]),
        "desk_policy": policy_dict(table["desk"]),
        "attack_interval_seconds": {
            s: round(world.attack(s).interval, 1) for s in settings.strategies
        },
        **sessions,
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
