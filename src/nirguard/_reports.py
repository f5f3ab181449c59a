"""What one lookup reports, and where it goes: audit events, alerts, notices, grants, metrics.

:class:`Reports` holds the guard's hooks (each a :class:`~nirguard._hooks.Hook`,
on a worker thread by default) and its metrics recorder. The lookup path
(:mod:`nirguard._lookup`) calls it with what it decided; this module builds
the reports, masks NIR-shaped runs in the text it writes, and hands them over
without waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, Protocol

from nirguard._engine import Decision
from nirguard._hooks import DEFAULT_CAPACITY, Hook
from nirguard._redact import mask_nir_runs
from nirguard.alerts import Alert, BreakGlass, Notice, case_id, log_alert, log_notice
from nirguard.audit import AuditEvent, JsonLinesSink, does_io, event_json
from nirguard.reasons import Reason, ReasonCode

__all__ = ["BREAK_GLASS_ALERT_LEFT", "Metrics", "Reports", "Said"]

_log = logging.getLogger("nirguard.guard")

#: Seconds the audit worker lets events gather after a batch (one write per batch).
AUDIT_LINGER: Final = 0.02
#: A break-glass alert is raised when this many grants or fewer are left.
BREAK_GLASS_ALERT_LEFT: Final = 1


class Metrics(Protocol):
    """What the lookup path records (``nirguard.metrics.GuardMetrics``)."""

    def decision(
        self, outcome: str, quota: str | None, seconds: float, *, kind: str | None, enforced: bool
    ) -> None: ...

    def alert(self, signal: str, *, kind: str | None, enforced: bool = True) -> None: ...

    def notice(self, signal: str, *, kind: str | None) -> None: ...

    def lockout(
        self, quota: str, level: int, *, kind: str | None, enforced: bool = True
    ) -> None: ...

    def break_glass(self, reason: str, *, kind: str | None) -> None: ...

    def dropped(self, hook: str) -> None: ...


@dataclass(slots=True)
class Said:
    """What every audit event of one lookup shares (the ticket's side of it)."""

    practitioner: str
    decided: float
    patient: str | None = None
    cohort: str | None = None
    kind: str | None = None
    reason: ReasonCode | None = None
    case: str | None = None


def _fields(item: tuple[Any, ...]) -> dict[str, Any]:
    """The event's fields but its time and practitioner, from the request path's tuple."""
    said, outcome, quota, retry_after, signals, evidence, actor, note = item
    return {
        "outcome": outcome,
        "patient": said.patient,
        "quota": quota,
        "retry_after": retry_after,
        "cohort": said.cohort,
        "kind": said.kind,
        "reason": said.reason,
        "signals": signals,
        "evidence": evidence,
        "case": said.case,
        "actor": actor,
        "note": note,
    }


def _event(item: tuple[Any, ...]) -> AuditEvent:
    """Build the event on the hook worker (the request path only made the tuple)."""
    said = item[0]
    time = datetime.fromtimestamp(said.decided, tz=timezone.utc)
    return AuditEvent(time=time, practitioner=said.practitioner, **_fields(item))


def _line(item: tuple[Any, ...]) -> str:
    """The event's JSON line, made on the hook worker without the model when it can be
    (:func:`~nirguard.audit.event_json`): the audit file's way."""
    said = item[0]
    return event_json(said.decided, said.practitioner, **_fields(item))


def _audit_hook(sink: Callable[[AuditEvent], object] | None) -> dict[str, Any]:
    """How the audit hook delivers to ``sink``: the JSON-lines file gets its lines made
    directly; any other sink gets :class:`~nirguard.audit.AuditEvent` objects."""
    if type(sink) is JsonLinesSink:
        lines = sink.write_lines
        return {"func": lambda line: lines([line]), "prepare": _line, "batch": lines}
    return {"func": sink, "prepare": _event, "batch": _sink_batch(sink)}


def _sink_batch(sink: object) -> Callable[[list[Any]], object] | None:
    write_many = getattr(sink, "write_many", None)
    return write_many if callable(write_many) else None


class Reports:
    """The hooks and metrics of one guard (internal; see :class:`~nirguard.LookupGuard`)."""

    __slots__ = ("_alert", "_audit", "_break_glass", "_notice", "clock", "enforce", "metrics")

    def __init__(
        self,
        *,
        audit: Callable[[AuditEvent], object] | None,
        alert: Callable[[Alert], object] | bool | None,
        notice: Callable[[Notice], object] | bool | None,
        on_break_glass: Callable[[BreakGlass], object] | None,
        metrics: Metrics | None,
        clock: Callable[[], float],
        enforce: bool,
        background: bool,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.metrics = metrics
        self.clock = clock
        self.enforce = enforce
        dropped = metrics.dropped if metrics is not None else None

        def hook(func: Any, what: str, **more: Any) -> Hook:
            return Hook(
                func, what, background=background, capacity=capacity, dropped=dropped, **more
            )

        self._audit = Hook(
            what="audit",
            background=background and does_io(audit),
            capacity=capacity,
            dropped=dropped,
            linger=AUDIT_LINGER,
            **_audit_hook(audit),
        )
        self._alert = hook(log_alert if alert is None or alert is True else alert or None, "alert")
        self._notice = hook(
            log_notice if notice is None or notice is True else notice or None, "notice"
        )
        self._break_glass = hook(on_break_glass, "break_glass")

    @property
    def hooks(self) -> tuple[Hook, ...]:
        """The four hooks, audit first."""
        return (self._audit, self._alert, self._notice, self._break_glass)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every report handed over has been delivered; ``False`` on timeout."""
        return all([hook.flush(timeout) for hook in self.hooks])

    def close(self, timeout: float | None = 5.0) -> bool:
        """Flush and stop the hook workers (a later report starts them again)."""
        return all([hook.close(timeout) for hook in self.hooks])

    # -- audit ----------------------------------------------------------------------------------

    def audit(
        self,
        said: Said,
        outcome: str,
        quota: str | None = None,
        retry_after: float | None = None,
        decision: Decision | None = None,
        *,
        actor: str | None = None,
        note: str | None = None,
    ) -> None:
        """Hand one audit event over (built on the worker)."""
        if not self._audit:
            return
        signals: tuple[str, ...] = ()
        evidence = None
        if decision is not None:
            if decision.hot:
                signals = ("hot_cohort",)
            evidence = decision.evidence or None
        self._audit((said, outcome, quota, retry_after, signals, evidence, actor, note))

    def decided(self, outcome: str, quota: str | None, seconds: float, kind: str | None) -> None:
        """Count one decision in the metrics."""
        if self.metrics is not None:
            self.metrics.decision(outcome, quota, seconds, kind=kind, enforced=self.enforce)

    # -- alerts, notices, grants ----------------------------------------------------------------

    def case(self, practitioner: str, decision: Decision, now: float) -> str:
        """The case id of the incident ``decision`` belongs to (its own, without one)."""
        incident = decision.incident
        return case_id(practitioner, incident if incident is not None else now)

    def signals(self, said: Said, decision: Decision, reason: Reason | None, access: float) -> None:
        """Raise what ``decision`` calls for: the account's alert, a notice, a grant."""
        now = self.clock()
        opens = decision.alert
        if decision.hot_alert:
            self._hot_cohort(said, decision, now)
        if opens and decision.quota is not None:
            self.raise_alert(said, decision.quota, decision, now)
        if decision.lockout_started and decision.quota is not None and self.metrics is not None:
            self.metrics.lockout(
                decision.quota, decision.level, kind=said.kind, enforced=self.enforce
            )
        if decision.outcome == "break_glass" and reason is not None:
            self._granted(said, decision, reason, now, access)

    def raise_alert(self, said: Said, signal: str, decision: Decision, now: float) -> None:
        """One :class:`~nirguard.alerts.Alert` about ``said.practitioner``."""
        lockout = decision.lockout_started
        self._alert(
            Alert(
                mask_nir_runs(said.practitioner),
                signal,
                decision.evidence if signal == decision.quota else self._left(decision),
                now,
                decision.retry_after if lockout else None,
                case=said.case or self.case(said.practitioner, decision, now),
                kind=said.kind,
                enforced=self.enforce,
                lockout=lockout and signal == decision.quota,
            )
        )
        if self.metrics is not None:
            self.metrics.alert(signal, kind=said.kind, enforced=self.enforce)

    @staticmethod
    def _left(decision: Decision) -> dict[str, float]:
        left = decision.break_glass_left
        return {} if left is None else {"break_glass_left": left}

    def _hot_cohort(self, said: Said, decision: Decision, now: float) -> None:
        evidence = {
            "cohort_heat": round(decision.heat, 2),
            "cohort_expected": round(decision.expected, 2),
        }
        self._notice(Notice("hot_cohort", said.cohort, evidence, now, said.kind))
        if self.metrics is not None:
            self.metrics.notice("hot_cohort", kind=said.kind)

    def _granted(
        self, said: Said, decision: Decision, reason: Reason, now: float, access: float
    ) -> None:
        left = decision.break_glass_left
        self._break_glass(
            BreakGlass(
                mask_nir_runs(said.practitioner),
                said.patient or "",
                reason,
                now,
                now + access,
                left,
                decision.quota or "",
                kind=said.kind,
                enforced=self.enforce,
            )
        )
        if self.metrics is not None:
            self.metrics.break_glass(reason.code.value, kind=said.kind)
        if left is not None and left <= BREAK_GLASS_ALERT_LEFT:
            self.raise_alert(said, "break_glass", decision, now)
