"""The targets a replay is checked against (issue 17), measured on the ``guard`` configuration.

Each :class:`Target` holds the measured value, the limit and where the worst
case is; the report prints them as ``[met]`` or ``[NOT MET]`` lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from nirguard.replay.attacks import FAST, OWNED, RETRY_PAIRS
from nirguard.replay.outcome import Outcome, ReplayResult

__all__ = [
    "ALERT_AFTER_REFUSAL",
    "EXPOSURE_TARGET",
    "FALSE_ALERT_TARGET",
    "OWNER_ALERT_HOURS",
    "OWNER_PER_ACCOUNT",
    "REFUSAL_TARGET",
    "SIGNAL_TARGET",
    "Target",
    "find",
    "guarded",
    "targets",
    "targets_dict",
    "worst_rate",
]

#: Identities one fast attack may expose in the week, across the 19 accounts
#: (0.1% of the 510,000 of 2022).
EXPOSURE_TARGET: Final = 510
#: Legitimate lookups that may be refused, per policy (GPs, desks).
REFUSAL_TARGET: Final = 0.001
#: Lookups by the stolen accounts before the first refusal or alert.
SIGNAL_TARGET: Final = 50
#: Hours from a stolen account's first refusal to the alert naming it (fast attacks).
ALERT_AFTER_REFUSAL: Final = 1.0
#: Identities per account a harvester on an owner's account may take in the week.
OWNER_PER_ACCOUNT: Final = 50
#: Hours from the start of a harvest on owners' accounts to the median account's first
#: alert: one working day, counted as a day.
OWNER_ALERT_HOURS: Final = 24.0
#: Alert cases on legitimate accounts per 1,000 practitioner-weeks.
FALSE_ALERT_TARGET: Final = 1.0
_NEVER: Final = float("inf")


@dataclass(frozen=True)
class Target:
    """One of the targets, checked on a replay.

    Attributes:
        name: what is checked.
        value: the measured figure (``inf``: never, e.g. an account never alerted).
        limit: the figure not to exceed.
        detail: where the worst case is, in words.
        rate: the value is a share (printed as a percentage).
    """

    name: str
    value: float
    limit: float
    detail: str = ""
    rate: bool = False

    @property
    def met(self) -> bool:
        """True when the measured value is within the limit."""
        return self.value <= self.limit


def guarded(result: ReplayResult) -> list[Outcome]:
    """The outcomes of the ``guard`` configuration."""
    return [o for o in result.outcomes if o.configuration == "guard"]


def find(result: ReplayResult, strategy: str, configuration: str) -> Outcome | None:
    """One outcome, ``None`` when it was not run."""
    try:
        return result.outcome(strategy, configuration)
    except KeyError:
        return None


def worst_rate(outcomes: Iterable[Outcome], kind: str, all_weeks: bool) -> tuple[float, str]:
    """The highest share of legitimate lookups refused for one policy kind, and in which
    strategy's week (``"every run"``: none refused anywhere)."""
    worst, where = 0.0, "every run"
    for o in outcomes:
        legit = o.legit_all if all_weeks else o.legit
        if legit is None:
            continue
        rate = legit.rate(kind)
        if rate > worst:
            worst, where = rate, o.strategy
    return worst, where


def _where(strategy: str) -> str:
    return f"worst: {strategy}"


def _legit(guard: list[Outcome]) -> list[Target]:
    out: list[Target] = []
    for kind, label in (("gp", "GPs (new GPs included)"), ("desk", "desks, under the desk policy")):
        for all_weeks, span in ((False, "attack week"), (True, "all weeks")):
            value, where = worst_rate(guard, kind, all_weeks)
            detail = "none refused in any run" if where == "every run" else _where(where)
            name = f"legitimate lookups refused, {label}, {span}"
            out.append(Target(name, value, REFUSAL_TARGET, detail, rate=True))
    portal = max((o.legit_all.portal_locked for o in guard if o.legit_all), default=0)
    out.append(Target("ordinary accounts locked by portal-wide evidence", portal, 0))
    alerts = [(o.legit_all.false_alerts, o.strategy) for o in guard if o.legit_all]
    if alerts:
        value, where = max(alerts)
        out.append(
            Target(
                "false alerts (cases on legitimate accounts) per 1,000 practitioner-weeks",
                value,
                FALSE_ALERT_TARGET,
                f"history and the attack week; {_where(where)}",
            )
        )
    return out


def _signal(o: Outcome) -> float:
    return _NEVER if o.first_signal_lookups is None else float(o.first_signal_lookups)


def _median_alert(o: Outcome) -> float:
    hours = o.alert_median_hours
    return _NEVER if hours is None else hours


def _late_alert(o: Outcome) -> float:
    """Hours from a stolen account's first refusal to its first alert: the slowest
    account (``inf``: refused and never alerted; 0: none refused)."""
    latest = o.after_refusal()[1]
    return 0.0 if latest is None else latest


def _fast(fast: list[Outcome]) -> list[Target]:
    worst = max(fast, key=lambda o: o.exposed)
    late = max(fast, key=_signal)
    slow = max(fast, key=_late_alert)
    out = [
        Target(
            "identities exposed by a fast attack in the week (19 accounts)",
            worst.exposed,
            EXPOSURE_TARGET,
            _where(worst.strategy),
        ),
        Target(
            "hours from a stolen account's first refusal to the alert naming it (fast attacks)",
            _late_alert(slow),
            ALERT_AFTER_REFUSAL,
            _where(slow.strategy),
        ),
        Target(
            "lookups by the stolen accounts before the first signal",
            _signal(late),
            SIGNAL_TARGET,
            _where(late.strategy),
        ),
    ]
    by_name = {o.strategy: o for o in fast}
    pairs = [(by_name[r], by_name[m]) for r, m in RETRY_PAIRS if r in by_name and m in by_name]
    if pairs:
        retry, moving = max(pairs, key=lambda pair: pair[0].exposed - pair[1].exposed)
        out.append(
            Target(
                "identities a retrying bot gets beyond a bot that moves on at its pace "
                f"({moving.strategy}: {moving.exposed:,})",
                max(0, retry.exposed - moving.exposed),
                0,
                _where(retry.strategy),
            )
        )
    return out


def _owned(owned: list[Outcome]) -> list[Target]:
    most = max(owned, key=lambda o: o.exposed_per_account_max)
    late = max(owned, key=_median_alert)
    return [
        Target(
            "identities per account, harvesters on owners' accounts (owners still working)",
            most.exposed_per_account_max,
            OWNER_PER_ACCOUNT,
            _where(most.strategy),
        ),
        Target(
            "hours to the median owner's account's first alert, from the harvest's start",
            _median_alert(late),
            OWNER_ALERT_HOURS,
            _where(late.strategy),
        ),
    ]


def _shadow(guard: list[Outcome]) -> list[Target]:
    checks = [o.shadow for o in guard if o.shadow is not None]
    if not checks:
        return []
    accounts = sum(c.accounts for c in checks)
    differ = sum(c.accounts - c.same for c in checks)
    refused = sum(c.refused for c in checks)
    bad = [o.strategy for o in guard if o.shadow is not None and not o.shadow.equal]
    return [
        Target(
            "shadow mode: accounts whose first would-refusal differs from enforcement's,"
            " or lookups refused",
            differ + refused,
            0,
            f"{accounts:,} account-weeks compared"
            + (f"; differs in {', '.join(bad)}" if bad else ""),
        )
    ]


def targets(result: ReplayResult) -> list[Target]:
    """Check the targets on the ``guard`` configuration (only those that were run)."""
    guard = guarded(result)
    if not guard:
        return []
    out = _legit(guard)
    fast = [o for o in guard if o.strategy in FAST]
    if fast:
        out.extend(_fast(fast))
    owned = [o for o in guard if o.strategy in OWNED]
    if owned:
        out.extend(_owned(owned))
    out.extend(_shadow(guard))
    return out


def targets_dict(result: ReplayResult) -> list[dict[str, Any]]:
    """The targets as JSON-ready dicts (``value`` ``None``: never)."""
    return [
        {
            "name": t.name,
            "value": None if t.value == _NEVER else round(t.value, 8),
            "limit": round(t.limit, 8),
            "met": t.met,
            "detail": t.detail,
        }
        for t in targets(result)
    ]
