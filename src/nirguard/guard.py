"""``LookupGuard``: per-practitioner quotas enforced *before* a lookup runs.

Wrap the portal's identity-lookup function; a refused call raises a
:class:`~nirguard.errors.LookupDenied` and the function is never called, so
it never returns identity data.

Order of one guarded lookup (one atomic decision of the store: see
``docs/guard.md``):

1. the practitioner id and the NIR are read: an invalid number counts
   against ``invalid_nirs`` and raises :class:`~nirguard.errors.InvalidNIR`;
2. portal-wide: the ``portal`` quota, and the heat of the patient's birth
   cohort across the portal (evidence about the cohort, never a lockout);
3. the practitioner: lockout (:class:`~nirguard.errors.PractitionerLocked`),
   miss budget and miss ratio, ``lookups``; then, for a patient new to this
   practitioner, ``distinct_patients``, ``cohort`` (its own walk of one
   cohort) and ``portal_cohort`` (its new patients in hot cohorts);
4. the function runs; a result ``is_miss`` calls a miss, or an exception
   ``miss_on`` does (then re-raised), and a miss counts against ``misses``.

A breach of ``distinct_patients``, ``invalid_nirs`` or ``misses``, and every
detection (``cohort``, ``portal_cohort``, ``miss_ratio``), starts a lockout
that escalates when it recurs; ``lookups`` and ``portal`` only refuse until
their window allows again. With a break-glass budget (the default), a new
patient past a new-patient quota is first answered with
:class:`~nirguard.errors.ReasonRequired`: retried with a reason it goes
through (and is reviewed); a second different new patient without one
starts the lockout.

>>> from nirguard import LookupGuard, QuotaPolicy
>>> guard = LookupGuard(QuotaPolicy(lookups="2/minute"), storage="memory://")
>>> @guard.protect(practitioner="practitioner_id", nir="nir")
... def infopatient(practitioner_id: str, nir: str) -> dict[str, str] | None:
...     return {"name": "Jeanne Martin"}
>>> infopatient("10003456789", "1 85 05 78 006 084 91")
{'name': 'Jeanne Martin'}
>>> infopatient("10003456789", "1 85 05 78 006 084 91")
{'name': 'Jeanne Martin'}
>>> infopatient("10003456789", "1 85 05 78 006 084 91")
Traceback (most recent call last):
...
nirguard.errors.QuotaExceeded: lookup denied: lookups quota exceeded
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from nirguard._admission import Admissions, Metrics, practitioner_id
from nirguard._engine import Engine, RawStatus, escape
from nirguard._lookup import GuardedLookup, argument_getter, miss_test
from nirguard._memory import MemoryEngine
from nirguard._memory_store import fork_mode
from nirguard.alerts import Alert, BreakGlass
from nirguard.audit import AuditSink, make_sink
from nirguard.errors import ConfigurationError
from nirguard.keys import SecretKey
from nirguard.metrics import GuardMetrics, default_metrics
from nirguard.policy import QuotaPolicy
from nirguard.pseudonym import Pseudonymiser

__all__ = [
    "Alert",
    "BreakGlass",
    "EphemeralKeyWarning",
    "GuardStatus",
    "GuardedLookup",
    "LookupGuard",
]

P = ParamSpec("P")
R = TypeVar("R")

#: What ``miss_on`` accepts: exception types, or a test of the raised exception.
MissOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
#: What ``practitioner``, ``nir`` and ``reason`` accept: a parameter name, or a callable.
Argument = str | Callable[..., Any]


class EphemeralKeyWarning(UserWarning):
    """A shared store is used without a pseudonymiser: patient keys use a random
    per-process key, so distinct-patient counts differ between processes."""


@dataclass(frozen=True, slots=True)
class GuardStatus:
    """What an admin screen shows for one practitioner.

    Attributes:
        practitioner: the practitioner id.
        remaining: lookups left per quota (smallest over its windows);
            ``None`` for a quota that is off.
        locked_until: POSIX time the lockout ends; ``None`` when not locked,
            ``float('inf')`` when locked until :meth:`LookupGuard.unlock`.
        lockout_level: lockouts counted towards escalation.
    """

    practitioner: str
    remaining: dict[str, int | None]
    locked_until: float | None
    lockout_level: int

    @property
    def locked(self) -> bool:
        """Whether the practitioner is locked out now."""
        return self.locked_until is not None


def _default_is_miss(result: object) -> bool:
    return result is None


class LookupGuard:
    """Guards identity lookups with per-practitioner quotas and enumeration detection.

    Args:
        policy: a :class:`QuotaPolicy` (default: ``QuotaPolicy()``), or a
            callable ``practitioner_id -> QuotaPolicy``.
        storage: ``"memory://"`` (one process, the default), or a Redis URI
            to share quotas between processes and hosts: ``redis://``,
            ``rediss://``, ``unix://``, ``redis+cluster://``,
            ``redis+sentinel://`` (see ``docs/redis.md``). A ``memory://``
            guard refuses to decide in a process forked after it was made
            (each process would count alone: ``ConfigurationError``), unless
            made with ``memory://?on_fork=copy`` for deliberate copies.
        pseudonymiser: keys patients in the store by pseudonym. Without one,
            a random per-process key is made (fine for ``memory://``; with a
            shared store an :class:`EphemeralKeyWarning` is issued).
        audit: where :class:`~nirguard.AuditEvent` go: a callable, a
            :class:`logging.Logger`, or a path of a JSON-lines file.
        alert: called with an :class:`Alert` when a lockout starts, a cohort
            turns hot, or a break-glass budget is nearly spent.
        on_break_glass: called with a :class:`BreakGlass` for every granted
            break-glass lookup (review queue, notice to the patient).
        clock: zero-argument callable returning POSIX seconds: the memory
            store's clock and the audit's. On Redis, decisions follow the
            server's clock (``TIME``), so hosts with skewed clocks agree.
        fail_open: **dangerous**: when the store is unreachable (connection
            or timeout errors only), let lookups through unguarded (audited
            as ``unguarded``) instead of refusing them with
            :class:`~nirguard.GuardUnavailable`.
        enforce: ``False`` runs the guard in *shadow mode*: it decides and
            records everything as enforcement would, audits what it would
            have refused (``would_deny``, ``would_lock``, ``would_suspect``,
            ``would_require_reason``), alerts, and never refuses.
        is_miss: default test of "no such patient" for results
            (default: the result is ``None``).
        miss_on: default exception types (or a test of the exception) that
            mean "no such patient": counted as a miss, then re-raised.
        deadline: seconds one decision may take on Redis, waiting for a
            pooled connection included; past it, ``GuardUnavailable``.
        key_prefix: namespace of the store keys (no ``{``, ``}`` or ``:``).
        storage_options: passed to the Redis client: timeouts,
            ``max_connections`` of the pool, TLS settings (``docs/redis.md``).
        metrics: OpenTelemetry metrics (``docs/metrics.md``): ``None`` (the
            default) records through the global meter provider when the
            ``otel`` extra is installed, and costs nothing without it;
            ``False`` records nothing; a :class:`~nirguard.metrics.GuardMetrics`
            records through its own provider.

    Raises:
        ConfigurationError: unknown storage scheme, missing extra, or a
            wrong argument type.
        PolicyError: an invalid policy.
    """

    __slots__ = ("__weakref__", "_admissions", "_engine", "_is_miss", "_miss_on", "_storage_kind")

    def __init__(
        self,
        policy: QuotaPolicy | Callable[[str], QuotaPolicy] | None = None,
        *,
        storage: str = "memory://",
        pseudonymiser: Pseudonymiser | None = None,
        audit: AuditSink | logging.Logger | str | os.PathLike[str] | None = None,
        alert: Callable[[Alert], object] | None = None,
        on_break_glass: Callable[[BreakGlass], object] | None = None,
        clock: Callable[[], float] = time.time,
        fail_open: bool = False,
        enforce: bool = True,
        is_miss: Callable[[Any], bool] | None = None,
        miss_on: MissOn | None = None,
        deadline: float = 0.5,
        key_prefix: str = "nirguard",
        storage_options: dict[str, Any] | None = None,
        metrics: GuardMetrics | bool | None = None,
    ) -> None:
        if policy is None:
            policy = QuotaPolicy()
        if not isinstance(policy, QuotaPolicy) and not callable(policy):
            raise ConfigurationError("policy must be a QuotaPolicy or a callable returning one")
        if not callable(clock):
            raise ConfigurationError("clock must be a zero-argument callable")
        if not isinstance(storage, str):
            raise ConfigurationError("storage must be a storage URI string")
        if (
            not isinstance(key_prefix, str)
            or not key_prefix
            or any(c in key_prefix for c in "{}:%")
        ):
            raise ConfigurationError("key_prefix must be a non-empty string without {, }, : or %")
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not deadline > 0:
            raise ConfigurationError("deadline must be a positive number of seconds")
        if pseudonymiser is not None and not isinstance(pseudonymiser, Pseudonymiser):
            raise ConfigurationError("pseudonymiser must be a nirguard.Pseudonymiser")
        engine: Engine
        if storage.startswith("memory://"):
            engine = MemoryEngine(clock, prefix=key_prefix, on_fork=fork_mode(storage))
        else:
            from nirguard._redis import RedisEngine

            engine = RedisEngine(
                storage, prefix=key_prefix, options=storage_options, deadline=float(deadline)
            )
        if pseudonymiser is None:
            if engine.kind != "memory":
                warnings.warn(
                    "LookupGuard without a pseudonymiser on a shared store: patients are keyed "
                    "with a random per-process key, so distinct-patient counts differ between "
                    "processes and reset on restart. Pass pseudonymiser=Pseudonymiser(...).",
                    EphemeralKeyWarning,
                    stacklevel=2,
                )
            pseudonymiser = Pseudonymiser(SecretKey.generate("ephemeral"), purpose="guard")
        if isinstance(policy, QuotaPolicy):
            policy._compiled  # compile once, now: a bad policy fails here  # noqa: B018
        self._engine = engine
        self._storage_kind = engine.kind
        self._is_miss = is_miss or _default_is_miss
        self._miss_on = miss_test(miss_on)
        recorder: Metrics | None
        if metrics is None or metrics is True:
            recorder = default_metrics(store=engine.kind)
        elif metrics is False:
            recorder = None
        elif isinstance(metrics, GuardMetrics):
            recorder = metrics.with_store(engine.kind)
        else:
            raise ConfigurationError("metrics must be a GuardMetrics, True, False or None")
        self._admissions = Admissions(
            engine,
            policy,
            pseudonymiser,
            audit=make_sink(audit),
            alert=alert,
            on_break_glass=on_break_glass,
            metrics=recorder,
            clock=clock,
            fail_open=bool(fail_open),
            enforce=bool(enforce),
        )

    def __repr__(self) -> str:
        a = self._admissions
        return (
            f"LookupGuard(storage={self._storage_kind!r}, enforce={a.enforce}, "
            f"fail_open={a.fail_open})"
        )

    def policy_for(self, practitioner: str) -> QuotaPolicy:
        """The policy that applies to ``practitioner``.

        Raises:
            PolicyError: the policy callable returned something else.
        """
        return self._admissions.policy_for(practitioner)

    # -- guarding -------------------------------------------------------------------------------

    def protect(
        self,
        *,
        practitioner: Argument,
        nir: Argument,
        is_miss: Callable[[Any], bool] | None = None,
        miss_on: MissOn | None = None,
        reason: Argument | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a lookup function (sync or async) with the guard.

        Args:
            practitioner: name of the parameter holding the practitioner id
                (the *authenticated* account, never a value the client
                sends), or a callable taking the call's arguments and
                returning it.
            nir: name of the parameter holding the NIR, or a callable as above.
            is_miss: tells from the result that no such patient exists
                (default: the guard's, i.e. the result is ``None``).
            miss_on: exception types (or a test of the exception) meaning "no
                such patient": counted as a miss, then re-raised.
            reason: name of the parameter holding a stated break-glass reason
                (a :class:`~nirguard.Reason`, a :class:`~nirguard.ReasonCode`
                or its code), or a callable as above; ``None`` or ``""`` = no
                reason.

        The wrapped function is called with its arguments unchanged, only
        when the guard allows the lookup. Its signature and typing are kept.

        Raises:
            ConfigurationError: a parameter name the function does not have.
        """
        judge = is_miss or self._is_miss
        error_test = miss_test(miss_on) if miss_on is not None else self._miss_on
        admissions = self._admissions

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            get_practitioner = argument_getter(func, practitioner, "practitioner")
            get_nir = argument_getter(func, nir, "nir")
            get_reason = argument_getter(func, reason, "reason") if reason is not None else None
            if inspect.iscoroutinefunction(func):
                async_func = cast(Callable[..., Awaitable[Any]], func)

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    stated = get_reason(args, kwargs) if get_reason is not None else None
                    ticket = await admissions.aadmit(
                        get_practitioner(args, kwargs), get_nir(args, kwargs), stated
                    )
                    try:
                        result = await async_func(*args, **kwargs)
                    except BaseException as exc:
                        await admissions.afinish(
                            ticket, admissions.judge_error(ticket, exc, error_test)
                        )
                        raise
                    await admissions.afinish(ticket, admissions.judge(ticket, result, judge))
                    return result

                return cast(Callable[P, R], async_wrapper)

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                stated = get_reason(args, kwargs) if get_reason is not None else None
                ticket = admissions.admit(
                    get_practitioner(args, kwargs), get_nir(args, kwargs), stated
                )
                try:
                    result = func(*args, **kwargs)
                except BaseException as exc:
                    admissions.finish(ticket, admissions.judge_error(ticket, exc, error_test))
                    raise
                admissions.finish(ticket, admissions.judge(ticket, result, judge))
                return result

            return wrapper

        return decorate

    def lookup(
        self,
        practitioner: str,
        nir: str,
        *,
        is_miss: Callable[[Any], bool] | None = None,
        miss_on: MissOn | None = None,
        reason: object = None,
    ) -> GuardedLookup:
        """A guarded lookup for code that cannot be decorated (``with`` or ``async with``).

        >>> guard = LookupGuard()
        >>> with guard.lookup("10003456789", "185057800608491") as lookup:
        ...     result = lookup.record({"name": "Jeanne Martin"})
        """
        return GuardedLookup(
            self._admissions,
            practitioner,
            nir,
            is_miss or self._is_miss,
            miss_test(miss_on) if miss_on is not None else self._miss_on,
            reason,
        )

    # -- administration -------------------------------------------------------------------------

    def _admin_args(self, practitioner: str) -> tuple[str, Any]:
        who = practitioner_id(practitioner)
        return escape(who), self._admissions.policy_for(who)._compiled

    def status(self, practitioner: str) -> GuardStatus:
        """Remaining budget per quota and lockout state of ``practitioner``.

        Raises:
            GuardUnavailable: the store cannot be reached.
            InvalidPractitioner: not a usable practitioner id.
        """
        key, compiled = self._admin_args(practitioner)
        try:
            raw = self._engine.status(key, compiled)
        except self._engine.outages as exc:
            raise self._admissions.store_error(exc) from None
        return self._status(practitioner, raw)

    async def astatus(self, practitioner: str) -> GuardStatus:
        """Async :meth:`status`.

        Raises:
            GuardUnavailable: the store cannot be reached.
            InvalidPractitioner: not a usable practitioner id.
        """
        key, compiled = self._admin_args(practitioner)
        try:
            raw = await self._engine.astatus(key, compiled)
        except self._engine.outages as exc:
            raise self._admissions.store_error(exc) from None
        return self._status(practitioner, raw)

    def _status(self, practitioner: str, raw: RawStatus) -> GuardStatus:
        locked_for = raw.locked_for
        if locked_for is None:
            until = None
        elif locked_for > 365 * 86400:
            until = float("inf")
        else:
            until = self._admissions.clock() + locked_for
        return GuardStatus(practitioner, raw.remaining, until, raw.level)

    def unlock(self, practitioner: str) -> None:
        """Lift the lockout of ``practitioner`` and reset its escalation and breach counters.

        Raises:
            GuardUnavailable: the store cannot be reached.
            InvalidPractitioner: not a usable practitioner id.
        """
        key, compiled = self._admin_args(practitioner)
        try:
            self._engine.unlock(key, compiled)
        except self._engine.outages as exc:
            raise self._admissions.store_error(exc) from None

    async def aunlock(self, practitioner: str) -> None:
        """Async :meth:`unlock`.

        Raises:
            GuardUnavailable: the store cannot be reached.
            InvalidPractitioner: not a usable practitioner id.
        """
        key, compiled = self._admin_args(practitioner)
        try:
            await self._engine.aunlock(key, compiled)
        except self._engine.outages as exc:
            raise self._admissions.store_error(exc) from None

    def close(self) -> None:
        """Close the store's connections (a later lookup reopens them)."""
        self._engine.close()

    async def aclose(self) -> None:
        """Close the async store's connections; call it from the event loop that used them."""
        await self._engine.aclose()

    # -- for the replay -------------------------------------------------------------------------

    def _snapshot(self) -> Any:
        """A copy of the memory store's state (the replay reuses a history this way)."""
        if not isinstance(self._engine, MemoryEngine):
            raise ConfigurationError("only a memory:// guard can be snapshot")
        return self._engine._snapshot()

    def _restore(self, state: Any) -> None:
        if not isinstance(self._engine, MemoryEngine):
            raise ConfigurationError("only a memory:// guard can be restored")
        self._engine._restore(state)
