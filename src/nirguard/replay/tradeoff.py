"""The trade-off curve: identities per stolen account against false alerts, over policies.

One world, several policies (the shipped one and variants of a few of its
fields, :data:`CANDIDATES`); each is replayed on the same weeks and the same
attacks. A stricter policy holds a harvester to fewer identities per account
and costs practitioners more refusals and more alerts that name them: the
curve shows where the shipped default sits.

Example (a tiny world; ``nirguard simulate --tradeoff`` runs a larger one)::

    from nirguard.replay import ReplaySettings
    from nirguard.replay.tradeoff import format_tradeoff, tradeoff
    points = tradeoff(ReplaySettings(scale=0.02, history_weeks=1, attack_days=2,
                                     strategies=("list",), jobs=1),
                      {"shipped": {}, "cap 150": {"distinct_patients": "8/10 minutes;120/day;150/7 days"}})
    print(format_tradeoff(points))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from nirguard.replay.attacks import FAST
from nirguard.replay.outcome import ReplayResult
from nirguard.replay.targets import guarded, worst_rate
from nirguard.replay.text import grid
from nirguard.replay.world import ReplaySettings

__all__ = ["CANDIDATES", "STRATEGIES", "Point", "format_tradeoff", "tradeoff"]

#: The policies of the curve: name -> the ``QuotaPolicy`` fields changed from the shipped one.
CANDIDATES: Final[dict[str, dict[str, Any]]] = {
    "shipped": {},
    "week cap 250": {"distinct_patients": "8/10 minutes;120/day;250/7 days"},
    "week cap 150": {"distinct_patients": "8/10 minutes;100/day;150/7 days"},
    "week cap 80": {"distinct_patients": "8/10 minutes;60/day;80/7 days"},
    "week cap 500": {"distinct_patients": "8/10 minutes;150/day;500/7 days"},
}
#: The attacks the curve replays: a fast one and the harvesters paced like a practitioner.
STRATEGIES: Final = ("list", "spread-parallel", "gp-paced", "owner", "padded")


@dataclass(frozen=True)
class Point:
    """One policy of the curve.

    Attributes:
        name: the candidate's name.
        changes: the fields changed from the shipped policy.
        per_account: the most identities one stolen account got, over the strategies.
        worst: the strategy that got them.
        fast_exposed: the most identities a fast attack got across its accounts.
        false_alerts: alert cases on legitimate accounts per 1,000 practitioner-weeks
            (history and the attack week, the worst week).
        refused: share of legitimate GPs' lookups refused (all weeks, the worst week).
    """

    name: str
    changes: dict[str, Any]
    per_account: int
    worst: str
    fast_exposed: int
    false_alerts: float
    refused: float


def _point(name: str, changes: dict[str, Any], result: ReplayResult) -> Point:
    guard = guarded(result)
    attacked = [o for o in guard if o.strategy in result.settings["strategies"]]
    most = max(attacked, key=lambda o: o.exposed_per_account_max)
    fast = [o.exposed for o in attacked if o.strategy in FAST]
    alerts = [o.legit_all.false_alerts for o in guard if o.legit_all is not None]
    return Point(
        name=name,
        changes=changes,
        per_account=most.exposed_per_account_max,
        worst=most.strategy,
        fast_exposed=max(fast, default=0),
        false_alerts=max(alerts, default=0.0),
        refused=worst_rate(guard, "gp", all_weeks=True)[0],
    )


def tradeoff(
    settings: ReplaySettings,
    candidates: Mapping[str, dict[str, Any]] | None = None,
    *,
    progress: Callable[[str, float], None] | None = None,
) -> list[Point]:
    """Replay each candidate policy on one world; one :class:`Point` each.

    Args:
        settings: a :class:`~nirguard.replay.ReplaySettings`; its ``policy`` is the
            base the candidates change (``None``: the shipped ``QuotaPolicy()``).
        candidates: name -> fields changed (default :data:`CANDIDATES`).
        progress: called with a label and the fraction of the candidates done.

    Raises:
        PolicyError: a candidate is not a valid policy.
        ValueError: the settings are invalid.
    """
    from nirguard.policy import QuotaPolicy
    from nirguard.replay.runner import run_replay
    from nirguard.replay.world import build_world

    table = dict(CANDIDATES if candidates is None else candidates)
    base = settings.policy if settings.policy is not None else QuotaPolicy()
    settings = replace(settings, configurations=("guard",), shadow=False)
    world = build_world(settings)
    points = []
    for n, (name, changes) in enumerate(table.items()):
        if progress is not None:
            progress(f"trade-off: {name}", n / len(table))
        policy = QuotaPolicy(**{**base.model_dump(), **changes})
        result = run_replay(replace(settings, policy=policy), world=world)
        points.append(_point(name, changes, result))
    return points


def format_tradeoff(points: list[Point]) -> str:
    """The curve as a table, fewest identities per account first."""
    rows: list[tuple[str, ...]] = [
        (
            "policy",
            "identities per account (worst attack)",
            "fast attack, 19 accounts",
            "false alerts /1,000 pw",
            "GPs' lookups refused",
        )
    ]
    for p in sorted(points, key=lambda p: (p.per_account, p.false_alerts)):
        rows.append(
            (
                p.name,
                f"{p.per_account:,} ({p.worst})",
                f"{p.fast_exposed:,}",
                f"{p.false_alerts:.2f}",
                f"{100 * p.refused:.3f}%",
            )
        )
    changes = [f"  {p.name}: {p.changes or 'QuotaPolicy() as shipped'}" for p in points]
    return "\n".join(
        [
            "Trade-off: identities per stolen account against false alerts, one policy a row:",
            *grid(rows),
            "Policies (fields changed from the shipped one):",
            *changes,
        ]
    )
