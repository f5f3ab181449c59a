"""OpenTelemetry metrics of the lookup guard: :class:`GuardMetrics`.

With the ``otel`` extra (``opentelemetry-api`` only, never the SDK), the guard
counts its decisions, times them, and counts alerts, lockouts and break-glass
grants through whatever ``MeterProvider`` the application configured (the
global one by default: a no-op until the application installs an SDK).

Instruments (meter ``nirguard``):

| name                                 | unit         | attributes                                    |
|--------------------------------------|--------------|-----------------------------------------------|
| ``nirguard.guard.decisions``         | ``{decision}`` | outcome, quota, kind, enforced, store       |
| ``nirguard.guard.decision.duration`` | ``s``        | outcome, store                                |
| ``nirguard.guard.alerts``            | ``{alert}``  | signal, kind, enforced, store                 |
| ``nirguard.guard.lockouts``          | ``{lockout}`` | quota, lockout.level, kind, enforced, store  |
| ``nirguard.guard.break_glass``       | ``{grant}``  | reason, kind, store                           |

(every attribute key is ``nirguard.<name>``: :data:`ATTRIBUTE_KEYS`).

Attribute values come from closed sets only (:data:`OUTCOMES`,
:data:`QUOTAS`, the :class:`~nirguard.reasons.ReasonCode` values, the store
kinds, the policy names): anything else is recorded as ``"other"``. A
practitioner id, a pseudonym or a NIR can therefore never become an
attribute value, whatever the caller passes — this keeps both the privacy
promise and the cardinality of every series bounded.

``import nirguard`` never imports OpenTelemetry; this module imports it only
when a :class:`GuardMetrics` is made.

>>> from nirguard.metrics import QUOTAS, attribute_value
>>> attribute_value("185057800608491", QUOTAS)
'other'
>>> attribute_value("distinct_patients", QUOTAS)
'distinct_patients'
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Final, get_args

from nirguard.audit import Outcome
from nirguard.errors import ConfigurationError
from nirguard.reasons import ReasonCode

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.util.types import Attributes

__all__ = [
    "ALERTS",
    "ATTRIBUTE_KEYS",
    "BREAK_GLASS",
    "DECISIONS",
    "DURATION",
    "DURATION_BUCKETS",
    "LOCKOUTS",
    "MAX_KINDS",
    "METER_NAME",
    "OTHER",
    "OUTCOMES",
    "QUOTAS",
    "REASONS",
    "STORES",
    "GuardMetrics",
    "attribute_value",
    "default_metrics",
]

_log = logging.getLogger("nirguard.metrics")

METER_NAME: Final = "nirguard"
"""Name of the meter every nirguard instrument belongs to."""

DECISIONS: Final = "nirguard.guard.decisions"
"""Counter of guard decisions, one per lookup (unit ``{decision}``)."""
DURATION: Final = "nirguard.guard.decision.duration"
"""Histogram of the time the guard took to decide a lookup (unit ``s``)."""
ALERTS: Final = "nirguard.guard.alerts"
"""Counter of :class:`~nirguard.alerts.Alert` sent (unit ``{alert}``)."""
LOCKOUTS: Final = "nirguard.guard.lockouts"
"""Counter of lockouts started (unit ``{lockout}``)."""
BREAK_GLASS: Final = "nirguard.guard.break_glass"
"""Counter of break-glass lookups granted (unit ``{grant}``)."""

# fmt: off
DURATION_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)
# fmt: on
"""Bucket boundaries advised for :data:`DURATION` (seconds): 10 µs to 1 s.

A decision on the memory store takes tens of microseconds, on Redis a round
trip (sub-millisecond to a few ms); 0.5 s is the guard's default deadline.
"""

OTHER: Final = "other"
"""The value recorded for anything outside an attribute's closed set."""

OUTCOMES: Final = frozenset(get_args(Outcome))
"""Values of ``nirguard.outcome``: the audit outcomes (:data:`nirguard.audit.Outcome`)."""

QUOTAS: Final = frozenset(
    {
        # quotas (QuotaPolicy rate fields)
        "lookups",
        "invalid_nirs",
        "distinct_patients",
        "cohort",
        "portal_cohort",
        "misses",
        "portal",
        "break_glass",
        # detections and states
        "miss_ratio",
        "hot_cohort",
        "locked",
    }
)
"""Values of ``nirguard.quota`` and ``nirguard.signal``: quota, signal and state names."""

REASONS: Final = frozenset(code.value for code in ReasonCode)
"""Values of ``nirguard.reason``: the :class:`~nirguard.reasons.ReasonCode` values."""

STORES: Final = frozenset({"memory", "redis"})
"""Values of ``nirguard.store``."""

MAX_KINDS: Final = 32
"""Most distinct policy kinds a :class:`GuardMetrics` records; later ones are ``"other"``."""

_LEVELS: Final = {1: "1", 2: "2", 3: "3", 4: "4"}
_LEVEL_MAX: Final = "5+"

ATTRIBUTE_KEYS: Final = frozenset(
    {
        "nirguard.outcome",
        "nirguard.quota",
        "nirguard.signal",
        "nirguard.kind",
        "nirguard.enforced",
        "nirguard.store",
        "nirguard.reason",
        "nirguard.lockout.level",
    }
)
"""Every attribute key any nirguard instrument records."""

# A policy name (QuotaPolicy.name) that may become a ``nirguard.kind`` value when no closed
# set of kinds is given: short, starts with a letter, no run of 5 digits (RPPS and ADELI
# numbers, NIRs and phone numbers all have one), and short enough to exclude a bare digest.
_KIND: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,23}", re.ASCII)
_DIGIT_RUN: Final = re.compile(r"[0-9]{5}", re.ASCII)
# Attribute dicts cached per raw argument combination; past this, built on each call.
_MAX_CACHED: Final = 2048


def attribute_value(value: object, allowed: Collection[str]) -> str:
    """``value`` when it is one of ``allowed`` (a plain ``str`` equal to it), else ``"other"``.

    >>> attribute_value("denied", OUTCOMES), attribute_value("dr-martin", OUTCOMES)
    ('denied', 'other')
    """
    if isinstance(value, str):
        text = str.__str__(value)  # a str subclass (an enum member) as its plain value
        if text in allowed:
            return text
    return OTHER


def _is_kind_name(value: str) -> bool:
    return _KIND.fullmatch(value) is not None and _DIGIT_RUN.search(value) is None


class _Instruments:
    """The five instruments of one meter, made once per meter provider."""

    __slots__ = ("alerts", "break_glass", "decisions", "duration", "lockouts")

    def __init__(self, meter_provider: MeterProvider | None) -> None:
        from opentelemetry import metrics

        from nirguard import __version__

        meter = metrics.get_meter(METER_NAME, __version__, meter_provider=meter_provider)
        self.decisions: Counter = meter.create_counter(
            DECISIONS, unit="{decision}", description="Lookups decided by the nirguard guard."
        )
        self.duration: Histogram = meter.create_histogram(
            DURATION,
            unit="s",
            description="Time the nirguard guard took to decide a lookup.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.alerts: Counter = meter.create_counter(
            ALERTS, unit="{alert}", description="Alerts sent by the nirguard guard."
        )
        self.lockouts: Counter = meter.create_counter(
            LOCKOUTS, unit="{lockout}", description="Practitioner lockouts started."
        )
        self.break_glass: Counter = meter.create_counter(
            BREAK_GLASS, unit="{grant}", description="Break-glass lookups granted."
        )


_global_instruments: _Instruments | None = None
_global_lock = threading.Lock()


def _instruments_for(meter_provider: MeterProvider | None) -> _Instruments:
    # The global provider's instruments are made once and shared: they are proxies that
    # follow the application's set_meter_provider() call, even a later one.
    global _global_instruments
    if meter_provider is not None:
        return _Instruments(meter_provider)
    with _global_lock:
        if _global_instruments is None:
            _global_instruments = _Instruments(None)
        return _global_instruments


class GuardMetrics:
    """Records the guard's decisions, alerts, lockouts and break-glass grants.

    Every attribute value is taken from a closed set (see the module
    documentation); anything else becomes ``"other"``, so a practitioner id,
    a pseudonym or a NIR never reaches an exporter. A recording never raises:
    a failing meter is logged once (exception type only), then ignored.

    Args:
        meter_provider: where the instruments come from; ``None`` = the
            global provider (``opentelemetry.metrics.get_meter_provider()``),
            including one the application sets later.
        store: the guard's store kind, recorded as ``nirguard.store``:
            ``"memory"`` or ``"redis"`` (anything else is ``"other"``).
        kinds: the policy names (``QuotaPolicy.name``) recorded as
            ``nirguard.kind``; any other name is ``"other"``. ``None`` (the
            default): the first :data:`MAX_KINDS` names that look like a
            policy name (a letter, then at most 23 letters, digits, ``-``,
            ``_`` or ``.``, with no run of 5 digits) are recorded as they
            are. Pass the names when a policy callable could name policies
            after practitioners.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed (the ``otel`` extra).
        ConfigurationError: a name in ``kinds`` is not a policy name.
    """

    __slots__ = (
        "_add_decision",
        "_alert_attrs",
        "_break_glass_attrs",
        "_decision_attrs",
        "_failed",
        "_instruments",
        "_kind_names",
        "_kinds_closed",
        "_lock",
        "_lockout_attrs",
        "_record_duration",
        "_store",
    )

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        store: str = "memory",
        kinds: Iterable[str] | None = None,
    ) -> None:
        instruments = _instruments_for(meter_provider)
        closed: frozenset[str] | None = None
        if kinds is not None:
            closed = frozenset(kinds) if not isinstance(kinds, str) else frozenset((kinds,))
            if not all(isinstance(k, str) and _is_kind_name(k) for k in closed):
                raise ConfigurationError(
                    "metrics kinds must be policy names (a letter, then up to 23 letters, "
                    "digits, '-', '_' or '.', no run of 5 digits)"
                )
        # name -> the same name as a plain str: a kind value is only ever taken from here.
        kind_names = {str.__str__(k): str.__str__(k) for k in closed or ()}
        self._setup(
            instruments,
            attribute_value(store, STORES),
            closed is not None,
            kind_names,
            threading.Lock(),
        )

    def _setup(
        self,
        instruments: _Instruments,
        store: str,
        kinds_closed: bool,
        kind_names: dict[str, str],
        lock: threading.Lock,
    ) -> None:
        self._instruments = instruments
        self._add_decision = instruments.decisions.add
        self._record_duration = instruments.duration.record
        self._store = store
        self._kinds_closed = kinds_closed
        self._kind_names = kind_names
        self._lock = lock
        self._failed = False
        self._decision_attrs: dict[tuple[Any, ...], tuple[Attributes, Attributes]] = {}
        self._alert_attrs: dict[tuple[Any, ...], Attributes] = {}
        self._lockout_attrs: dict[tuple[Any, ...], Attributes] = {}
        self._break_glass_attrs: dict[tuple[Any, ...], Attributes] = {}

    def with_store(self, store: str) -> GuardMetrics:
        """A recorder on the same instruments and kinds that records ``store`` instead.

        The guard calls it with its own store kind, so a recorder made by the
        application can be passed to guards on different stores.
        """
        other = GuardMetrics.__new__(GuardMetrics)
        other._setup(
            self._instruments,
            attribute_value(store, STORES),
            self._kinds_closed,
            self._kind_names,  # shared: MAX_KINDS bounds the kinds of all of them together
            self._lock,
        )
        return other

    def __repr__(self) -> str:
        return f"GuardMetrics(store={self._store!r})"

    # -- attribute values -----------------------------------------------------------------------

    def _kind(self, kind: object) -> str | None:
        if kind is None:
            return None
        if not isinstance(kind, str):
            return OTHER
        known = self._kind_names.get(kind)
        if known is not None:
            return known
        name = str.__str__(kind)
        if self._kinds_closed or not _is_kind_name(name):
            return OTHER
        with self._lock:
            if len(self._kind_names) >= MAX_KINDS:
                return OTHER
            self._kind_names[name] = name
        return name

    def _base(self, kind: object, enforced: object) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        k = self._kind(kind)
        if k is not None:
            attrs["nirguard.kind"] = k
        if enforced is not None:
            attrs["nirguard.enforced"] = bool(enforced)
        attrs["nirguard.store"] = self._store
        return attrs

    @staticmethod
    def _cached(cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...]) -> Any:
        try:
            return cache.get(key)
        except TypeError:  # an unhashable argument: recorded as "other", never cached
            return None

    @staticmethod
    def _cache(cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
        if len(cache) < _MAX_CACHED:
            with contextlib.suppress(TypeError):
                cache[key] = value

    def _fail(self, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            _log.error(
                "nirguard metrics recording failed (%s); further failures are not reported",
                type(exc).__name__,
            )

    # -- recording ------------------------------------------------------------------------------

    def decision(
        self,
        outcome: str,
        quota: str | None,
        seconds: float,
        *,
        kind: str | None,
        enforced: bool,
    ) -> None:
        """Count one decision and record how long it took.

        Args:
            outcome: the audit outcome (:data:`nirguard.audit.Outcome`).
            quota: the quota or signal involved (``None``: none).
            seconds: time from the start of the admission to the decision.
            kind: the applied policy's ``name``.
            enforced: ``False`` in shadow mode.
        """
        try:
            key = (outcome, quota, kind, enforced)
            try:
                attrs = self._decision_attrs[key]
            except (KeyError, TypeError):
                attrs = self._decision(outcome, quota, kind, enforced)
                self._cache(self._decision_attrs, key, attrs)
            self._add_decision(1, attrs[0])
            self._record_duration(seconds, attrs[1])
        except Exception as exc:  # metrics must never break a lookup
            self._fail(exc)

    def _decision(
        self, outcome: object, quota: object, kind: object, enforced: object
    ) -> tuple[Attributes, Attributes]:
        out = attribute_value(outcome, OUTCOMES)
        counted = {"nirguard.outcome": out}
        if quota is not None:
            counted["nirguard.quota"] = attribute_value(quota, QUOTAS)
        counted.update(self._base(kind, enforced))
        return counted, {"nirguard.outcome": out, "nirguard.store": self._store}

    def alert(self, signal: str, *, kind: str | None, enforced: bool = True) -> None:
        """Count one alert (``Alert.signal``, ``Alert.kind``, ``Alert.enforced``)."""
        try:
            key = (signal, kind, enforced)
            attrs = self._cached(self._alert_attrs, key) if type(signal) is str else None
            if attrs is None:
                attrs = {"nirguard.signal": attribute_value(signal, QUOTAS)}
                attrs.update(self._base(kind, enforced))
                self._cache(self._alert_attrs, key, attrs)
            self._instruments.alerts.add(1, attrs)
        except Exception as exc:
            self._fail(exc)

    def lockout(self, quota: str, level: int, *, kind: str | None, enforced: bool = True) -> None:
        """Count one lockout started by ``quota``.

        Args:
            quota: the quota or signal that started it.
            level: which lockout of this practitioner it is, 1 for the first
                (the ``lockout_level`` of the audit evidence); recorded as
                ``"1"`` .. ``"4"``, then ``"5+"``.
            kind: the applied policy's ``name``.
            enforced: ``False`` in shadow mode (the lockout would have started).
        """
        try:
            key = (quota, level, kind, enforced)
            cached = type(quota) is str and type(level) is int
            attrs = self._cached(self._lockout_attrs, key) if cached else None
            if attrs is None:
                attrs = {
                    "nirguard.quota": attribute_value(quota, QUOTAS),
                    "nirguard.lockout.level": _level(level),
                }
                attrs.update(self._base(kind, enforced))
                if cached:
                    self._cache(self._lockout_attrs, key, attrs)
            self._instruments.lockouts.add(1, attrs)
        except Exception as exc:
            self._fail(exc)

    def break_glass(self, reason: str, *, kind: str | None) -> None:
        """Count one break-glass lookup granted for ``reason`` (a :class:`ReasonCode`)."""
        try:
            key = (reason, kind)
            attrs = self._cached(self._break_glass_attrs, key) if isinstance(reason, str) else None
            if attrs is None:
                attrs = {"nirguard.reason": attribute_value(reason, REASONS)}
                attrs.update(self._base(kind, None))
                self._cache(self._break_glass_attrs, key, attrs)
            self._instruments.break_glass.add(1, attrs)
        except Exception as exc:
            self._fail(exc)


def _level(level: object) -> str:
    if not isinstance(level, int) or level < 1:
        return OTHER
    return _LEVELS.get(level, _LEVEL_MAX)


_api_missing = False


def default_metrics(*, store: str = "memory") -> GuardMetrics | None:
    """A :class:`GuardMetrics` on the global meter provider, or ``None`` without the ``otel`` extra.

    The guard calls it when it is given no ``metrics=``; ``None`` costs
    nothing on the hot path.
    """
    global _api_missing
    if _api_missing:
        return None
    try:
        import opentelemetry.metrics  # noqa: F401
    except ImportError:
        _api_missing = True
        return None
    return GuardMetrics(store=store)
