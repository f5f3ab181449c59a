"""A :class:`~nirguard.policy.QuotaPolicy` turned into what the engines read.

This is the one place where policy fields become windows, seconds and the
arguments of the Redis script. A policy compiles once: the result is cached
on the (frozen) policy itself, see :attr:`QuotaPolicy._compiled`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from nirguard.policy import parse_duration

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = ["INDEFINITE", "CompiledPolicy", "Window", "compile_policy"]

#: Seconds a lockout "until unlock()" is stored for (ten years); the Lua script agrees.
INDEFINITE: Final = 315_360_000.0
#: How long an account record is kept with ``baseline`` on: its history outlives holidays.
BASELINE_KEEP: Final = 35 * 86_400.0
#: Quotas whose windows live in the practitioner's account record, by policy field.
ACCOUNT_QUOTAS: Final = (
    "lookups",
    "distinct_patients",
    "invalid_nirs",
    "misses",
    "portal_cohort",
    "break_glass",
)


@dataclass(frozen=True, slots=True)
class Window:
    """One fixed window of a quota: ``amount`` hits per ``seconds``.

    ``field`` and ``ends`` name the counter and the end of its window in the
    record that holds it (the policy field's own name and the window length).
    """

    amount: int
    seconds: int
    field: str
    ends: str


def _windows(policy: QuotaPolicy, name: str, field: str | None = None) -> tuple[Window, ...]:
    label = field or name
    return tuple(
        Window(
            item.amount,
            item.get_expiry(),
            f"{label}:{item.get_expiry()}",
            f"{label}:{item.get_expiry()}:e",
        )
        for item in policy.items(name)
    )


def _spec(windows: tuple[Window, ...]) -> str:
    return ",".join(f"{w.amount}/{w.seconds}" for w in windows)


def _number(value: float) -> str:
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """Windows and seconds of one policy, and its text for the Redis script: calls send
    ``lua_digest``; the script asks for ``lua_policy`` the first time it meets a digest,
    parses it once and keeps it."""

    policy: QuotaPolicy
    name: str | None
    lookups: tuple[Window, ...]
    distinct_patients: tuple[Window, ...]
    invalid_nirs: tuple[Window, ...]
    misses: tuple[Window, ...]
    cohort: tuple[Window, ...]
    portal_cohort: tuple[Window, ...]
    new_patients: tuple[Window, ...]
    portal: tuple[Window, ...]
    break_glass: tuple[Window, ...]
    seen: float
    lockout_steps: tuple[float, ...]
    lockout_memory: float
    miss_ratio: float | None
    miss_ratio_min: int
    miss_ratio_window: float
    portal_cohort_share: float
    hot_cohort: float | None
    hot_cohort_min: int
    hot_window: float
    hot_baseline: float
    hot_reason: bool
    break_glass_access: float
    #: ``baseline``: the CUSUM's threshold (``None``: off), slack, the peers' prior
    #: (mean, sd, weight in days), the weight of off-hours new patients, the local
    #: day's offset from UTC in seconds (see :mod:`nirguard._baseline`)
    baseline: float | None
    baseline_slack: float
    baseline_mean: float
    baseline_sd: float
    baseline_prior_days: float
    baseline_off_hours: float
    baseline_offset: float
    keep: float
    #: how long the portal quota's record is kept
    portal_keep: float
    #: cohort heat is kept per pair of time constants (a short digest of the two, in the
    #: heat key): policies that differ share nothing
    heat_suffix: str
    lua_policy: str
    lua_digest: str

    @property
    def needs_cohort(self) -> bool:
        """Whether lookups need the cohort's pseudonym (a cohort-based check is on)."""
        return bool(self.cohort or self.portal_cohort or self.hot_cohort)

    def lockout_seconds(self, level: int) -> float | None:
        """Length of the lockout number ``level`` (0 = first); ``None`` = until unlocked."""
        step = self.lockout_steps[min(max(level, 0), len(self.lockout_steps) - 1)]
        return None if step < 0 else step


def compile_policy(policy: QuotaPolicy) -> CompiledPolicy:
    """Compile ``policy`` (use ``policy._compiled``, which caches this)."""
    lookups = _windows(policy, "lookups")
    distinct = _windows(policy, "distinct_patients")
    cohort = _windows(policy, "cohort")
    portal_cohort = _windows(policy, "portal_cohort")
    new_patients = _windows(policy, "portal_cohort", "new_patients")
    invalid = _windows(policy, "invalid_nirs")
    misses = _windows(policy, "misses")
    portal = _windows(policy, "portal")
    break_glass = _windows(policy, "break_glass")
    seen = float(max((w.seconds for w in (*distinct, *cohort, *portal_cohort)), default=0))
    steps = [parse_duration(policy.lockout)]
    steps += [-1.0 if s is None else parse_duration(s) for s in policy.lockout_escalation]
    lockout_memory = parse_duration(policy.lockout_memory)
    ratio_window = parse_duration(policy.miss_ratio_window)
    hot_window = parse_duration(policy.hot_cohort_window)
    hot_baseline = parse_duration(policy.hot_cohort_baseline)
    # Grants exist only with a break-glass budget: then patient records must outlive them.
    access = parse_duration(policy.break_glass_access) if break_glass else 0.0
    longest = max(
        (w.seconds for w in (*lookups, *distinct, *invalid, *misses, *portal_cohort, *break_glass)),
        default=0,
    )
    keep = (
        max(float(longest), lockout_memory, ratio_window if policy.miss_ratio else 0, steps[0]) + 60
    )
    if policy.baseline is not None:
        keep = max(keep, BASELINE_KEEP + 60)
    hot = policy.hot_cohort
    mean, sd = (float(v) for v in policy.baseline_prior)
    offset = float(policy.baseline_utc_offset) * 3600.0
    lua_parts = (
        _spec(lookups),
        _spec(distinct),
        _spec(invalid),
        _spec(misses),
        _spec(cohort),
        _spec(portal_cohort),
        _spec(portal),
        _spec(break_glass),
        _number(seen),
        ",".join(_number(s) for s in steps),
        _number(lockout_memory),
        "" if policy.miss_ratio is None else _number(policy.miss_ratio),
        str(policy.miss_ratio_min_lookups),
        _number(ratio_window),
        _number(policy.portal_cohort_share),
        "" if hot is None else _number(hot),
        str(policy.hot_cohort_min),
        _number(hot_window),
        _number(hot_baseline),
        policy.hot_cohort_action,
        _number(access),
        _number(keep),
        "" if policy.baseline is None else _number(policy.baseline),
        _number(policy.baseline_slack),
        _number(mean),
        _number(sd),
        _number(policy.baseline_prior_days),
        _number(policy.baseline_off_hours),
        _number(offset),
    )
    return CompiledPolicy(
        policy=policy,
        name=policy.name,
        lookups=lookups,
        distinct_patients=distinct,
        invalid_nirs=invalid,
        misses=misses,
        cohort=cohort,
        portal_cohort=portal_cohort,
        new_patients=new_patients,
        portal=portal,
        break_glass=break_glass,
        seen=seen,
        lockout_steps=tuple(steps),
        lockout_memory=lockout_memory,
        miss_ratio=policy.miss_ratio,
        miss_ratio_min=policy.miss_ratio_min_lookups,
        miss_ratio_window=ratio_window,
        portal_cohort_share=policy.portal_cohort_share,
        hot_cohort=hot,
        hot_cohort_min=policy.hot_cohort_min,
        hot_window=hot_window,
        hot_baseline=hot_baseline,
        hot_reason=policy.hot_cohort_action == "reason",
        break_glass_access=access,
        baseline=None if policy.baseline is None else float(policy.baseline),
        baseline_slack=float(policy.baseline_slack),
        baseline_mean=mean,
        baseline_sd=sd,
        baseline_prior_days=float(policy.baseline_prior_days),
        baseline_off_hours=float(policy.baseline_off_hours),
        baseline_offset=offset,
        keep=keep,
        portal_keep=float(max((w.seconds for w in portal), default=0)) + 60,
        heat_suffix=hashlib.sha256(f"{hot_window!r}:{hot_baseline!r}".encode()).hexdigest()[:6],
        lua_policy="|".join(lua_parts),
        lua_digest=hashlib.sha256("|".join(lua_parts).encode()).hexdigest()[:16],
    )
