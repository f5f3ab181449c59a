"""``QuotaPolicy``: what one practitioner may look up, and what gives an enumerator away.

Rates use the ``limits`` syntax (``"30/minute;300/day"``); durations are
``"<n> <unit>"`` strings (``"1 hour"``, ``"90 seconds"``) or seconds. Every
field is optional: ``None`` switches that check off. The policy is checked
once, at construction, and is immutable afterwards.

>>> policy = QuotaPolicy(lookups="30/minute;300/day", distinct_patients="60/day")
>>> policy.lookups
'30/minute;300/day'
>>> QuotaPolicy(lookups="thirty a minute")
Traceback (most recent call last):
...
nirguard.errors.PolicyError: invalid quota policy: lookups: not a rate in limits syntax (e.g. '30/minute;300/day')
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, Literal

from limits import RateLimitItem, parse_many
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from nirguard._durations import parse_duration
from nirguard._policy_load import describe, env_fields, toml_fields
from nirguard.errors import PolicyError

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy

__all__ = ["QuotaPolicy", "parse_duration"]

_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,40}", re.ASCII)
# Fields holding rates, in the order a lookup meets them.
RATE_FIELDS: Final = (
    "lookups",
    "invalid_nirs",
    "distinct_patients",
    "cohort",
    "portal_cohort",
    "misses",
    "portal",
    "break_glass",
    "strikes",
    "sequence",
)
# Fields besides the rates that :meth:`QuotaPolicy.only` switches off.
_SWITCHES: Final = ("miss_ratio", "hot_cohort", "hot_cohort_warmup", "baseline", "session_overlap")
# Fields holding durations.
DURATION_FIELDS: Final = (
    "lockout",
    "lockout_memory",
    "miss_ratio_window",
    "hot_cohort_window",
    "hot_cohort_baseline",
    "break_glass_access",
)


def _check_rate(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("not a rate in limits syntax (e.g. '30/minute;300/day')")
    try:
        items = parse_many(value)
    except ValueError:
        raise ValueError("not a rate in limits syntax (e.g. '30/minute;300/day')") from None
    if not items or any(item.amount < 1 for item in items):
        raise ValueError("a rate must allow at least 1 per window")
    return value


class QuotaPolicy(BaseModel):
    """Quotas and detection thresholds for one practitioner (or a kind of practitioner).

    ``QuotaPolicy()`` is the default nirguard ships, tuned on the replay of
    the 2022 attack (``nirguard simulate``; see the "default policy" page).
    Fields you do not name keep these defaults, so changing one quota never
    switches the others off; :meth:`only` builds a policy with nothing else on.

    Attributes:
        name: the kind of practitioner this policy is for (``"gp"``,
            ``"desk"``, ...). Audit events and alerts carry it as ``kind``,
            and ``nirguard calibrate`` reports each kind apart.
        lookups: every lookup attempt by one practitioner.
        distinct_patients: lookups of patients this practitioner has not
            looked up within the window (lockout-class).
        invalid_nirs: numbers that fail validation (lockout-class).
        misses: lookups whose result says "no such patient" (lockout-class).
            Checked before a lookup runs: once the budget is spent, the next
            lookup is refused and the lockout starts.
        portal: all practitioners together (not lockout-class).
        lockout: how long a practitioner is refused everything after a
            lockout-class breach or a detection.
        lockout_escalation: durations of the second, third, ... lockout within
            ``lockout_memory``; ``None`` means until :meth:`LookupGuard.unlock`.
        lockout_memory: how long a lockout counts towards escalation.
        cohort: new patients of one practitioner sharing the first 10
            characters (sex, year and month of birth, place of birth), which
            an enumerator holds fixed while walking order numbers.
        portal_cohort: new patients of this practitioner in *hot* cohorts
            (see ``hot_cohort``): an account that keeps feeding cohorts the
            whole portal sees walked (detection, lockout-class). It fires
            only when they are also at least ``portal_cohort_share`` of the
            practitioner's new patients in the same window: a desk that
            serves a busy maternity is not an enumerator.
        portal_cohort_share: see ``portal_cohort``.
        sequence, sequence_share: new patients next to someone the portal saw lately, in excess
            of those whose keyed control was seen (a walk shared by accounts; lockout-class;
            needs ``hot_cohort``; on by default), if the excess passes the rate, a sign test
            and ``sequence_share`` of the window's new patients.
        hot_cohort: portal-wide evidence about a cohort: a cohort is hot when its new
            patients across the portal over ``hot_cohort_window`` exceed ``hot_cohort``
            times what its share of the portal's traffic over ``hot_cohort_baseline``
            predicts, plus ``hot_cohort_min``. Relative to the portal's own traffic, so it
            holds whatever the portal's size. A hot cohort is a notice (naming nobody) and
            is audited; on its own it never locks anyone out.
        hot_cohort_min: see ``hot_cohort``.
        hot_cohort_warmup: how long the store watches the portal before any cohort can
            be hot (heat is learned meanwhile; no notice, no ``portal_cohort``, no
            question). ``None``: hot from the first day (:meth:`only`'s default).
        hot_cohort_window, hot_cohort_baseline: see ``hot_cohort``.
        hot_cohort_action: ``"alert"`` (default) or ``"reason"``: also ask
            for a stated reason (break-glass) before a new patient of a hot
            cohort is looked up.
        miss_ratio: detection when misses / lookups over ``miss_ratio_window``
            exceeds this, once the practitioner made ``miss_ratio_min_lookups``.
        break_glass: budget of break-glass lookups of one practitioner: a
            new patient refused by a new-patient quota or signal, retried with
            a stated reason, is let through and counted here instead. Past
            it, no more break-glass. ``None`` switches break-glass off (and a
            new-patient breach locks out at once).
        break_glass_access: how long a break-glass grant opens that one
            patient to that one practitioner.
        strikes: refusals of one practitioner that are not lockouts (a ``lookups`` denial,
            a request for a reason, break-glass refused) (lockout-class): every refusal also
            counts against ``lookups``, and the refusal past this quota is a lockout instead;
            while locked, only a retry of a patient refused during the lockout is, and
            escalates it. A script that keeps asking is locked within a few attempts; a
            clinician who states a reason, or goes on with others, is not.
        session_overlap: one account, one session at a time (detection, lockout-class; for
            lookups that carry the portal's ``session`` id): within this, another session used
            the account since this one did, or a third one did (docs/guard.md, "Sessions").
        baseline: each account against its own normal (detection,
            lockout-class; ``None``: off). A day's score is how far its new
            patients born at places the account seldom serves (at hours it
            does not work: weighing ``baseline_off_hours``) exceed their
            expected number, in sd, when its volume of new patients is also
            above its usual, or that volume's own excess less
            ``baseline_volume`` sd (``None``: the volume only gates); a new
            patient is refused when a CUSUM of scores minus ``baseline_slack``
            passes this. Accounts with little history are compared with
            ``baseline_prior`` (mean, sd of new patients a day of their kind),
            fading out over ``baseline_prior_days`` days of their own; days
            start at ``baseline_utc_offset`` hours from UTC (docs/guard.md).
        baseline_slack, baseline_prior, baseline_prior_days,
            baseline_off_hours, baseline_utc_offset, baseline_volume: see ``baseline``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    name: str | None = None
    lookups: str | None = "30/minute;200/day"
    distinct_patients: str | None = "8/10 minutes;120/day;350/7 days"
    invalid_nirs: str | None = "10/hour;20/day"
    misses: str | None = "15/hour;25/day"
    portal: str | None = None
    lockout: str | float = "1 hour"
    lockout_escalation: tuple[str | float | None, ...] = ("1 day", None)
    lockout_memory: str | float = "7 days"
    cohort: str | None = "4/day"
    portal_cohort: str | None = "5/day;10/7 days"
    portal_cohort_share: float = 0.5
    sequence: str | None = "6/day;8/7 days"
    sequence_share: float = 0.3
    hot_cohort: float | None = 3.0
    hot_cohort_min: int = 12
    hot_cohort_window: str | float = "1 day"
    hot_cohort_baseline: str | float = "28 days"
    hot_cohort_action: Literal["alert", "reason"] = "alert"
    miss_ratio: float | None = 0.5
    miss_ratio_min_lookups: int = 20
    miss_ratio_window: str | float = "1 day"
    break_glass: str | None = "1/day;2/7 days"
    break_glass_access: str | float = "3 days"
    strikes: str | None = "3/hour;6/day"
    hot_cohort_warmup: str | float | None = "14 days"
    session_overlap: str | float | None = "30 minutes"
    baseline: float | None = None
    baseline_slack: float = 1.0
    baseline_prior: tuple[float, float] = (25.0, 15.0)
    baseline_prior_days: float = 7.0
    baseline_off_hours: float = 3.0
    baseline_utc_offset: float = 1.0
    baseline_volume: float | None = 1.0

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise PolicyError(describe(exc)) from None

    @field_validator(*RATE_FIELDS, mode="before")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        return _check_rate(value)

    @field_validator(*DURATION_FIELDS)
    @classmethod
    def _duration(cls, value: str | float) -> str | float:
        parse_duration(value)
        return value

    @field_validator("hot_cohort_warmup", "session_overlap")
    @classmethod
    def _optional_duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError("name must be 1-40 letters, digits, '-', '_' or '.'")
        return value

    @field_validator("portal_cohort_share")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise ValueError("portal_cohort_share must be in [0, 1]")
        return value

    @field_validator("hot_cohort")
    @classmethod
    def _hot(cls, value: float | None) -> float | None:
        if value is not None and not 1 <= value < float("inf"):
            raise ValueError("hot_cohort must be at least 1 (times the baseline)")
        return value

    @field_validator("hot_cohort_min")
    @classmethod
    def _hot_min(cls, value: int) -> int:
        if value < 1:
            raise ValueError("hot_cohort_min must be at least 1")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> QuotaPolicy:
        if parse_duration(self.hot_cohort_baseline) <= parse_duration(self.hot_cohort_window):
            raise ValueError("hot_cohort_baseline must be longer than hot_cohort_window")
        if self.hot_cohort_action == "reason" and self.break_glass is None:
            raise ValueError("hot_cohort_action='reason' needs a break_glass budget")
        return self

    @field_validator("lockout_escalation")
    @classmethod
    def _escalation(cls, value: tuple[str | float | None, ...]) -> tuple[str | float | None, ...]:
        for step in value:
            if step is not None:
                parse_duration(step)
        return value

    @field_validator("miss_ratio")
    @classmethod
    def _ratio(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:
            raise ValueError("miss_ratio must be in (0, 1]")
        return value

    @model_validator(mode="after")
    def _baseline(self) -> QuotaPolicy:
        mean, sd = self.baseline_prior
        explicit = self.sequence is not None and "sequence" in self.model_fields_set
        checks = (
            (self.baseline is None or 0 < self.baseline < 1e6, "baseline must be positive"),
            (0 <= self.baseline_slack < 1e6, "baseline_slack must be 0 or more"),
            (0 <= mean < 1e6 and 0 < sd < 1e6, "baseline_prior must be (mean >= 0, sd > 0)"),
            (0 < self.baseline_prior_days < 1e6, "baseline_prior_days must be positive"),
            (1 <= self.baseline_off_hours < 1e6, "baseline_off_hours must be at least 1"),
            (-14 <= self.baseline_utc_offset <= 14, "baseline_utc_offset must be in [-14, 14]"),
            (0 <= (self.baseline_volume or 0) < 1e6, "baseline_volume must be 0 or more"),
            (0 <= self.sequence_share <= 1, "sequence_share must be in [0, 1]"),
            (self.hot_cohort is not None or not explicit, "sequence needs hot_cohort"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    @field_validator("miss_ratio_min_lookups")
    @classmethod
    def _min_lookups(cls, value: int) -> int:
        if value < 1:
            raise ValueError("miss_ratio_min_lookups must be at least 1")
        return value

    # -- derived values (computed once; the model is frozen) ----------------------------------

    def items(self, field: str) -> tuple[RateLimitItem, ...]:
        """The ``limits`` items of a rate field (empty when the field is off)."""
        return self._items[field]

    @cached_property
    def _items(self) -> dict[str, tuple[RateLimitItem, ...]]:
        return {
            name: tuple(parse_many(value)) if (value := getattr(self, name)) else ()
            for name in RATE_FIELDS
        }

    def lockout_seconds(self, level: int) -> float | None:
        """Duration of the lockout number ``level`` (0 = first); ``None`` = until unlocked."""
        return self._compiled.lockout_seconds(level)

    @cached_property
    def _compiled(self) -> CompiledPolicy:
        """Windows, seconds and script arguments of this policy (computed once)."""
        from nirguard._compiled import compile_policy

        return compile_policy(self)

    @classmethod
    def only(cls, **fields: Any) -> QuotaPolicy:
        """A policy with every check off except the ``fields`` given.

        Raises:
            PolicyError: unknown field or invalid value.

        >>> QuotaPolicy.only(lookups="5/minute").distinct_patients is None
        True
        """
        off: dict[str, Any] = {name: None for name in (*RATE_FIELDS, *_SWITCHES)}
        return cls(**{**off, **fields})

    # -- loaders --------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuotaPolicy:
        """Build a policy from a mapping (e.g. parsed configuration).

        Raises:
            PolicyError: unknown field or invalid value.
        """
        if not isinstance(data, Mapping):
            raise PolicyError("invalid quota policy: expected a mapping")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str | bytes) -> QuotaPolicy:
        """Build a policy from a JSON object.

        Raises:
            PolicyError: not JSON, or an invalid policy.
        """
        try:
            data = json.loads(text)
        except ValueError:
            raise PolicyError("invalid quota policy: not valid JSON") from None
        for name in ("lockout_escalation", "baseline_prior"):
            if isinstance(data, dict) and isinstance(data.get(name), list):
                data[name] = tuple(data[name])
        return cls.from_dict(data)

    @classmethod
    def from_toml(cls, source: str | os.PathLike[str], *, table: str | None = None) -> QuotaPolicy:
        """Build a policy from TOML text, or a TOML file when given a path.

        ``table`` selects a (dotted) table, e.g. ``"tool.nirguard.policy"``.
        In TOML, write ``"off"`` for a field that is switched off.

        Raises:
            PolicyError: not TOML, no such table, or an invalid policy.
        """
        return cls.from_dict(toml_fields(source, table))

    @classmethod
    def from_env(
        cls, prefix: str = "NIRGUARD_POLICY_", environ: Mapping[str, str] | None = None
    ) -> QuotaPolicy:
        """Build a policy from environment variables ``<prefix><FIELD>``.

        Unset variables keep the default; ``off`` or ``none`` switches a field
        off; ``lockout_escalation`` is a comma-separated list (``off`` = until
        unlocked).

        Raises:
            PolicyError: an invalid value.

        >>> QuotaPolicy.from_env(environ={"NIRGUARD_POLICY_LOOKUPS": "5/minute"}).lookups
        '5/minute'
        """
        defaults = {name: field.default for name, field in cls.model_fields.items()}
        return cls(**env_fields(defaults, prefix, environ))
