"""The guarded passes: the history once per configuration, then each strategy's week.

For each guarded configuration the legitimate history (the weeks before the
attack) runs once; each strategy's week (or a ``quiet`` week with no attack)
then starts from the state the history left. Where processes fork, each
week runs in a process forked after the history (the fork is the snapshot);
elsewhere a fresh pass replays the history again before each week. The
result does not depend on which.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from nirguard.replay.forking import can_fork, forked, start_child, wait_child
from nirguard.replay.outcome import QUIET
from nirguard.replay.simulation import Pass
from nirguard.replay.tallies import AttackTally, LegitTally
from nirguard.replay.world import World

__all__ = ["Found", "Progress", "Week", "groups", "run_groups"]

#: Each week's process is forked from the history's: its copy of the store is deliberate.
_STORAGE: Final = "memory://?on_fork=copy"


class Progress:
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


@dataclass
class Week:
    """What a worker sends back for one week of one (configuration, mode)."""

    strategy: str
    legit: LegitTally
    attack: AttackTally | None
    first: list[tuple[int, str, str] | None]
    shadow_refused: int


def _key(configuration: str) -> bytes:
    return f"nirguard-replay-{configuration}".encode().ljust(32, b".")


def _new_pass(world: World, configuration: str, enforce: bool) -> Pass:
    return Pass(
        registry=world.registry,
        workload=world.workload,
        policy_for=world.policy_for(configuration),
        key=_key(configuration),
        attackers=world.attackers(),
        enforce=enforce,
        features=world.features,
        storage=_STORAGE,
        sessions=world.sessions,
    )


def _week(p: Pass, world: World, strategy: str) -> Week:
    """One attack week from the state ``p`` is in (the end of the history)."""
    attack = world.attack(strategy) if strategy != QUIET else None
    legit, tally = p.run(world.workload.split, len(world.workload), attack=attack, end=world.end)
    if tally is not None:
        tally.touched = set()  # not needed by the parent; keeps the answer small
    return Week(strategy, legit, tally, list(p.first), p.shadow_refused)


def _fresh_week(world: World, configuration: str, enforce: bool, strategy: str) -> Week:
    """A fresh pass that replays the history again, then the week."""
    p = _new_pass(world, configuration, enforce)
    p.run(0, world.workload.split)
    return _week(p, world, strategy)


def _replay_configuration(
    world: World, configuration: str, enforce: bool, tasks: list[str], progress: Progress
) -> tuple[LegitTally, dict[str, Week]]:
    label = configuration if enforce else f"{configuration} (shadow)"
    p = _new_pass(world, configuration, enforce)
    split = world.workload.split
    report = progress.stage(split)
    history, _ = p.run(0, split, progress=lambda n: report(f"{label}: history", n / max(1, split)))
    report = progress.stage(len(tasks) * (len(world.workload) - split))
    out: dict[str, Week] = {}
    if can_fork():
        work = functools.partial(_week, p, world)
        weeks = forked(work, tasks, max(1, world.settings.jobs))
    else:
        weeks = (_fresh_week(world, configuration, enforce, task) for task in tasks)
    for week in weeks:
        out[week.strategy] = week
        report(f"{label}: {week.strategy}", len(out) / len(tasks))
    return history, out


#: (configuration, enforce) -> (the history's tally, each strategy's week)
Found = dict[tuple[str, bool], tuple[LegitTally, dict[str, Week]]]


def groups(passes: list[tuple[str, bool]], jobs: int) -> list[list[tuple[str, bool]]]:
    """Passes shared round robin between ``jobs`` processes (the first group is ours)."""
    count = max(1, min(jobs, len(passes))) if can_fork() else 1
    return [passes[i::count] for i in range(count)] if passes else []


def _run_group(
    world: World, group: list[tuple[str, bool]], tasks: list[str], progress: Progress
) -> Found:
    found: Found = {}
    for configuration, enforce in group:
        found[(configuration, enforce)] = _replay_configuration(
            world, configuration, enforce, tasks, progress
        )
    return found


def _group_task(world: World, group: list[tuple[str, bool]], tasks: list[str], _: str) -> Found:
    return _run_group(world, group, tasks, Progress(None, 1))


def run_groups(
    world: World, parts: list[list[tuple[str, bool]]], tasks: list[str], progress: Progress
) -> Found:
    """Run the groups of passes: the first here, the others in forked processes at once.

    Raises:
        BaseException: what a forked process met.
    """
    if not parts:
        return {}
    jobs = max(1, world.settings.jobs // len(parts))
    local = replace(world, settings=replace(world.settings, jobs=jobs))
    children = []
    for group in parts[1:]:
        work = functools.partial(_group_task, local, group, tasks)
        children.append(start_child(work, ""))
    found = _run_group(local, parts[0], tasks, progress)
    for child, receive in children:
        progress.stage(0)("waiting for the other passes", 1.0)
        answer = wait_child(child, receive)
        if isinstance(answer, BaseException):
            raise answer
        found.update(answer)
    return found
