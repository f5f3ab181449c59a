"""``LookupGuard``: per-practitioner quotas enforced *before* a lookup runs.

Wrap the portal's identity-lookup function; a refused call raises a
:class:`~nirguard.errors.LookupDenied` and the function is never called. Each
lookup is one atomic decision of the store (the checks, in order, are in
``docs/guard.md``). This module holds the configuration and the
administrative calls; the lookup itself runs in :mod:`nirguard._lookup`.

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

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, ParamSpec, TypeVar

from nirguard._admin import Admin, GuardStatus
from nirguard._hooks import DEFAULT_CAPACITY
from nirguard._inputs import Argument as Argument  # re-exported: the integrations type with them
from nirguard._inputs import MissOn as MissOn
from nirguard._inputs import Policies, default_is_miss, miss_test
from nirguard._lookup import LookupPath
from nirguard._reports import Reports
from nirguard._setup import (
    EphemeralKeyWarning,
    check_options,
    declared_kinds,
    hooks_mode,
    make_engine,
    make_metrics,
    make_pseudonymiser,
)
from nirguard._wrap import GuardedLookup, protect
from nirguard.alerts import Alert, BreakGlass, Notice
from nirguard.audit import AuditSink, make_sink
from nirguard.metrics import GuardMetrics
from nirguard.policy import QuotaPolicy
from nirguard.pseudonym import Pseudonymiser

__all__ = [
    "Alert",
    "BreakGlass",
    "EphemeralKeyWarning",
    "GuardStatus",
    "GuardedLookup",
    "LookupGuard",
    "Notice",
]

P = ParamSpec("P")
R = TypeVar("R")


class LookupGuard:
    """Guards identity lookups with per-practitioner quotas and enumeration detection.

    Args:
        policy: a :class:`QuotaPolicy` (default: ``QuotaPolicy()``), or a
            callable ``practitioner_id -> QuotaPolicy``.
        storage: ``"memory://"`` (one process, the default; it refuses to decide
            in a process forked after it was made unless ``memory://?on_fork=copy``),
            or a Redis URI (``redis://``, ``rediss://``, ``unix://``,
            ``redis+cluster://``, ``redis+sentinel://``; ``docs/redis.md``).
        pseudonymiser: keys patients in the store by pseudonym. Without one,
            a random per-process key is made (fine for ``memory://``; with a
            shared store an :class:`EphemeralKeyWarning` is issued).
        audit: where :class:`~nirguard.AuditEvent` go: a callable, a
            :class:`logging.Logger`, or a path of a JSON-lines file.
        alert: called with an :class:`Alert` (a case about one account) when
            an incident starts: a lockout, a signal, a break-glass budget
            nearly spent. Default: the ``nirguard.alerts`` logger at
            ``WARNING``; ``False``: nowhere.
        notice: called with a :class:`Notice` (evidence about the portal:
            a hot cohort). Default: the ``nirguard.notices`` logger at
            ``INFO``; ``False``: nowhere.
        on_break_glass: called with a :class:`BreakGlass` for every granted
            break-glass lookup (review queue, notice to the patient).
        clock: zero-argument callable returning POSIX seconds: the memory
            store's clock and the audit's (on Redis, decisions follow ``TIME``).
        fail_open: **dangerous**: when the store is unreachable (connection
            or timeout errors only), let lookups through unguarded (audited
            as ``unguarded``) instead of refusing them with
            :class:`~nirguard.GuardUnavailable`.
        enforce: ``False`` runs the guard in *shadow mode*: it decides and
            records everything as enforcement would, audits what it would
            have refused (``would_deny``, ``would_lock``, ``would_suspect``,
            ``would_require_reason``, ``would_lockout``), alerts, and answers
            as enforcement would minus those refusals.
        is_miss: default test of "no such patient" for results
            (default: the result is ``None``).
        miss_on: default exception types (or a test of the exception) that
            mean "no such patient": counted as a miss, then re-raised.
        deadline: seconds one decision may take on Redis; past it, ``GuardUnavailable``.
        key_prefix: namespace of the store keys (no ``{``, ``}`` or ``:``).
        storage_options: for the Redis client: timeouts, pool, TLS (``docs/redis.md``).
        metrics: OpenTelemetry metrics (``docs/metrics.md``): ``None`` (the
            default) records through the global meter provider when the
            ``otel`` extra is installed; ``False`` records nothing; a
            :class:`~nirguard.metrics.GuardMetrics` records through its own.
        kinds: the policy names (kinds of practitioner) the portal declares:
            the only values the metric attribute ``nirguard.kind`` takes
            (with a fixed policy's own name); any other is ``"other"``.
        hooks: ``"background"`` (default): hooks and sinks that do I/O run
            on worker threads, off the request path; ``"inline"``: every hook
            runs at once, in the lookup (tests, command-line tools).
        hook_queue: items each hook's queue holds; past it, dropped (counted, logged).
        fold_practitioner_ids: key practitioner ids by their NFKC case fold
            (default), so ``Dr.Martin@...`` and ``dr.martin@...`` share one
            budget; ``False`` keys them as given (in NFC).

    Raises:
        ConfigurationError: unknown storage scheme, missing extra, or a
            wrong argument type.
        PolicyError: an invalid policy.
    """

    __slots__ = ("__weakref__", "_admin", "_engine", "_is_miss", "_miss_on", "_path")

    def __init__(
        self,
        policy: QuotaPolicy | Callable[[str], QuotaPolicy] | None = None,
        *,
        storage: str = "memory://",
        pseudonymiser: Pseudonymiser | None = None,
        audit: AuditSink | logging.Logger | str | os.PathLike[str] | None = None,
        alert: Callable[[Alert], object] | bool | None = None,
        notice: Callable[[Notice], object] | bool | None = None,
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
        kinds: Iterable[str] | None = None,
        hooks: Literal["background", "inline"] = "background",
        hook_queue: int = DEFAULT_CAPACITY,
        fold_practitioner_ids: bool = True,
    ) -> None:
        policy = QuotaPolicy() if policy is None else policy
        check_options(policy, clock, storage, key_prefix, deadline)
        background = hooks_mode(hooks, hook_queue)
        policies = Policies(policy)
        engine = make_engine(storage, clock, key_prefix, deadline, storage_options)
        reports = Reports(
            audit=make_sink(audit),
            alert=alert,
            notice=notice,
            on_break_glass=on_break_glass,
            metrics=make_metrics(metrics, engine.kind, declared_kinds(policies, kinds)),
            clock=clock,
            enforce=bool(enforce),
            background=background,
            capacity=hook_queue,
        )
        self._engine = engine
        self._is_miss = is_miss or default_is_miss
        self._miss_on = miss_test(miss_on)
        self._path = LookupPath(
            engine,
            policies,
            make_pseudonymiser(pseudonymiser, engine),
            reports,
            fail_open=bool(fail_open),
            folded=bool(fold_practitioner_ids),
        )
        self._admin = Admin(engine, self._path)

    def __repr__(self) -> str:
        path = self._path
        return (
            f"LookupGuard(storage={self._engine.kind!r}, enforce={path.enforce}, "
            f"fail_open={path.fail_open})"
        )

    def policy_for(self, practitioner: str) -> QuotaPolicy:
        """The policy that applies to ``practitioner``.

        Raises:
            PolicyError: the policy callable returned something else.
        """
        return self._path.policies.of(practitioner)

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

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            return protect(
                self._path,
                func,
                practitioner=practitioner,
                nir=nir,
                reason=reason,
                is_miss=judge,
                miss_on=error_test,
            )

        return decorate

    def lookup(
        self,
        practitioner: str,
        nir: str,
        *,
        is_miss: Callable[[Any], bool] | None = None,
        miss_on: MissOn | None = None,
        reason: object = None,
        session: str | None = None,
    ) -> GuardedLookup:
        """A guarded lookup for code that cannot be decorated (``with`` or ``async with``).

        ``reason``: a stated break-glass reason, as :meth:`protect` takes it. ``session``:
        the portal's own id of the login session (or device) making the lookup, never a
        value the client sends; ``None`` or ``""``: unknown (``guard.md#sessions``).

        >>> guard = LookupGuard()
        >>> with guard.lookup("10003456789", "185057800608491") as lookup:
        ...     result = lookup.record({"name": "Jeanne Martin"})
        """
        return GuardedLookup(
            self._path,
            practitioner,
            nir,
            is_miss or self._is_miss,
            miss_test(miss_on) if miss_on is not None else self._miss_on,
            reason,
            session,
        )

    async def open_lookup(
        self,
        practitioner: object,
        nir: object,
        *,
        is_miss: Callable[[Any], bool] | None = None,
        miss_on: MissOn | None = None,
        reason: object = None,
        session: str | None = None,
    ) -> GuardedLookup:
        """Admit a lookup that finishes without a ``with`` block (for web integrations).

        ``reason`` and ``session`` are as :meth:`lookup` takes them.

        It is finished by :meth:`GuardedLookup.record` (the result), by
        :meth:`GuardedLookup.failed` (the endpoint's exception), or else when
        nothing holds it any more (audited ``allowed``).

        Raises:
            LookupDenied: refused (every subclass), InvalidNIR included.
            TypeError: ``session`` is neither a str nor ``None``.
        """
        return await GuardedLookup.opened(
            self._path,
            practitioner,
            nir,
            is_miss or self._is_miss,
            miss_test(miss_on) if miss_on is not None else self._miss_on,
            reason,
            session,
        )

    # -- administration -------------------------------------------------------------------------

    def status(self, practitioner: str) -> GuardStatus:
        """Remaining budget per quota, lockout state and baseline of ``practitioner``.

        Raises:
            GuardUnavailable: the store cannot be reached.
            InvalidPractitioner: not a usable practitioner id.
        """
        return self._admin.status(practitioner)

    async def astatus(self, practitioner: str) -> GuardStatus:
        """Async :meth:`status` (it raises as :meth:`status` does)."""
        return await self._admin.astatus(practitioner)

    def unlock(
        self, practitioner: str, *, by: str | None = None, reason: str | None = None
    ) -> None:
        """Lift the lockout of ``practitioner`` and reset its escalation and breach counters.

        Audited as an ``unlocked`` event with ``actor`` (``by``) and ``note``
        (``reason``, NIR-shaped runs masked, at most 1,000 characters).

        Args:
            practitioner: the account to unlock.
            by: who unlocks it (an administrator's id), for the audit trail.
            reason: why (a ticket number, a call with the practitioner).

        Raises:
            GuardUnavailable: the store cannot be reached.
            InvalidPractitioner: not a usable practitioner id.
            ConfigurationError: ``by`` or ``reason`` is not a string.
        """
        self._admin.unlock(practitioner, by, reason)

    async def aunlock(
        self, practitioner: str, *, by: str | None = None, reason: str | None = None
    ) -> None:
        """Async :meth:`unlock` (it raises as :meth:`unlock` does)."""
        await self._admin.aunlock(practitioner, by, reason)

    # -- hooks and shutdown ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every audit event, alert, notice and grant handed over has been
        delivered to its hook. Returns ``False`` if ``timeout`` seconds passed first."""
        return self._path.reports.flush(timeout)

    def close(self) -> None:
        """Flush the hooks and close the store's connections (a later lookup reopens them)."""
        self._path.reports.close()
        self._engine.close()

    async def aclose(self) -> None:
        """Flush the hooks (without blocking the loop) and close the async store's
        connections; call it from the event loop that used them."""
        await asyncio.to_thread(self._path.reports.close)
        await self._engine.aclose()

    # -- for the replay -------------------------------------------------------------------------

    def snapshot(self) -> Any:
        """A copy of a ``memory://`` guard's state (the replay reuses a history this way).

        Raises:
            ConfigurationError: the guard is not on ``memory://``.
        """
        return self._admin.snapshot()

    def restore(self, state: Any) -> None:
        """Put back a state :meth:`snapshot` took.

        Raises:
            ConfigurationError: the guard is not on ``memory://``.
        """
        self._admin.restore(state)

    _snapshot = snapshot
    _restore = restore
