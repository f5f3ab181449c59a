"""``LookupGuard``: per-practitioner quotas enforced *before* a lookup runs.

Wrap the portal's identity-lookup function; a refused call raises a
:class:`~nirguard.errors.LookupDenied` and the function is never called, so
it never returns identity data.

Order of one guarded lookup:

1. lockout check (:class:`~nirguard.errors.PractitionerLocked`);
2. NIR validation: an invalid number counts against ``invalid_nirs`` and
   raises :class:`~nirguard.errors.InvalidNIR`;
3. the miss budget and miss ratio of the practitioner;
4. quotas: ``lookups``; then, when the patient is new to this practitioner
   within the window, ``distinct_patients``, ``cohort`` and (new to the
   portal) ``portal_cohort``; then ``portal``;
5. the function runs; its result goes through ``is_miss``, and a miss counts
   against ``misses``.

A breach of ``distinct_patients``, ``invalid_nirs`` or ``misses``, and every
detection (``cohort``, ``portal_cohort``, ``miss_ratio``), starts a lockout
that escalates when it recurs; ``lookups`` and ``portal`` only refuse until
their window allows again.

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
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, ParamSpec, TypeVar, cast

from nirguard._engine import CompiledPolicy, Decision, Engine, Request, escape
from nirguard._lookup import GuardedLookup, argument_getter
from nirguard._store import MemoryStore, open_async_store, open_stores
from nirguard.alerts import Alert
from nirguard.audit import AuditEvent, SafeCaller, make_sink
from nirguard.errors import (
    GuardUnavailable,
    InvalidNIR,
    LookupDenied,
    NirguardError,
    PolicyError,
)
from nirguard.keys import SecretKey
from nirguard.nir import validate
from nirguard.policy import QuotaPolicy
from nirguard.pseudonym import Pseudonymiser

__all__ = ["Alert", "EphemeralKeyWarning", "GuardStatus", "GuardedLookup", "LookupGuard"]

P = ParamSpec("P")
R = TypeVar("R")

_log = logging.getLogger("nirguard.guard")
_MAX_POLICY_CACHE: Final = 4096


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


@dataclass(slots=True)
class _Admission:
    request: Request
    canonical: str
    guarded: bool


def _default_is_miss(result: object) -> bool:
    return result is None


class LookupGuard:
    """Guards identity lookups with per-practitioner quotas and enumeration detection.

    Args:
        policy: a :class:`QuotaPolicy` (default: ``QuotaPolicy()``), or a
            callable ``practitioner_id -> QuotaPolicy``.
        storage: a ``limits`` storage URI: ``"memory://"`` (one process,
            the default) or ``"redis://host:6379/0"`` to share quotas between
            processes and hosts. Redis gets short socket timeouts and no
            client retries by default: 0.4 s read, 1 s connect (override with
            ``storage_options``).
        pseudonymiser: keys patients in the store by pseudonym. Without one,
            a random per-process key is made (fine for ``memory://``; with a
            shared store an :class:`EphemeralKeyWarning` is issued).
        audit: where :class:`AuditEvent` go: a callable, a
            :class:`logging.Logger`, or a path of a JSON-lines file.
        alert: called with an :class:`Alert` once per practitioner per lockout.
        clock: zero-argument callable returning POSIX seconds. The guard and
            its memory store read time only through it. On Redis, windows
            follow the server.
        fail_open: **dangerous**: when the store is unreachable, let lookups
            through unguarded (audited as ``unguarded``) instead of refusing
            them with :class:`GuardUnavailable`.
        is_miss: default test of "no such patient" for results
            (default: the result is ``None``).
        key_prefix: namespace of the store keys.
        storage_options: passed to the ``limits`` storage.

    Raises:
        PolicyError: invalid policy, unknown storage scheme, or missing extra.
    """

    def __init__(
        self,
        policy: QuotaPolicy | Callable[[str], QuotaPolicy] | None = None,
        *,
        storage: str = "memory://",
        pseudonymiser: Pseudonymiser | None = None,
        audit: Any = None,
        alert: Callable[[Alert], object] | None = None,
        clock: Callable[[], float] = time.time,
        fail_open: bool = False,
        is_miss: Callable[[Any], bool] | None = None,
        key_prefix: str = "nirguard",
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if policy is None:
            policy = QuotaPolicy()
        if not isinstance(policy, QuotaPolicy) and not callable(policy):
            raise PolicyError("policy must be a QuotaPolicy or a callable returning one")
        if not callable(clock):
            raise PolicyError("clock must be a zero-argument callable")
        self._policy = policy
        self._compiled: dict[int, CompiledPolicy] = {}
        self._clock = clock
        self._fail_open = bool(fail_open)
        self._down = False
        self._is_miss = is_miss or _default_is_miss
        self._audit = SafeCaller(make_sink(audit), "audit")
        self._alert = SafeCaller(alert, "alert")
        self._storage_uri = storage
        store, async_store = open_stores(storage, clock, storage_options)
        self._engine = Engine(
            store,
            prefix=key_prefix,
            async_store=async_store,
            open_async=lambda: open_async_store(storage, storage_options),
        )
        if pseudonymiser is None:
            if not isinstance(store, MemoryStore):
                warnings.warn(
                    "LookupGuard without a pseudonymiser on a shared store: patients are keyed "
                    "with a random per-process key, so distinct-patient counts differ between "
                    "processes and reset on restart. Pass pseudonymiser=Pseudonymiser(...).",
                    EphemeralKeyWarning,
                    stacklevel=2,
                )
            pseudonymiser = Pseudonymiser(SecretKey.generate("ephemeral"), purpose="guard")
        if not isinstance(pseudonymiser, Pseudonymiser):
            raise PolicyError("pseudonymiser must be a nirguard.Pseudonymiser")
        self._patients = pseudonymiser
        self._cohorts = pseudonymiser.derive("cohort")
        if isinstance(policy, QuotaPolicy):
            self._compile(policy)

    def __repr__(self) -> str:
        kind = "memory" if self._storage_uri.startswith("memory://") else "external"
        return f"LookupGuard(storage={kind!r}, fail_open={self._fail_open})"

    # -- policy ---------------------------------------------------------------------------------

    def _compile(self, policy: QuotaPolicy) -> CompiledPolicy:
        compiled = self._compiled.get(id(policy))
        if compiled is None or compiled.policy is not policy:
            if len(self._compiled) >= _MAX_POLICY_CACHE:
                self._compiled.clear()
            compiled = CompiledPolicy.of(policy)
            self._compiled[id(policy)] = compiled
        return compiled

    def policy_for(self, practitioner: str) -> QuotaPolicy:
        """The policy that applies to ``practitioner``.

        Raises:
            PolicyError: the policy callable returned something else.
        """
        policy = self._policy
        if isinstance(policy, QuotaPolicy):
            return policy
        chosen = policy(practitioner)
        if not isinstance(chosen, QuotaPolicy):
            raise PolicyError("the policy callable must return a QuotaPolicy")
        return chosen

    # -- the steps of a lookup ------------------------------------------------------------------

    def _request(
        self, practitioner: object, nir_value: object
    ) -> tuple[Request, str, InvalidNIR | None]:
        if not isinstance(practitioner, str) or not practitioner:
            raise LookupDenied("lookup denied: no practitioner id", code="practitioner")
        compiled = self._compile(self.policy_for(practitioner))
        p = escape(practitioner)
        try:
            canonical = validate(nir_value, strict=True)  # type: ignore[arg-type]
        except InvalidNIR as exc:
            return Request(p, compiled), "", exc
        cohort = None
        if compiled.cohort or compiled.portal_cohort:
            cohort = self._cohorts.pseudonymise_canonical(canonical[:10])
        patient = self._patients.pseudonymise_canonical(canonical)
        return Request(p, compiled, patient, cohort), canonical, None

    def _event(
        self,
        practitioner: str,
        outcome: str,
        patient: str | None = None,
        quota: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        if not self._audit:
            return
        self._audit(
            AuditEvent(
                time=datetime.fromtimestamp(self._clock(), tz=timezone.utc),
                practitioner=practitioner,
                patient=patient,
                outcome=outcome,  # type: ignore[arg-type]
                quota=quota,
                retry_after=retry_after,
            )
        )

    def _conclude(
        self,
        practitioner: str,
        request: Request,
        canonical: str,
        invalid: InvalidNIR | None,
        decision: Decision,
    ) -> _Admission:
        if decision.lockout_started and decision.quota is not None:
            self._alert(
                Alert(
                    practitioner=practitioner,
                    signal=decision.quota,
                    evidence=dict(decision.evidence),
                    time=self._clock(),
                    retry_after=decision.retry_after,
                )
            )
        if decision.denial is not None:
            self._event(
                practitioner,
                decision.outcome,
                request.patient,
                decision.quota,
                decision.retry_after,
            )
            raise decision.denial
        if invalid is not None:
            self._event(practitioner, "invalid", None, "invalid_nirs")
            raise invalid
        return _Admission(request, canonical, guarded=True)

    def _unavailable(
        self,
        practitioner: str,
        request: Request,
        canonical: str,
        invalid: InvalidNIR | None,
        exc: Exception,
    ) -> _Admission:
        if isinstance(exc, NirguardError):
            raise exc
        self._store_down(exc)
        if invalid is not None and self._fail_open:
            self._event(practitioner, "invalid", None, "invalid_nirs")
            raise invalid
        if self._fail_open:
            self._event(practitioner, "unguarded", request.patient)
            return _Admission(request, canonical, guarded=False)
        self._event(practitioner, "unavailable", request.patient)
        raise GuardUnavailable() from None

    def _store_down(self, exc: Exception) -> None:
        """Log a store failure once per outage (type only: messages may hold a URI)."""
        if not self._down:
            self._down = True
            _log.warning(
                "nirguard quota store unavailable (%s); lookups are %s until it answers again",
                type(exc).__name__,
                "let through unguarded" if self._fail_open else "refused",
            )

    def _store_up(self) -> None:
        if self._down:
            self._down = False
            _log.warning("nirguard quota store reachable again")

    def _admit(self, practitioner: str, nir_value: object) -> _Admission:
        request, canonical, invalid = self._request(practitioner, nir_value)
        engine = self._engine
        flow = engine.invalid(request) if invalid is not None else engine.admit(request)
        try:
            decision = engine.run(flow)
        except Exception as exc:  # store failure: fail closed unless told otherwise
            return self._unavailable(practitioner, request, canonical, invalid, exc)
        if self._down:
            self._store_up()
        return self._conclude(practitioner, request, canonical, invalid, decision)

    async def _aadmit(self, practitioner: str, nir_value: object) -> _Admission:
        request, canonical, invalid = self._request(practitioner, nir_value)
        engine = self._engine
        flow = engine.invalid(request) if invalid is not None else engine.admit(request)
        try:
            decision = await engine.arun(flow)
        except Exception as exc:
            return self._unavailable(practitioner, request, canonical, invalid, exc)
        if self._down:
            self._store_up()
        return self._conclude(practitioner, request, canonical, invalid, decision)

    def _judge(self, admission: _Admission, result: object, is_miss: Callable[[Any], bool]) -> bool:
        if not admission.guarded:
            return False
        try:
            return bool(is_miss(result))
        except Exception as exc:
            _log.warning(
                "nirguard is_miss raised %s; result not counted as a miss", type(exc).__name__
            )
            return False

    def _finish(self, practitioner: str, admission: _Admission, miss: bool) -> None:
        if miss:
            try:
                self._engine.run(self._engine.record_miss(admission.request))
            except Exception as exc:
                _log.warning("nirguard could not record a miss (%s)", type(exc).__name__)
        self._finished_event(practitioner, admission, miss)

    async def _afinish(self, practitioner: str, admission: _Admission, miss: bool) -> None:
        if miss:
            try:
                await self._engine.arun(self._engine.record_miss(admission.request))
            except Exception as exc:
                _log.warning("nirguard could not record a miss (%s)", type(exc).__name__)
        self._finished_event(practitioner, admission, miss)

    def _finished_event(self, practitioner: str, admission: _Admission, miss: bool) -> None:
        if not admission.guarded:
            return  # already audited as "unguarded"
        self._event(practitioner, "miss" if miss else "allowed", admission.request.patient)

    # -- public API -----------------------------------------------------------------------------

    def protect(
        self,
        *,
        practitioner: str | Callable[..., str],
        nir: str | Callable[..., str],
        is_miss: Callable[[Any], bool] | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a lookup function (sync or async) with the guard.

        Args:
            practitioner: name of the parameter holding the practitioner id,
                or a callable taking the call's arguments and returning it.
            nir: name of the parameter holding the NIR, or a callable as above.
            is_miss: tells from the result that no such patient exists
                (default: the guard's, i.e. the result is ``None``).

        The wrapped function is called with its arguments unchanged, only
        when the guard allows the lookup. Its signature and typing are kept.

        Raises:
            PolicyError: a parameter name the function does not have.
        """
        judge = is_miss or self._is_miss

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            get_practitioner = argument_getter(func, practitioner, "practitioner")
            get_nir = argument_getter(func, nir, "nir")
            if inspect.iscoroutinefunction(func):
                async_func = cast(Callable[..., Awaitable[Any]], func)

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    who = get_practitioner(args, kwargs)
                    admission = await self._aadmit(who, get_nir(args, kwargs))
                    try:
                        result = await async_func(*args, **kwargs)
                    except BaseException:
                        await self._afinish(who, admission, False)
                        raise
                    await self._afinish(who, admission, self._judge(admission, result, judge))
                    return result

                return cast(Callable[P, R], async_wrapper)

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                who = get_practitioner(args, kwargs)
                admission = self._admit(who, get_nir(args, kwargs))
                try:
                    result = func(*args, **kwargs)
                except BaseException:
                    self._finish(who, admission, False)  # audited as allowed, no miss
                    raise
                self._finish(who, admission, self._judge(admission, result, judge))
                return result

            return wrapper

        return decorate

    def lookup(
        self, practitioner: str, nir: str, *, is_miss: Callable[[Any], bool] | None = None
    ) -> GuardedLookup:
        """A guarded lookup for code that cannot be decorated (``with`` or ``async with``).

        >>> guard = LookupGuard()
        >>> with guard.lookup("10003456789", "185057800608491") as lookup:
        ...     result = lookup.record({"name": "Jeanne Martin"})
        """
        return GuardedLookup(self, practitioner, nir, is_miss or self._is_miss)

    def status(self, practitioner: str) -> GuardStatus:
        """Remaining budget per quota and lockout state of ``practitioner``.

        Raises:
            GuardUnavailable: the store cannot be reached.
        """
        compiled = self._compile(self.policy_for(practitioner))
        try:
            raw = self._engine.run(self._engine.status(escape(practitioner), compiled))
        except Exception as exc:
            self._store_down(exc)
            raise GuardUnavailable() from None
        return self._status(practitioner, raw)

    async def astatus(self, practitioner: str) -> GuardStatus:
        """Async :meth:`status`.

        Raises:
            GuardUnavailable: the store cannot be reached.
        """
        compiled = self._compile(self.policy_for(practitioner))
        try:
            raw = await self._engine.arun(self._engine.status(escape(practitioner), compiled))
        except Exception as exc:
            self._store_down(exc)
            raise GuardUnavailable() from None
        return self._status(practitioner, raw)

    def _status(self, practitioner: str, raw: dict[str, Any]) -> GuardStatus:
        locked_for = raw["locked_for"]
        if locked_for is None:
            until = None
        elif locked_for > 365 * 86400:
            until = float("inf")
        else:
            until = self._clock() + locked_for
        return GuardStatus(practitioner, raw["remaining"], until, raw["level"])

    def unlock(self, practitioner: str) -> None:
        """Lift the lockout of ``practitioner`` and reset its escalation and breach counters.

        Raises:
            GuardUnavailable: the store cannot be reached.
        """
        compiled = self._compile(self.policy_for(practitioner))
        try:
            self._engine.run(self._engine.unlock(escape(practitioner), compiled))
        except Exception as exc:
            self._store_down(exc)
            raise GuardUnavailable() from None

    async def aunlock(self, practitioner: str) -> None:
        """Async :meth:`unlock`.

        Raises:
            GuardUnavailable: the store cannot be reached.
        """
        compiled = self._compile(self.policy_for(practitioner))
        try:
            await self._engine.arun(self._engine.unlock(escape(practitioner), compiled))
        except Exception as exc:
            self._store_down(exc)
            raise GuardUnavailable() from None

    def close(self) -> None:
        """Close the store's connections (a later lookup reopens them)."""
        self._engine.close()

    async def aclose(self) -> None:
        """Close the async store's connections; call it from the event loop that used them."""
        await self._engine.aclose()
