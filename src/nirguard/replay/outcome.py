"""What a replay found, JSON-ready: per strategy and configuration, and for the run.

Counts, times and ratios only: nothing here holds a NIR.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from nirguard.replay.practitioners import KINDS, POLICY_KIND
from nirguard.replay.tallies import PORTAL_SIGNALS, AttackTally, LegitTally

__all__ = ["QUIET", "LegitSummary", "Outcome", "ReplayResult", "ShadowCheck", "median"]

QUIET: Final = "quiet"
_HOUR: Final = 3600.0


def median(values: list[float]) -> float | None:
    """The median (the lower one of an even count); ``None`` for no value."""
    ranked = sorted(values)
    return ranked[(len(ranked) - 1) // 2] if ranked else None


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
        alerts: alerts naming a legitimate account, by signal.
        cases: alert cases (one per account per incident) per kind: false alerts.
        notices: portal-level notices (about a cohort, naming nobody), by signal.
        account_weeks: practitioner-weeks the summary covers.
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
    cases: dict[str, int] = field(default_factory=dict)
    notices: dict[str, int] = field(default_factory=dict)
    account_weeks: float = 0.0

    @classmethod
    def of(cls, tally: LegitTally, kinds: list[str], weeks: float) -> LegitSummary:
        """Summarise a tally (``kinds``: kind of each legitimate account; ``weeks`` covered)."""
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
            cases={k: tally.cases[k] for k in KINDS},
            notices=dict(sorted(tally.notices.items())),
            account_weeks=round(len(kinds) * weeks, 3),
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

    @property
    def false_alerts(self) -> float:
        """Alert cases on legitimate accounts per 1,000 practitioner-weeks."""
        weeks = self.account_weeks
        return 1000.0 * sum(self.cases.values()) / weeks if weeks else 0.0


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


def _finite(value: float | None) -> float | str | None:
    """A JSON-safe number: ``"never"`` for infinity."""
    return "never" if value == float("inf") else value


def _hours(ends: list[float | None], starts: list[float | None]) -> list[float | None]:
    return [
        None if e is None or s is None else round((e - s) / _HOUR, 3)
        for e, s in zip(ends, starts, strict=True)
    ]


@dataclass
class Outcome:
    """What one strategy achieved under one configuration in the attack week.

    Attributes:
        exposed: distinct people whose identity was returned to a stolen account.
        exposed_per_account_max: the most any one stolen account obtained.
        per_account: identities each stolen account obtained.
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
        alert_hours: per stolen account, hours from its first attempt to the
            first alert naming it (``None``: never alerted).
        alert_after_refusal_hours: per stolen account, hours from its first
            refusal to the first alert naming it (``None``: never refused or alerted).
        refusal_hours: per stolen account, hours from its first attempt to its first
            refusal (``None``: never refused).
        asked_max: the most "a reason is required" answers any stolen account got.
        owner_lookups: the owners' own lookups in the week (strategies on owners' accounts).
        owner_refused: of those, refused.
        exposure_by_hour: identities exposed by the end of each hour of the attack week.
        legit: what the guard cost legitimate accounts in that week.
        legit_all: the same over the history and that week together.
        shadow: shadow mode against enforcement (``guard`` only).
    """

    strategy: str
    configuration: str
    exposed: int = 0
    exposed_per_account_max: int = 0
    per_account: list[int] = field(default_factory=list)
    attack_lookups: int = 0
    break_glass: int = 0
    accounts_stopped: int = 0
    accounts_signalled: int = 0
    first_signal_lookups: int | None = None
    first_signal_seconds: float | None = None
    first_signal: str | None = None
    account_signal_median: int | None = None
    account_signal_max: int | None = None
    alert_hours: list[float | None] = field(default_factory=list)
    alert_after_refusal_hours: list[float | None] = field(default_factory=list)
    refusal_hours: list[float | None] = field(default_factory=list)
    asked_max: int = 0
    owner_lookups: int = 0
    owner_refused: int = 0
    exposure_by_hour: list[int] = field(default_factory=list)
    legit: LegitSummary | None = None
    legit_all: LegitSummary | None = None
    shadow: ShadowCheck | None = None

    def attach(self, tally: AttackTally, attack_start: float) -> None:
        """Fill the guarded figures from an attack's tally."""
        signals = tally.account_signal
        known = sorted(s for s in signals if s is not None)
        first = tally.first_signal
        self.exposed = len(tally.exposed)
        self.exposed_per_account_max = max(tally.got, default=0)
        self.per_account = list(tally.got)
        self.attack_lookups = tally.attempts
        self.break_glass = tally.break_glass
        self.accounts_stopped = tally.stopped
        self.accounts_signalled = len(known)
        if first is not None:
            self.first_signal_lookups = first[0]
            self.first_signal_seconds = first[1] - attack_start
            self.first_signal = first[2]
        half = len(signals) // 2
        self.account_signal_median = known[half] if len(known) > half else None
        self.account_signal_max = known[-1] if known and len(known) == len(signals) else None
        self.alert_hours = _hours(tally.first_alert, tally.started)
        self.alert_after_refusal_hours = _hours(tally.first_alert, tally.first_refusal)
        self.refusal_hours = _hours(tally.first_refusal, tally.started)
        self.asked_max = max(tally.asked, default=0)
        self.owner_lookups = tally.owner_lookups
        self.owner_refused = tally.owner_refused

    @property
    def per_account_median(self) -> float | None:
        """Identities of the median stolen account."""
        return median([float(n) for n in self.per_account])

    @property
    def alert_median_hours(self) -> float | None:
        """Hours to the first alert of the median stolen account (``None``: most never)."""
        values = self.alert_hours
        if not values or sum(1 for v in values if v is not None) * 2 < len(values):
            return None
        return median([float("inf") if v is None else v for v in values])

    @property
    def alerted(self) -> int:
        """Stolen accounts alerted on at least once."""
        return sum(1 for v in self.alert_hours if v is not None)

    @property
    def never_alerted(self) -> int:
        """Stolen accounts no alert named in the week."""
        return len(self.alert_hours) - self.alerted

    @property
    def alert_max_hours(self) -> float | None:
        """Hours to the first alert of the last stolen account alerted (``None``: none was)."""
        return max((v for v in self.alert_hours if v is not None), default=None)

    def after_refusal(self) -> tuple[float | None, float | None]:
        """Hours from a stolen account's first refusal to the first alert naming it:
        median and max over the accounts refused (``inf``: refused, never alerted;
        ``None``: none refused). An alert before any refusal counts as 0."""
        values = [
            float("inf") if alert is None else max(0.0, alert)
            for refused, alert in zip(
                self.refusal_hours, self.alert_after_refusal_hours, strict=False
            )
            if refused is not None
        ]
        return median(values), max(values, default=None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        if self.first_signal_seconds is not None:
            out["first_signal_seconds"] = round(self.first_signal_seconds, 1)
        for name in ("legit", "legit_all"):
            summary = getattr(self, name)
            if summary is not None:
                out[name]["false_alerts_per_1000_weeks"] = round(summary.false_alerts, 3)
        out["alert_median_hours"] = self.alert_median_hours
        out["alert_max_hours"] = self.alert_max_hours
        out["never_alerted"] = self.never_alerted
        after = self.after_refusal()
        out["alert_after_refusal_median_hours"] = _finite(after[0])
        out["alert_after_refusal_max_hours"] = _finite(after[1])
        return out


@dataclass
class ReplayResult:
    """Every outcome, plus what the run was made of.

    Attributes:
        settings: the settings (policies as dicts).
        world: sizes of the registry and the workload, and the legitimate
            weekly volumes per kind.
        features: what the installed guard offers (shadow, break-glass, notices).
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
        history = {}
        for name, summary in self.history.items():
            history[name] = asdict(summary)
            history[name]["false_alerts_per_1000_weeks"] = round(summary.false_alerts, 3)
        return {
            "settings": self.settings,
            "world": self.world,
            "features": self.features,
            "history": history,
            "outcomes": [o.to_dict() for o in self.outcomes],
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }
