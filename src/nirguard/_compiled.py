"""A :class:`~nirguard.policy.QuotaPolicy` turned into what the engines read.

This is the one place where policy fields become windows, seconds and the
arguments of the Redis script. A policy compiles once: the result is cached
on the (frozen) policy itself, see :attr:`QuotaPolicy._compiled`. This module
reads a policy through :class:`Source` (the fields it compiles) and imports
nothing of :mod:`nirguard.policy`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, TypedDict

from limits import RateLimitItem

from nirguard._durations import parse_duration

__all__ = ["INDEFINITE", "CompiledPolicy", "Source", "Window", "compile_policy"]

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
    "strikes",
)


class Source(Protocol):
    """What compilation reads of a policy (a :class:`~nirguard.policy.QuotaPolicy`)."""

    @property
    def name(self) -> str | None: ...
    @property
    def lockout(self) -> str | float: ...
    @property
    def lockout_escalation(self) -> tuple[str | float | None, ...]: ...
    @property
    def lockout_memory(self) -> str | float: ...
    @property
    def miss_ratio(self) -> float | None: ...
    @property
    def miss_ratio_min_lookups(self) -> int: ...
    @property
    def miss_ratio_window(self) -> str | float: ...
    @property
    def portal_cohort_share(self) -> float: ...
    @property
    def sequence_share(self) -> float: ...
    @property
    def hot_cohort(self) -> float | None: ...
    @property
    def hot_cohort_min(self) -> int: ...
    @property
    def hot_cohort_window(self) -> str | float: ...
    @property
    def hot_cohort_baseline(self) -> str | float: ...
    @property
    def hot_cohort_action(self) -> str: ...
    @property
    def break_glass_access(self) -> str | float: ...
    @property
    def hot_cohort_warmup(self) -> str | float | None: ...
    @property
    def baseline(self) -> float | None: ...
    @property
    def baseline_slack(self) -> float: ...
    @property
    def baseline_prior(self) -> tuple[float, float]: ...
    @property
    def baseline_prior_days(self) -> float: ...
    @property
    def baseline_off_hours(self) -> float: ...
    @property
    def baseline_utc_offset(self) -> float: ...
    @property
    def baseline_volume(self) -> float | None: ...
    @property
    def session_overlap(self) -> str | float | None: ...

    def items(self, field: str) -> tuple[RateLimitItem, ...]: ...


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


def _windows(policy: Source, name: str, field: str | None = None) -> tuple[Window, ...]:
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

    policy: Source
    name: str | None
    lookups: tuple[Window, ...]
    distinct_patients: tuple[Window, ...]
    invalid_nirs: tuple[Window, ...]
    misses: tuple[Window, ...]
    cohort: tuple[Window, ...]
    portal_cohort: tuple[Window, ...]
    new_patients: tuple[Window, ...]
    #: ``sequence``: new patients with a neighbour only, with a control only, and new
    #: patients, over its windows (nirguard/_sequence.py)
    sequence: tuple[Window, ...]
    sequence_new: tuple[Window, ...]
    sequence_ctl: tuple[Window, ...]
    sequence_share: float
    portal: tuple[Window, ...]
    break_glass: tuple[Window, ...]
    strikes: tuple[Window, ...]
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
    #: seconds the store watches the portal before a cohort can be hot (0: none)
    hot_warmup: float
    break_glass_access: float
    #: ``baseline``: the CUSUM's threshold (``None``: off), slack, the peers' prior
    #: (mean, sd, days it fades over), the weight of off-hours new patients, the local
    #: day's offset from UTC in seconds, the volume's offset (``None``: volume only
    #: gates) (see :mod:`nirguard._baseline`)
    baseline: float | None
    baseline_slack: float
    baseline_mean: float
    baseline_sd: float
    baseline_prior_days: float
    baseline_off_hours: float
    baseline_offset: float
    baseline_volume: float | None
    #: ``session_overlap`` in seconds (0: off; nirguard/_sessions.py)
    session_overlap: float
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


def _keep(policy: Source, record: tuple[Window, ...], steps: list[float], memory: float) -> float:
    """How long an account record is kept after its last write: its longest window, the
    escalation's memory, the miss ratio's window, the first lockout, and a minute."""
    longest = float(max((w.seconds for w in record), default=0))
    ratio = parse_duration(policy.miss_ratio_window) if policy.miss_ratio else 0.0
    history = BASELINE_KEEP if policy.baseline is not None else 0.0
    return max(longest, memory, ratio, steps[0], history) + 60


class _Baseline(TypedDict):
    """:class:`CompiledPolicy`'s ``baseline`` fields as :func:`_baseline` returns them. The
    names repeat the dataclass's on purpose: mypy checks each key and type unpacked into
    its constructor (a misspelt key is an error there, where ``dict[str, Any]`` passes)."""

    baseline: float | None
    baseline_slack: float
    baseline_mean: float
    baseline_sd: float
    baseline_prior_days: float
    baseline_off_hours: float
    baseline_offset: float
    baseline_volume: float | None


def _baseline(policy: Source) -> _Baseline:
    """The ``baseline`` fields, compiled (see :mod:`nirguard._baseline`)."""
    volume = policy.baseline_volume
    return {
        "baseline": None if policy.baseline is None else float(policy.baseline),
        "baseline_slack": float(policy.baseline_slack),
        "baseline_mean": float(policy.baseline_prior[0]),
        "baseline_sd": float(policy.baseline_prior[1]),
        "baseline_prior_days": float(policy.baseline_prior_days),
        "baseline_off_hours": float(policy.baseline_off_hours),
        "baseline_offset": float(policy.baseline_utc_offset) * 3600.0,
        "baseline_volume": None if volume is None else float(volume),
    }


def _sequence(policy: Source, rates: dict[str, tuple[Window, ...]]) -> dict[str, Any]:
    """``sequence``: its windows, the new patients' and the controls' over the same, and
    its share; no windows without ``hot_cohort`` (it reads the cohorts' heat)."""
    on = policy.hot_cohort is not None
    return {
        "sequence": rates["sequence"] if on else (),
        "sequence_new": _windows(policy, "sequence", "sequence_new") if on else (),
        "sequence_ctl": _windows(policy, "sequence", "sequence_ctl") if on else (),
        "sequence_share": policy.sequence_share,
    }


def _lua_text(c: CompiledPolicy) -> str:
    """The policy as the Lua library parses it (``_policy.lua``: compile)."""
    parts = (
        _spec(c.lookups),
        _spec(c.distinct_patients),
        _spec(c.invalid_nirs),
        _spec(c.misses),
        _spec(c.cohort),
        _spec(c.portal_cohort),
        _spec(c.portal),
        _spec(c.break_glass),
        _number(c.seen),
        ",".join(_number(s) for s in c.lockout_steps),
        _number(c.lockout_memory),
        "" if c.miss_ratio is None else _number(c.miss_ratio),
        str(c.miss_ratio_min),
        _number(c.miss_ratio_window),
        _number(c.portal_cohort_share),
        "" if c.hot_cohort is None else _number(c.hot_cohort),
        str(c.hot_cohort_min),
        _number(c.hot_window),
        _number(c.hot_baseline),
        "reason" if c.hot_reason else "alert",
        _number(c.break_glass_access),
        _number(c.keep),
        _spec(c.strikes),
        "" if c.baseline is None else _number(c.baseline),
        _number(c.baseline_slack),
        _number(c.baseline_mean),
        _number(c.baseline_sd),
        _number(c.baseline_prior_days),
        _number(c.baseline_off_hours),
        _number(c.baseline_offset),
        _spec(c.sequence),
        _number(c.sequence_share),
        "" if c.baseline_volume is None else _number(c.baseline_volume),
        _number(c.session_overlap) if c.session_overlap else "",
    )
    return "|".join(parts)


def compile_policy(policy: Source) -> CompiledPolicy:
    """Compile ``policy`` (use ``policy._compiled``, which caches this)."""
    names = (*ACCOUNT_QUOTAS, "cohort", "portal", "sequence")
    rates = {name: _windows(policy, name) for name in names}
    distinct, cohort, portal_cohort = (
        rates[n] for n in ("distinct_patients", "cohort", "portal_cohort")
    )
    seen = float(max((w.seconds for w in (*distinct, *cohort, *portal_cohort)), default=0))
    steps = [parse_duration(policy.lockout)]
    steps += [-1.0 if s is None else parse_duration(s) for s in policy.lockout_escalation]
    memory = parse_duration(policy.lockout_memory)
    hot_window = parse_duration(policy.hot_cohort_window)
    hot_baseline = parse_duration(policy.hot_cohort_baseline)
    record = tuple(w for name in (*ACCOUNT_QUOTAS, "sequence") for w in rates[name])
    compiled = CompiledPolicy(
        policy=policy,
        name=policy.name,
        lookups=rates["lookups"],
        distinct_patients=distinct,
        invalid_nirs=rates["invalid_nirs"],
        misses=rates["misses"],
        cohort=cohort,
        portal_cohort=portal_cohort,
        new_patients=_windows(policy, "portal_cohort", "new_patients"),
        **_sequence(policy, rates),
        portal=rates["portal"],
        break_glass=rates["break_glass"],
        strikes=rates["strikes"],
        seen=seen,
        lockout_steps=tuple(steps),
        lockout_memory=memory,
        miss_ratio=policy.miss_ratio,
        miss_ratio_min=policy.miss_ratio_min_lookups,
        miss_ratio_window=parse_duration(policy.miss_ratio_window),
        portal_cohort_share=policy.portal_cohort_share,
        hot_cohort=policy.hot_cohort,
        hot_cohort_min=policy.hot_cohort_min,
        hot_window=hot_window,
        hot_baseline=hot_baseline,
        hot_reason=policy.hot_cohort_action == "reason",
        hot_warmup=0.0
        if policy.hot_cohort_warmup is None
        else parse_duration(policy.hot_cohort_warmup),
        # grants exist only with a break-glass budget: then patient records must outlive them
        break_glass_access=parse_duration(policy.break_glass_access)
        if rates["break_glass"]
        else 0.0,
        **_baseline(policy),
        session_overlap=0.0
        if policy.session_overlap is None
        else parse_duration(policy.session_overlap),
        keep=_keep(policy, record, steps, memory),
        portal_keep=float(max((w.seconds for w in rates["portal"]), default=0)) + 60,
        heat_suffix=hashlib.sha256(f"{hot_window!r}:{hot_baseline!r}".encode()).hexdigest()[:6],
        lua_policy="",
        lua_digest="",
    )
    text = _lua_text(compiled)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return replace(compiled, lua_policy=text, lua_digest=digest)
