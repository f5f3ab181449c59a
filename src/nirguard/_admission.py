"""The steps of one guarded lookup, shared by ``protect`` and ``lookup()``.

:class:`Admissions` holds what a guard decided at construction (engine,
pseudonymisers, sinks, modes) and runs the steps through named methods:

1. :meth:`Admissions.admit` (or :meth:`~Admissions.aadmit`): read the
   practitioner id, the policy, the NIR and the stated reason; ask the
   engine; raise the alerts, record the metrics, audit a refusal and raise
   it (in shadow mode: audit what would have been refused, and go on);
2. the portal's lookup runs;
3. :meth:`Admissions.finish` (or :meth:`~Admissions.afinish`): count a miss
   and audit what happened.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, Protocol

from nirguard._engine import Decision, Engine, Request, escape
from nirguard.alerts import Alert, BreakGlass
from nirguard.audit import WOULD, AuditEvent, SafeCaller
from nirguard.errors import (
    GuardUnavailable,
    InvalidNIR,
    InvalidPractitioner,
    InvalidReason,
    LookupDenied,
    PolicyError,
)
from nirguard.nir import validate
from nirguard.policy import QuotaPolicy
from nirguard.pseudonym import Pseudonymiser
from nirguard.reasons import Reason

__all__ = ["MAX_PRACTITIONER_LENGTH", "Admissions", "MissTest", "Ticket"]

_log = logging.getLogger("nirguard.guard")

#: Longest practitioner id accepted (characters).
MAX_PRACTITIONER_LENGTH: Final = 256
#: A break-glass alert is raised when this many grants or fewer are left.
BREAK_GLASS_ALERT_LEFT: Final = 1

#: What tells that a raised exception means "no such patient".
MissTest = Callable[[BaseException], bool]


class Metrics(Protocol):
    """What the admission step records (``nirguard.metrics.GuardMetrics``)."""

    def decision(
        self, outcome: str, quota: str | None, seconds: float, *, kind: str | None, enforced: bool
    ) -> None: ...

    def alert(self, signal: str, *, kind: str | None, enforced: bool = True) -> None: ...

    def lockout(
        self, quota: str, level: int, *, kind: str | None, enforced: bool = True
    ) -> None: ...

    def break_glass(self, reason: str, *, kind: str | None) -> None: ...


def practitioner_id(value: object) -> str:
    """The practitioner id as the guard keys it: a non-empty string, at most
    :data:`MAX_PRACTITIONER_LENGTH` characters, no control, format or
    surrogate characters, no surrounding whitespace, in Unicode NFC.

    Raises:
        InvalidPractitioner: anything else (the value is never echoed).
    """
    if not isinstance(value, str) or not value or len(value) > MAX_PRACTITIONER_LENGTH:
        raise InvalidPractitioner()
    if not value.isascii() or not value.isprintable():
        for ch in value:
            if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
                raise InvalidPractitioner()
        value = unicodedata.normalize("NFC", value)
    if value != value.strip() or len(value) > MAX_PRACTITIONER_LENGTH:
        raise InvalidPractitioner()
    return value


@dataclass(slots=True)
class Ticket:
    """One admitted lookup, between :meth:`Admissions.admit` and :meth:`Admissions.finish`.

    Attributes:
        practitioner: the practitioner id (validated).
        request: what the engine saw.
        canonical: the canonical NIR ('' when invalid).
        decision: what the engine decided (``None`` when the store was down).
        guarded: the store answered and the lookup counts (a miss is recorded).
        reason: the stated reason, if any.
        kind: the policy's name.
        decided: when the guard decided (its clock): every audit event of this
            lookup carries this time, also the one written after the lookup ran.
    """

    practitioner: str
    request: Request
    canonical: str
    decision: Decision | None
    guarded: bool
    reason: Reason | None
    kind: str | None
    decided: float = 0.0


@dataclass(slots=True)
class _Pending:
    practitioner: str
    request: Request
    canonical: str
    invalid: InvalidNIR | None
    reason: Reason | None
    kind: str | None


class Admissions:
    """The admission steps of one guard (internal; see :class:`~nirguard.LookupGuard`)."""

    __slots__ = (
        "_alert",
        "_audit",
        "_cohorts",
        "_down",
        "_engine",
        "_on_break_glass",
        "_patients",
        "_policy",
        "clock",
        "enforce",
        "fail_open",
        "metrics",
    )

    def __init__(
        self,
        engine: Engine,
        policy: QuotaPolicy | Callable[[str], QuotaPolicy],
        pseudonymiser: Pseudonymiser,
        *,
        audit: Callable[[AuditEvent], object] | None,
        alert: Callable[[Alert], object] | None,
        on_break_glass: Callable[[BreakGlass], object] | None,
        metrics: Metrics | None,
        clock: Callable[[], float],
        fail_open: bool,
        enforce: bool,
    ) -> None:
        self._engine = engine
        self._policy = policy
        self._patients = pseudonymiser
        self._cohorts = pseudonymiser.derive("cohort")
        self._audit = SafeCaller(audit, "audit")
        self._alert = SafeCaller(alert, "alert")
        self._on_break_glass = SafeCaller(on_break_glass, "on_break_glass")
        self.metrics = metrics
        self.clock = clock
        self.fail_open = fail_open
        self.enforce = enforce
        self._down = False

    # -- reading a call -------------------------------------------------------------------------

    def policy_for(self, practitioner: str) -> QuotaPolicy:
        """The policy of ``practitioner``.

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

    def _refuse_input(self, error: LookupDenied, practitioner: str, quota: str) -> LookupDenied:
        self._event(practitioner, "denied", quota=quota)
        if self.metrics is not None:
            self.metrics.decision("denied", quota, 0.0, kind=None, enforced=self.enforce)
        return error

    def _prepare(self, practitioner: object, nir_value: object, reason: object) -> _Pending:
        try:
            who = practitioner_id(practitioner)
        except InvalidPractitioner as exc:
            raise self._refuse_input(exc, "<invalid>", "practitioner") from None
        policy = self.policy_for(who)._compiled
        stated: Reason | None = None
        if reason is not None and reason != "":
            try:
                stated = Reason.of(reason)
            except InvalidReason as exc:
                raise self._refuse_input(exc, who, "reason") from None
        key = escape(who)
        try:
            canonical = validate(nir_value, strict=True)  # type: ignore[arg-type]
        except InvalidNIR as exc:
            return _Pending(who, Request(key, policy), "", exc, stated, policy.name)
        cohort = None
        if policy.needs_cohort:
            cohort = self._cohorts.pseudonymise_canonical(canonical[:10])
        patient = self._patients.pseudonymise_canonical(canonical)
        request = Request(key, policy, patient, cohort, stated is not None)
        return _Pending(who, request, canonical, None, stated, policy.name)

    # -- admission ------------------------------------------------------------------------------

    def admit(self, practitioner: object, nir_value: object, reason: object = None) -> Ticket:
        """Decide one lookup; raise its refusal (unless in shadow mode).

        Raises:
            LookupDenied: refused (every subclass), or InvalidNIR.
        """
        start = time.perf_counter()
        pending = self._prepare(practitioner, nir_value, reason)
        engine = self._engine
        try:
            if pending.invalid is not None:
                decision = engine.invalid(pending.request)
            else:
                decision = engine.decide(pending.request)
        except engine.outages as exc:
            return self._unavailable(pending, exc, start)
        return self._conclude(pending, decision, start)

    async def aadmit(
        self, practitioner: object, nir_value: object, reason: object = None
    ) -> Ticket:
        """:meth:`admit` without blocking the event loop."""
        start = time.perf_counter()
        pending = self._prepare(practitioner, nir_value, reason)
        engine = self._engine
        try:
            if pending.invalid is not None:
                decision = await engine.ainvalid(pending.request)
            else:
                decision = await engine.adecide(pending.request)
        except engine.outages as exc:
            return self._unavailable(pending, exc, start)
        return self._conclude(pending, decision, start)

    def _conclude(self, pending: _Pending, decision: Decision, start: float) -> Ticket:
        if self._down:
            self._store_up()
        who, kind = pending.practitioner, pending.kind
        request = pending.request
        metrics = self.metrics
        if decision.lockout_started or decision.hot_alert or decision.outcome == "break_glass":
            self._alerts(pending, decision)
        denial = decision.denial()
        outcome = decision.outcome
        if metrics is not None:
            recorded = outcome if self.enforce or denial is None else WOULD[outcome]
            metrics.decision(
                recorded,
                decision.quota,
                time.perf_counter() - start,
                kind=kind,
                enforced=self.enforce,
            )
        ticket = Ticket(
            who, request, pending.canonical, decision, True, pending.reason, kind, self.clock()
        )
        if denial is not None:
            self._event(
                who,
                outcome if self.enforce else WOULD[outcome],
                request.patient,
                decision.quota,
                decision.retry_after,
                ticket,
            )
            if self.enforce:
                raise denial
            ticket.guarded = False  # the engine did not count it: neither is its miss
            return ticket
        if pending.invalid is not None:
            self._event(who, "invalid", None, "invalid_nirs", None, ticket)
            if self.enforce:
                raise pending.invalid
            ticket.guarded = False
            return ticket
        return ticket

    def _alerts(self, pending: _Pending, decision: Decision) -> None:
        now = self.clock()
        who, kind, metrics = pending.practitioner, pending.kind, self.metrics
        if decision.hot_alert:
            self._alert(
                Alert(
                    who,
                    "hot_cohort",
                    {
                        "cohort_heat": round(decision.heat, 2),
                        "cohort_expected": round(decision.expected, 2),
                    },
                    now,
                    None,
                    cohort=pending.request.cohort,
                    kind=kind,
                    enforced=self.enforce,
                    lockout=False,
                )
            )
            if metrics is not None:
                metrics.alert("hot_cohort", kind=kind, enforced=self.enforce)
        if decision.lockout_started and decision.quota is not None:
            self._alert(
                Alert(
                    who,
                    decision.quota,
                    decision.evidence,
                    now,
                    decision.retry_after,
                    kind=kind,
                    enforced=self.enforce,
                )
            )
            if metrics is not None:
                metrics.alert(decision.quota, kind=kind, enforced=self.enforce)
                metrics.lockout(decision.quota, decision.level, kind=kind, enforced=self.enforce)
        if decision.outcome == "break_glass" and pending.reason is not None:
            left = decision.break_glass_left
            policy = pending.request.policy
            self._on_break_glass(
                BreakGlass(
                    who,
                    pending.request.patient or "",
                    pending.reason,
                    now,
                    now + policy.break_glass_access,
                    left,
                    decision.quota or "",
                    kind=kind,
                    enforced=self.enforce,
                )
            )
            if metrics is not None:
                metrics.break_glass(pending.reason.code.value, kind=kind)
            if left is not None and left <= BREAK_GLASS_ALERT_LEFT:
                self._alert(
                    Alert(
                        who,
                        "break_glass",
                        {"break_glass_left": left},
                        now,
                        None,
                        kind=kind,
                        enforced=self.enforce,
                        lockout=False,
                    )
                )
                if metrics is not None:
                    metrics.alert("break_glass", kind=kind, enforced=self.enforce)

    def _unavailable(self, pending: _Pending, exc: BaseException, start: float) -> Ticket:
        self._store_down(exc)
        who = pending.practitioner
        request = pending.request
        ticket = Ticket(
            who, request, pending.canonical, None, False, pending.reason, pending.kind, self.clock()
        )
        open_ = self.fail_open or not self.enforce
        outcome = "unguarded" if open_ else "unavailable"
        if pending.invalid is not None:
            outcome = "invalid"
        if self.metrics is not None:
            self.metrics.decision(
                outcome, None, time.perf_counter() - start, kind=pending.kind, enforced=self.enforce
            )
        self._event(
            who, outcome, request.patient, "invalid_nirs" if pending.invalid else None, None, ticket
        )
        if pending.invalid is not None and self.enforce:
            raise pending.invalid
        if open_:
            return ticket
        raise GuardUnavailable() from None

    # -- after the lookup -----------------------------------------------------------------------

    @staticmethod
    def judge(ticket: Ticket, result: object, is_miss: Callable[[Any], bool]) -> bool:
        """Whether ``result`` says "no such patient" (a failing test counts as no miss)."""
        if not ticket.guarded:
            return False
        try:
            return bool(is_miss(result))
        except Exception as exc:
            _log.warning(
                "nirguard is_miss raised %s; result not counted as a miss", type(exc).__name__
            )
            return False

    @staticmethod
    def judge_error(ticket: Ticket, error: BaseException, miss_on: MissTest | None) -> bool:
        """Whether the lookup's exception says "no such patient" (``miss_on``)."""
        if not ticket.guarded or miss_on is None or not isinstance(error, Exception):
            return False
        try:
            return bool(miss_on(error))
        except Exception as exc:
            _log.warning("nirguard miss_on raised %s; not counted as a miss", type(exc).__name__)
            return False

    def finish(self, ticket: Ticket, miss: bool) -> None:
        """Count a miss and audit the lookup that ran."""
        if miss:
            try:
                self._engine.record_miss(ticket.request)
            except Exception as exc:
                _log.warning("nirguard could not record a miss (%s)", type(exc).__name__)
        self._finished(ticket, miss)

    async def afinish(self, ticket: Ticket, miss: bool) -> None:
        """:meth:`finish` without blocking the event loop."""
        if miss:
            try:
                await self._engine.arecord_miss(ticket.request)
            except Exception as exc:
                _log.warning("nirguard could not record a miss (%s)", type(exc).__name__)
        self._finished(ticket, miss)

    def _finished(self, ticket: Ticket, miss: bool) -> None:
        decision = ticket.decision
        if not ticket.guarded or decision is None:
            return  # audited at admission (refused in shadow mode, invalid, or store down)
        if decision.outcome == "break_glass":
            outcome = "break_glass"
        else:
            outcome = "miss" if miss else "allowed"
        self._event(
            ticket.practitioner, outcome, ticket.request.patient, decision.quota, None, ticket
        )

    # -- audit and store state ------------------------------------------------------------------

    def _event(
        self,
        practitioner: str,
        outcome: str,
        patient: str | None = None,
        quota: str | None = None,
        retry_after: float | None = None,
        ticket: Ticket | None = None,
    ) -> None:
        if not self._audit:
            return
        decision = ticket.decision if ticket is not None else None
        signals: tuple[str, ...] = ()
        evidence = None
        if decision is not None:
            if decision.hot:
                signals = ("hot_cohort",)
            evidence = decision.evidence or None
        when = ticket.decided if ticket is not None else self.clock()
        self._audit(
            AuditEvent(
                time=datetime.fromtimestamp(when, tz=timezone.utc),
                practitioner=practitioner,
                patient=patient,
                outcome=outcome,  # type: ignore[arg-type]
                quota=quota,
                retry_after=retry_after,
                cohort=ticket.request.cohort if ticket is not None else None,
                kind=ticket.kind if ticket is not None else None,
                reason=ticket.reason.code if ticket is not None and ticket.reason else None,
                signals=signals,
                evidence=evidence,
            )
        )

    def store_error(self, exc: BaseException) -> GuardUnavailable:
        """Note an outage seen by an admin call; the error to raise."""
        self._store_down(exc)
        return GuardUnavailable()

    def _store_down(self, exc: BaseException) -> None:
        """Log a store failure once per outage (type only: messages may hold a URI)."""
        if not self._down:
            self._down = True
            _log.warning(
                "nirguard quota store unavailable (%s); lookups are %s until it answers again",
                type(exc).__name__,
                "let through unguarded" if self.fail_open or not self.enforce else "refused",
            )

    def _store_up(self) -> None:
        self._down = False
        _log.warning("nirguard quota store reachable again")
