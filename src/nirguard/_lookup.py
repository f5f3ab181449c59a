"""The one lookup path: admit -> run -> finish, sync and async.

Every guarded lookup goes through :class:`LookupPath`, whatever wraps it
(:mod:`nirguard._wrap`): ``guard.protect``, ``guard.lookup()`` (a context
manager) and the web integrations (which open a lookup and finish it when
the endpoint records its result or raises).

1. **admit** (:meth:`LookupPath.admit`, :meth:`~LookupPath.aadmit`): read the
   practitioner id, the policy, the NIR and the stated reason; ask the store
   for one atomic decision; raise the alerts; audit a refusal and raise it
   (in shadow mode: record what would have been refused, and go on);
2. **run**: the portal's lookup;
3. **finish** (:meth:`LookupPath.finish`, :meth:`~LookupPath.afinish`): count
   a miss, count the decision, audit what happened.

Reports (audit events, alerts, notices, grants) are handed to the hooks
without waiting (:mod:`nirguard._reports`): a slow hook never changes a
decision nor its timing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from nirguard._baseline import PLACES
from nirguard._engine import Decision, Engine, Request, escape, fingerprint
from nirguard._inputs import Policies, practitioner_id
from nirguard._names import WOULD
from nirguard._reports import Reports, Said
from nirguard._sequence import neighbours
from nirguard.errors import GuardUnavailable, InvalidNIR, InvalidPractitioner, InvalidReason
from nirguard.nir import validate
from nirguard.pseudonym import Pseudonymiser
from nirguard.reasons import Reason

__all__ = ["LookupPath", "Ticket"]

_log = logging.getLogger("nirguard.guard")

_INVALID = "<invalid>"


@dataclass(slots=True)
class Ticket:
    """One admitted lookup, between admit and finish.

    Attributes:
        said: what its audit events share (practitioner, time, pseudonyms, case).
        request: what the engine saw (``None``: the practitioner id was unusable).
        canonical: the canonical NIR ('' when invalid).
        decision: what the engine decided (``None`` when the store was down).
        guarded: the store answered and the lookup counts (its miss is recorded).
        reason: the stated reason, if any.
        seconds: how long the admission took (the decision's duration metric).
        finished: finish has run (a lookup is finished once).
    """

    said: Said
    request: Request | None
    canonical: str
    decision: Decision | None
    guarded: bool
    reason: Reason | None
    seconds: float = 0.0
    finished: bool = False


@dataclass(slots=True)
class _Call:
    who: str
    request: Request | None
    canonical: str
    invalid: InvalidNIR | None
    reason: Reason | None
    kind: str | None


class LookupPath:
    """The admission and finishing steps of one guard (internal)."""

    __slots__ = (
        "_cohorts",
        "_down",
        "_engine",
        "_patients",
        "_places",
        "_sessions",
        "fail_open",
        "folded",
        "policies",
        "reports",
    )

    def __init__(
        self,
        engine: Engine,
        policies: Policies,
        pseudonymiser: Pseudonymiser,
        reports: Reports,
        *,
        fail_open: bool,
        folded: bool,
    ) -> None:
        self._engine = engine
        self.policies = policies
        self._patients = pseudonymiser
        self._cohorts = pseudonymiser.derive("cohort")
        self._places = pseudonymiser.derive("place")
        self._sessions = pseudonymiser.derive("session")
        self.reports = reports
        self.fail_open = fail_open
        self.folded = folded
        self._down = False

    @property
    def enforce(self) -> bool:
        """``False`` in shadow mode."""
        return self.reports.enforce

    # -- reading a call -------------------------------------------------------------------------

    def _refuse_input(self, who: str, quota: str) -> None:
        """Audit an input the guard cannot use (refused, or in shadow mode only recorded)."""
        outcome = "denied" if self.enforce else "would_deny"
        self.reports.audit(Said(who, self.reports.clock()), outcome, quota)
        self.reports.decided(outcome, quota, 0.0, None)

    def _session(self, session: object) -> bytes:
        """The fingerprint of the keyed pseudonym of the portal's session id (b"": none)."""
        if session is None or session == "":
            return b""
        if not isinstance(session, str):
            raise TypeError("session must be a str (the portal's own session id) or None")
        return fingerprint(self._sessions.pseudonymise_canonical(session))

    def _read(
        self, practitioner: object, nir_value: object, reason: object, session: object = None
    ) -> _Call:
        try:
            who = practitioner_id(practitioner, folded=self.folded)
        except InvalidPractitioner:
            self._refuse_input(_INVALID, "practitioner")
            if self.enforce:
                raise
            return _Call(_INVALID, None, "", None, None, None)
        stated: Reason | None = None
        if reason is not None and reason != "":
            try:
                stated = Reason.of(reason)
            except InvalidReason:
                self._refuse_input(who, "reason")
                if self.enforce:
                    raise
        policy = self.policies.compiled(who)
        key = escape(who)
        used = self._session(session)  # a non-str id is a bug whatever the policy
        if not policy.session_overlap:
            used = b""
        try:
            canonical = validate(nir_value, strict=True)  # type: ignore[arg-type]
        except InvalidNIR as exc:
            return _Call(who, Request(key, policy, session=used), "", exc, stated, policy.name)
        cohort = None
        if policy.needs_cohort:
            cohort = self._cohorts.pseudonymise_canonical(canonical[:10])
        patient = self._patients.pseudonymise_canonical(canonical)
        place = -1
        if policy.baseline is not None:  # the department of birth, keyed-hashed, 64 buckets
            place = fingerprint(self._places.pseudonymise_canonical(canonical[5:7]))[0] % PLACES
        near = b""
        if policy.sequence and policy.hot_cohort is not None:  # the walk's neighbours, by pseudonym
            near = neighbours(self._patients, canonical, patient)
        # positional: the named tuple's keywords cost more than the rest of the line
        request = Request(key, policy, patient, cohort, stated is not None, None, place, near, used)
        return _Call(who, request, canonical, None, stated, policy.name)

    # -- admit ----------------------------------------------------------------------------------

    def admit(
        self, practitioner: object, nir_value: object, reason: object = None, session: object = None
    ) -> Ticket:
        """Decide one lookup; raise its refusal (unless only recorded, in shadow mode).

        ``session``: the portal's id of the practitioner's login session (or device), a
        str; ``None``: not known (the ``session_overlap`` signal is then not checked).

        Raises:
            LookupDenied: refused (every subclass), InvalidNIR included.
            TypeError: ``session`` is neither a str nor ``None``.
        """
        start = time.perf_counter()
        call = self._read(practitioner, nir_value, reason, session)
        request, engine = call.request, self._engine
        if request is None:
            return self._unkeyed(call)
        try:
            if call.invalid is not None:
                decision = engine.invalid(request)
            else:
                decision = engine.decide(request)
        except engine.outages as exc:
            return self._unavailable(call, request, exc, start)
        return self._conclude(call, request, decision, start)

    async def aadmit(
        self, practitioner: object, nir_value: object, reason: object = None, session: object = None
    ) -> Ticket:
        """:meth:`admit` without blocking the event loop."""
        start = time.perf_counter()
        call = self._read(practitioner, nir_value, reason, session)
        request, engine = call.request, self._engine
        if request is None:
            return self._unkeyed(call)
        try:
            if call.invalid is not None:
                decision = await engine.ainvalid(request)
            else:
                decision = await engine.adecide(request)
        except engine.outages as exc:
            return self._unavailable(call, request, exc, start)
        return self._conclude(call, request, decision, start)

    def _unkeyed(self, call: _Call) -> Ticket:
        # Shadow mode with an unusable practitioner id: recorded, run unguarded.
        said = Said(call.who, self.reports.clock())
        return Ticket(said, None, call.canonical, None, False, call.reason)

    def _conclude(self, call: _Call, request: Request, decision: Decision, start: float) -> Ticket:
        if self._down:
            self._store_up()
        reports = self.reports
        said = Said(
            call.who,
            reports.clock(),
            request.patient,
            request.cohort,
            call.kind,
            call.reason.code if call.reason is not None else None,
        )
        if decision.incident is not None or decision.alert:
            said.case = reports.case(call.who, decision, said.decided)
        if (
            decision.alert
            or decision.lockout_started
            or decision.hot_alert
            or decision.outcome == "break_glass"
        ):
            reports.signals(said, decision, call.reason, request.policy.break_glass_access)
        seconds = time.perf_counter() - start
        ticket = Ticket(said, request, call.canonical, decision, True, call.reason, seconds)
        denial = decision.denial()
        if denial is not None:
            outcome = "lockout" if decision.lockout_started else decision.outcome
            if not self.enforce:
                outcome = WOULD[outcome]
            reports.audit(said, outcome, decision.quota, decision.retry_after, decision)
            reports.decided(outcome, decision.quota, seconds, call.kind)
            ticket.guarded = ticket.finished = False
            if self.enforce:
                raise denial
            if call.invalid is not None:
                raise call.invalid  # shadow mode answers as enforcement would: 422
            return ticket
        if call.invalid is not None:
            reports.audit(said, "invalid", "invalid_nirs", None, decision)
            reports.decided("invalid", "invalid_nirs", seconds, call.kind)
            raise call.invalid
        return ticket

    def _unavailable(
        self, call: _Call, request: Request, exc: BaseException, start: float
    ) -> Ticket:
        self._store_down(exc)
        reports = self.reports
        said = Said(call.who, reports.clock(), request.patient, request.cohort, call.kind)
        ticket = Ticket(said, request, call.canonical, None, False, call.reason)
        seconds = time.perf_counter() - start
        if call.invalid is not None:
            reports.audit(said, "invalid", "invalid_nirs")
            reports.decided("invalid", "invalid_nirs", seconds, call.kind)
            raise call.invalid
        open_ = self.fail_open or not self.enforce
        outcome = "unguarded" if open_ else "unavailable"
        reports.audit(said, outcome)
        reports.decided(outcome, None, seconds, call.kind)
        if open_:
            return ticket
        raise GuardUnavailable() from None

    # -- finish ---------------------------------------------------------------------------------

    def _finished(self, ticket: Ticket, miss: bool) -> None:
        decision = ticket.decision
        assert decision is not None
        if decision.outcome == "break_glass":
            outcome = "break_glass"
        else:
            outcome = "miss" if miss else "allowed"
        self.reports.audit(ticket.said, outcome, decision.quota, None, decision)
        self.reports.decided(outcome, decision.quota, ticket.seconds, ticket.said.kind)

    def finish(self, ticket: Ticket, miss: bool) -> None:
        """Count a miss, count the decision and audit the lookup that ran (once)."""
        if ticket.finished or not ticket.guarded:
            return
        ticket.finished = True
        if miss and ticket.request is not None:
            try:
                self._engine.record_miss(ticket.request)
            except Exception as exc:
                self._miss_lost(exc)
        self._finished(ticket, miss)

    async def afinish(self, ticket: Ticket, miss: bool) -> None:
        """:meth:`finish` without blocking the event loop."""
        if ticket.finished or not ticket.guarded:
            return
        ticket.finished = True
        if miss and ticket.request is not None:
            try:
                await self._engine.arecord_miss(ticket.request)
            except Exception as exc:
                self._miss_lost(exc)
        self._finished(ticket, miss)

    def finish_soon(self, ticket: Ticket, miss: bool) -> None:
        """Finish from synchronous code on an event loop: a miss on a remote store is
        recorded by a task (the loop is never blocked); anything else at once."""
        if miss and ticket.guarded and not ticket.finished and self._engine.kind != "memory":
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                task = loop.create_task(self.afinish(ticket, miss))
                _PENDING.add(task)
                task.add_done_callback(_PENDING.discard)
                return
        self.finish(ticket, miss)

    @staticmethod
    def _miss_lost(exc: BaseException) -> None:
        _log.warning("nirguard could not record a miss (%s)", type(exc).__name__)

    # -- store state ----------------------------------------------------------------------------

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


_PENDING: set[asyncio.Task[None]] = set()
