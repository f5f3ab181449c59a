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
| ``nirguard.guard.notices``           | ``{notice}`` | signal, kind, store                           |
| ``nirguard.guard.hooks.dropped``     | ``{item}``   | hook, store                                   |

(every attribute key is ``nirguard.<name>``: :data:`ATTRIBUTE_KEYS`).

Attribute values come from closed sets only (:data:`OUTCOMES`,
:data:`QUOTAS`, the :class:`~nirguard.reasons.ReasonCode` values, the store
kinds, the hooks, and the policy names the portal declares with
``LookupGuard(kinds=...)``): anything else is recorded as ``"other"``. A
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
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Final

from nirguard._names import HOOKS, OUTCOMES, QUOTAS
from nirguard._otel import (
    ALERTS,
    BREAK_GLASS,
    DECISIONS,
    DROPPED,
    DURATION,
    DURATION_BUCKETS,
    LOCKOUTS,
    METER_NAME,
    NOTICES,
    Instruments,
    instruments_for,
)
from nirguard.errors import ConfigurationError
from nirguard.reasons import ReasonCode

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.util.types import Attributes

__all__ = [
    "ALERTS",
    "ATTRIBUTE_KEYS",
    "BREAK_GLASS",
    "DECISIONS",
    "DROPPED",
    "DURATION",
    "DURATION_BUCKETS",
    "LOCKOUTS",
    "METER_NAME",
    "NOTICES",
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

OTHER: Final = "other"
"""The value recorded for anything outside an attribute's closed set."""

REASONS: Final = frozenset(code.value for code in ReasonCode)
"""Values of ``nirguard.reason``: the :class:`~nirguard.reasons.ReasonCode` values."""

STORES: Final = frozenset({"memory", "redis"})
"""Values of ``nirguard.store``."""

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
        "nirguard.hook",
    }
)
"""Every attribute key any nirguard instrument records."""

# A policy name (QuotaPolicy.name) a portal may declare as a ``nirguard.kind`` value: short,
# starts with a letter, no run of 5 digits (RPPS and ADELI numbers, NIRs and phone numbers
# all have one), and short enough to exclude a bare digest.
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


def _declared(kinds: Iterable[str] | None) -> dict[str, str]:
    """name -> the same name as a plain str: a kind value is only ever taken from here."""
    if kinds is None:
        return {}
    names = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not all(isinstance(k, str) and _is_kind_name(k) for k in names):
        raise ConfigurationError(
            "metrics kinds must be policy names (a letter, then up to 23 letters, "
            "digits, '-', '_' or '.', no run of 5 digits)"
        )
    return {str.__str__(k): str.__str__(k) for k in names}


class GuardMetrics:
    """Records the guard's decisions, alerts, notices, lockouts, grants and dropped reports.

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
        kinds: policy names (``QuotaPolicy.name``) recorded as
            ``nirguard.kind``, with those the guard declares
            (``LookupGuard(kinds=...)`` and a fixed policy's name); any other
            name is ``"other"``, so a policy callable that names policies
            after practitioners never puts a name into a metric.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed (the ``otel`` extra).
        ConfigurationError: a name in ``kinds`` is not a policy name (a letter,
            then at most 23 letters, digits, ``-``, ``_`` or ``.``, no run of 5 digits).
    """

    __slots__ = (
        "_add_decision",
        "_decision_attrs",
        "_failed",
        "_instruments",
        "_kind_names",
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
        self._setup(
            instruments_for(meter_provider), attribute_value(store, STORES), _declared(kinds)
        )

    def _setup(self, instruments: Instruments, store: str, kind_names: dict[str, str]) -> None:
        self._instruments = instruments
        self._add_decision = instruments.decisions.add
        self._record_duration = instruments.duration.record
        self._store = store
        self._kind_names = kind_names
        self._failed = False
        self._decision_attrs: dict[tuple[Any, ...], tuple[Attributes, Attributes]] = {}

    def for_guard(self, *, store: str, kinds: Iterable[str] = ()) -> GuardMetrics:
        """A recorder on the same instruments for one guard: its store, and its declared
        kinds added to these (names that are not policy names stay ``"other"``)."""
        other = GuardMetrics.__new__(GuardMetrics)
        names = dict(self._kind_names)
        for kind in kinds:
            if isinstance(kind, str) and _is_kind_name(kind):
                names[str.__str__(kind)] = str.__str__(kind)
        other._setup(self._instruments, attribute_value(store, STORES), names)
        return other

    def with_store(self, store: str) -> GuardMetrics:
        """A recorder on the same instruments and kinds that records ``store`` instead."""
        return self.for_guard(store=store)

    def __repr__(self) -> str:
        return f"GuardMetrics(store={self._store!r})"

    # -- attribute values -----------------------------------------------------------------------

    def _kind(self, kind: object) -> str | None:
        if kind is None:
            return None
        if not isinstance(kind, str):
            return OTHER
        return self._kind_names.get(kind, OTHER)

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
            attrs = {"nirguard.signal": attribute_value(signal, QUOTAS)}
            attrs.update(self._base(kind, enforced))
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
            attrs = {
                "nirguard.quota": attribute_value(quota, QUOTAS),
                "nirguard.lockout.level": _level(level),
            }
            attrs.update(self._base(kind, enforced))
            self._instruments.lockouts.add(1, attrs)
        except Exception as exc:
            self._fail(exc)

    def break_glass(self, reason: str, *, kind: str | None) -> None:
        """Count one break-glass lookup granted for ``reason`` (a :class:`ReasonCode`)."""
        try:
            attrs = {"nirguard.reason": attribute_value(reason, REASONS)}
            attrs.update(self._base(kind, None))
            self._instruments.break_glass.add(1, attrs)
        except Exception as exc:
            self._fail(exc)

    def notice(self, signal: str, *, kind: str | None) -> None:
        """Count one notice about the portal (``Notice.signal``, ``Notice.kind``)."""
        try:
            attrs = {"nirguard.signal": attribute_value(signal, QUOTAS)}
            attrs.update(self._base(kind, None))
            self._instruments.notices.add(1, attrs)
        except Exception as exc:
            self._fail(exc)

    def dropped(self, hook: str) -> None:
        """Count one report dropped by ``hook`` (its queue was full)."""
        try:
            attrs = {"nirguard.hook": attribute_value(hook, HOOKS), "nirguard.store": self._store}
            self._instruments.dropped.add(1, attrs)
        except Exception as exc:
            self._fail(exc)


def _level(level: object) -> str:
    if not isinstance(level, int) or level < 1:
        return OTHER
    return _LEVELS.get(level, _LEVEL_MAX)


_api_missing = False


def default_metrics(*, store: str = "memory", kinds: Iterable[str] = ()) -> GuardMetrics | None:
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
    return GuardMetrics().for_guard(store=store, kinds=kinds)
