"""What to replay (:class:`ReplaySettings`) and the world built from it (:class:`World`).

The world is the registry, the legitimate weeks, the attackers' material
and the policies of each configuration: built once per settings, shared by
every pass and every strategy.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from nirguard.replay.attacks import OWNED, STRATEGIES, build_attack
from nirguard.replay.policies import desk_policy, named, policy_dict, without_detection
from nirguard.replay.practitioners import (
    DAY,
    POLICY_KIND,
    Workload,
    accounts_for,
    build_workload,
)
from nirguard.replay.registry import Registry, build_registry
from nirguard.replay.sessions import TWO_DEVICES, legit_sessions
from nirguard.replay.simulation import GuardFeatures, guard_features
from nirguard.replay.tactics import ATTACK_OFFSET, Attack
from nirguard.replay.walks import AttackMaterial, attack_material

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = ["CONFIGURATIONS", "ReplaySettings", "World", "build_world", "with_sessions"]

CONFIGURATIONS: Final = ("none", "quotas", "guard")


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
        configurations: which configurations to run (``none``, ``quotas``, ``guard``).
        shadow: also replay the ``guard`` configuration in shadow mode.
        policy: the GPs' (and stolen accounts') policy; ``None``: ``QuotaPolicy()``.
        desk_policy: hospital and pharmacy desks' policy; ``None``: the replay's
            :func:`nirguard.replay.policies.desk_policy`.
        jobs: worker processes (1: everything in this process).
        sessions: whether lookups carry login sessions (:mod:`~nirguard.replay.sessions`)
            for the ``session_overlap`` signal; ``None``: when the installed guard
            takes ``session=``.
        two_devices: share of GP-days on which the GP also uses a second device at once.
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
    sessions: bool | None = False  # None: on when the installed guard takes session=
    two_devices: float = TWO_DEVICES

    def check(self) -> None:
        """Refuse unknown strategies and configurations, and a share out of 0-1.

        Raises:
            ValueError: an unknown name, or ``two_devices`` out of range.
        """
        if not 0.0 <= self.two_devices <= 1.0:
            raise ValueError("two_devices is a share of GP-days, between 0 and 1")
        for name in self.configurations:
            if name not in CONFIGURATIONS:
                raise ValueError(f"unknown configuration {name!r}")
        for strategy in self.strategies:
            if strategy not in STRATEGIES:
                raise ValueError(
                    f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}"
                )


def policies(settings: ReplaySettings) -> dict[str, dict[str, QuotaPolicy]]:
    """Per guarded configuration, the policy of each policy kind (``gp``, ``desk``)."""
    from nirguard.policy import QuotaPolicy

    gp = named(settings.policy if settings.policy is not None else QuotaPolicy(), "gp")
    desk = named(
        settings.desk_policy if settings.desk_policy is not None else desk_policy(), "desk"
    )
    return {
        "quotas": {"gp": without_detection(gp), "desk": without_detection(desk)},
        "guard": {"gp": gp, "desk": desk},
    }


@dataclass
class World:
    """Everything the passes share, built once per settings."""

    settings: ReplaySettings
    registry: Registry
    workload: Workload
    material: AttackMaterial
    policies: dict[str, dict[str, QuotaPolicy]]
    features: GuardFeatures
    #: the login session of each legitimate event; ``None``: lookups carry none
    sessions: array[int] | None = None

    @property
    def attack_start(self) -> float:
        """Time of the first attempt (seconds from day 0)."""
        return self.workload.attack_day * DAY + ATTACK_OFFSET

    @property
    def end(self) -> float:
        """End of the replay (seconds from day 0)."""
        return self.workload.days * DAY

    @property
    def history_weeks(self) -> float:
        """Weeks of history (before the attack week)."""
        return self.workload.attack_day / 7

    @property
    def attack_weeks(self) -> float:
        """Weeks the attack week lasts."""
        return (self.workload.days - self.workload.attack_day) / 7

    def attack(self, strategy: str) -> Attack:
        """A fresh script of ``strategy``, paced on the ``guard`` policy."""
        accounts: int | list[str] = self.settings.attackers
        if strategy in OWNED:
            accounts = self.owners()
        return build_attack(
            strategy,
            self.registry,
            accounts=accounts,
            policy=policy_dict(self.policies["guard"]["gp"]),
            seed=self.settings.seed,
            material=self.material,
            start=self.attack_start,
        )

    def attackers(self) -> list[str]:
        """Ids of the fresh stolen accounts (no history)."""
        return [f"stolen-{i:02d}" for i in range(self.settings.attackers)]

    def owners(self) -> list[str]:
        """Ids of the GPs whose own accounts are stolen (strategies in ``OWNED``)."""
        gps = [p.id for p in self.workload.practitioners if p.kind == "gp"]
        rng = random.Random(f"owners:{self.settings.seed}")
        return rng.sample(gps, min(len(gps), self.settings.attackers))

    def policy_for(self, configuration: str) -> Callable[[str], QuotaPolicy]:
        """Practitioner id -> policy: each kind of account gets its kind's policy;
        the fresh stolen accounts get the GPs'."""
        table = self.policies[configuration]
        gp = table["gp"]
        by_id = {p.id: table.get(POLICY_KIND[p.kind], gp) for p in self.workload.practitioners}

        def policy_for(practitioner: str) -> QuotaPolicy:
            return by_id.get(practitioner, gp)

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
    features = guard_features()
    world = World(settings, registry, workload, material, policies(settings), features)
    return with_sessions(world, settings)


def with_sessions(world: World, settings: ReplaySettings) -> World:
    """``world`` for ``settings``: its legitimate events' sessions, when lookups carry them.

    Raises:
        ValueError: ``settings.sessions`` is ``True`` but the installed guard takes no
            ``session``.
    """
    from dataclasses import replace

    on = settings.sessions
    if on and not world.features.session:
        raise ValueError("the installed LookupGuard takes no session= (sessions need it)")
    if on is None:
        on = world.features.session
    sessions = None
    if on:
        sessions = legit_sessions(
            world.workload, seed=settings.seed, two_devices=settings.two_devices
        )
    return replace(world, settings=settings, sessions=sessions)
