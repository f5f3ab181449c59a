"""Reading the SQL audit store: every query the console runs, each on an index.

Pages never scan the trail: cases and grants are paginated on ``(state, last_alert)`` and
``time``; an account's timeline reads its pre-aggregated first sightings (``firsts``) and its
own events on ``(practitioner, time)``; the portal view reads the ``daily`` counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, and_, func, select, union_all

from nirguard.audit_sql._rows import DAY, mask_nirs
from nirguard.audit_sql._schema import Tables

__all__ = ["Reader"]

_REFUSED = ("invalid", "denied", "locked", "lockout", "suspected", "reason_required", "unavailable")


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in result.mappings()]


class Reader:
    """The console's queries (each one connection, read only, except the officer's updates)."""

    def __init__(self, engine: Engine, tables: Tables) -> None:
        self._engine = engine
        self._t = tables

    def _all(self, stmt: Any) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return _rows(conn.execute(stmt))

    def _one(self, stmt: Any) -> Any:
        with self._engine.connect() as conn:
            return conn.execute(stmt).scalar()

    # -- counts ---------------------------------------------------------------------------------

    def count_events(self) -> int:
        """Audit events stored."""
        return int(self._one(select(func.count()).select_from(self._t.events)) or 0)

    def last_seq(self, writer: str) -> int:
        """The last sealing sequence number ``writer`` used (0 for a new writer)."""
        t = self._t
        stmt = select(
            func.max(t.events.c.seq).filter(t.events.c.writer == writer),
        )
        actions = select(func.max(t.actions.c.seq)).where(t.actions.c.writer == writer)
        return max(int(self._one(stmt) or 0), int(self._one(actions) or 0))

    # -- cases ----------------------------------------------------------------------------------

    def cases(self, state: str | None, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """Cases, the latest alert first; ``state`` filters (``open``, ``acknowledged``, ``closed``)."""
        c = self._t.cases
        stmt = select(c)
        if state is not None:
            stmt = stmt.where(c.c.state == state)
        return self._all(stmt.order_by(c.c.last_alert.desc()).limit(limit).offset(offset))

    def cases_of(self, practitioner: str, limit: int = 20) -> list[dict[str, Any]]:
        """One account's cases, whatever their state, the latest alert first."""
        c = self._t.cases
        stmt = select(c).where(c.c.practitioner == practitioner)
        return self._all(stmt.order_by(c.c.last_alert.desc()).limit(limit))

    def case_counts(self) -> dict[str, int]:
        """Cases per state."""
        c = self._t.cases
        rows = self._all(select(c.c.state, func.count().label("n")).group_by(c.c.state))
        return {row["state"]: int(row["n"]) for row in rows}

    def case(self, case_id: str) -> dict[str, Any] | None:
        """One case, or ``None``."""
        rows = self._all(select(self._t.cases).where(self._t.cases.c.case_id == case_id))
        return rows[0] if rows else None

    def case_alerts(self, case_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The alerts of one case, oldest first."""
        a = self._t.alerts
        return self._all(select(a).where(a.c.case_id == case_id).order_by(a.c.time).limit(limit))

    def set_case(self, case_id: str, state: str, note: str | None, by: str, now: float) -> bool:
        """Change a case's state and note; ``False`` if there is no such case."""
        c = self._t.cases
        with self._engine.begin() as conn:
            result = conn.execute(
                c.update()
                .where(c.c.case_id == case_id)
                .values(state=state, note=note, updated=now, updated_by=by)
            )
        return bool(result.rowcount)

    # -- an account's timeline ------------------------------------------------------------------

    def new_patients_per_day(
        self, practitioner: str, first_day: int, last_day: int
    ) -> dict[int, int]:
        """Patients the account saw for the first time, per day (POSIX day numbers)."""
        f = self._t.firsts
        day = func.floor(f.c.time / DAY).label("day")
        stmt = (
            select(day, func.count().label("n"))
            .where(
                f.c.practitioner == practitioner,
                f.c.time >= first_day * DAY,
                f.c.time < (last_day + 1) * DAY,
            )
            .group_by(day)
        )
        return {int(row["day"]): int(row["n"]) for row in self._all(stmt)}

    def refusals_per_day(self, practitioner: str, first_day: int, last_day: int) -> dict[int, int]:
        """Refused lookups of the account, per day."""
        e = self._t.events
        day = func.floor(e.c.time / DAY).label("day")
        stmt = (
            select(day, func.count().label("n"))
            .where(
                e.c.practitioner == practitioner,
                e.c.time >= first_day * DAY,
                e.c.time < (last_day + 1) * DAY,
                e.c.outcome.in_(_REFUSED),
            )
            .group_by(day)
        )
        return {int(row["day"]): int(row["n"]) for row in self._all(stmt)}

    def account_events(self, practitioner: str, limit: int = 50) -> list[dict[str, Any]]:
        """The account's latest audit events (latest first)."""
        e = self._t.events
        stmt = select(e).where(e.c.practitioner == practitioner).order_by(e.c.time.desc())
        return self._all(stmt.limit(limit))

    # -- locked accounts ------------------------------------------------------------------------

    def lockouts_since(self, since: float, limit: int) -> list[dict[str, Any]]:
        """Accounts whose lockout started since ``since``, the latest first: ``practitioner``,
        ``time`` of its latest lockout, ``case_id`` of its latest alert (``None`` if none).

        A lockout is read from the trail (an event ``lockout``) and from the alerts (an alert
        that started one): a guard whose incidents span several lockouts raises one alert per
        incident, so the alerts alone miss the later lockouts of an incident. Case ids are
        digests: their order means nothing, the latest alert's is taken.
        """
        e, a = self._t.events, self._t.alerts
        started = union_all(
            select(e.c.practitioner, e.c.time).where(e.c.outcome == "lockout", e.c.time >= since),
            select(a.c.practitioner, a.c.time).where(a.c.lockout.is_(True), a.c.time >= since),
        ).subquery("started")
        latest = a.alias("latest")
        case = (
            select(latest.c.case_id)
            .where(latest.c.practitioner == started.c.practitioner)
            .order_by(latest.c.time.desc(), latest.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        stmt = (
            select(
                started.c.practitioner,
                func.max(started.c.time).label("time"),
                case.label("case_id"),
            )
            .group_by(started.c.practitioner)
            .order_by(func.max(started.c.time).desc())
            .limit(limit)
        )
        return self._all(stmt)

    def actions(self, limit: int, action: str | None = None) -> list[dict[str, Any]]:
        """Officer actions, latest first."""
        ac = self._t.actions
        stmt = select(ac.c.time, ac.c.officer, ac.c.action, ac.c.target, ac.c.reason)
        if action is not None:
            stmt = stmt.where(ac.c.action == action)
        return self._all(stmt.order_by(ac.c.time.desc()).limit(limit))

    def count_actions(self, officer: str, action: str, since: float) -> int:
        """How many times ``officer`` did ``action`` since ``since`` (the NIR search limit)."""
        ac = self._t.actions
        stored = (mask_nirs(officer) or "")[:256]  # as record_action stores it
        stmt = select(func.count()).where(
            ac.c.officer == stored, ac.c.action == action, ac.c.time >= since
        )
        return int(self._one(stmt) or 0)

    # -- break-glass ----------------------------------------------------------------------------

    def grants(self, pending: bool, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """Break-glass grants, latest first; ``pending``: those without a verdict."""
        g = self._t.break_glass
        stmt = select(g)
        if pending:
            stmt = stmt.where(g.c.verdict.is_(None))
        return self._all(stmt.order_by(g.c.time.desc()).limit(limit).offset(offset))

    def set_verdict(
        self, grant_id: int, verdict: str, note: str | None, by: str, now: float
    ) -> bool:
        """Record an officer's verdict on a grant; ``False`` if there is no such grant."""
        g = self._t.break_glass
        with self._engine.begin() as conn:
            result = conn.execute(
                g.update()
                .where(g.c.id == grant_id)
                .values(verdict=verdict, verdict_note=note, verdict_by=by, verdict_time=now)
            )
        return bool(result.rowcount)

    def grants_between(self, start: float, end: float) -> list[dict[str, Any]]:
        """Every grant in ``[start, end)``, oldest first (the patient-notification export)."""
        g = self._t.break_glass
        stmt = select(g).where(g.c.time >= start, g.c.time < end).order_by(g.c.time)
        return self._all(stmt)

    # -- a patient's lookups, the portal --------------------------------------------------------

    def lookups_of(self, pseudonyms: Sequence[str], limit: int = 500) -> list[dict[str, Any]]:
        """Every lookup of a patient known by one of ``pseudonyms`` (one per key), latest first."""
        e = self._t.events
        stmt = (
            select(e.c.time, e.c.practitioner, e.c.outcome, e.c.quota, e.c.reason, e.c.kind)
            .where(e.c.patient.in_(list(pseudonyms)))
            .order_by(e.c.time.desc())
            .limit(limit)
        )
        return self._all(stmt)

    def daily(self, first_day: int, last_day: int) -> dict[tuple[int, str], int]:
        """Pre-aggregated counts per day: ``lookups``, ``outcome:<o>``, ``alerts``, ``notices``."""
        d = self._t.daily
        stmt = select(d).where(and_(d.c.day >= first_day, d.c.day <= last_day))
        return {(int(r["day"]), r["what"]): int(r["count"]) for r in self._all(stmt)}

    def notices(self, limit: int) -> list[dict[str, Any]]:
        """Portal-level notices (hot cohorts), latest first."""
        n = self._t.notices
        return self._all(select(n).order_by(n.c.time.desc()).limit(limit))

    def last_time(self) -> float | None:
        """Time of the latest audit event (the console's "now" on a replayed trail)."""
        value = self._one(select(func.max(self._t.events.c.time)))
        return None if value is None else float(value)

    # -- integrity and retention ----------------------------------------------------------------

    def sealed_lines(self) -> Iterator[str]:
        """Sealed records of both sealed tables, per writer in sealing order."""
        t = self._t
        parts = [
            select(tab.c.writer, tab.c.seq, tab.c.record).where(tab.c.record.is_not(None))
            for tab in (t.events, t.actions)
        ]
        query = union_all(*parts).subquery()
        stmt = select(query.c.record).order_by(query.c.writer, query.c.seq)
        with self._engine.connect() as conn:
            for (record,) in conn.execution_options(yield_per=1000).execute(stmt):
                yield record

    def purge(self, cutoff: float) -> dict[str, int]:
        """Delete rows older than ``cutoff`` (closed cases only); rows deleted per table."""
        t = self._t
        deleted: dict[str, int] = {}
        with self._engine.begin() as conn:
            for name, table in (
                ("events", t.events),
                ("firsts", t.firsts),
                ("alerts", t.alerts),
                ("notices", t.notices),
                ("break_glass", t.break_glass),
                ("actions", t.actions),
            ):
                deleted[name] = conn.execute(table.delete().where(table.c.time < cutoff)).rowcount
            deleted["cases"] = conn.execute(
                t.cases.delete().where(t.cases.c.last_alert < cutoff, t.cases.c.state == "closed")
            ).rowcount
            deleted["daily"] = conn.execute(
                t.daily.delete().where(t.daily.c.day < int(cutoff // DAY))
            ).rowcount
        return {k: int(v) for k, v in deleted.items()}
