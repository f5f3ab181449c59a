"""The tables of the SQL audit store (SQLAlchemy Core), under a prefix of the portal's choice.

One row per guarded lookup (``events``), per alert (``alerts``), per case (``cases``: one
row per incident of an account, kept up to date by the writer), per portal notice
(``notices``), per break-glass grant (``break_glass``, the only table that holds free text)
and per officer action (``actions``). Two tables are pre-aggregated by the writer so that
pages stay fast on a long trail: ``firsts`` (the first time each account saw each patient:
its new patients per day) and ``daily`` (lookups per day and outcome, alerts per day).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["Tables", "make_tables"]

#: Integer primary keys: 64-bit on PostgreSQL, SQLite's rowid alias on SQLite.
_ID = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class Tables:
    """The store's tables, bound to one :class:`~sqlalchemy.MetaData`."""

    metadata: MetaData
    events: Table
    firsts: Table
    daily: Table
    alerts: Table
    cases: Table
    notices: Table
    break_glass: Table
    actions: Table


def _sealed() -> tuple[Column[int], Column[str]]:
    # seq: order of sealing within this writer; record: the sealed JSON record (MAC chain)
    return Column("seq", BigInteger, nullable=False), Column("record", Text, nullable=True)


def _trail(md: MetaData, p: str) -> tuple[Table, Table, Table]:
    events = Table(
        f"{p}events",
        md,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("time", Float, nullable=False),
        Column("practitioner", String(256), nullable=False),
        Column("patient", String(80)),
        Column("outcome", String(32), nullable=False),
        Column("quota", String(64)),
        Column("retry_after", Float),
        Column("cohort", String(80)),
        Column("kind", String(64)),
        Column("reason", String(16)),
        Column("signals", String(256)),
        Column("evidence", Text),
        Column("case_id", String(96)),
        Column("actor", String(256)),
        Column("note", Text),
        Column("writer", String(64), nullable=False),
        *_sealed(),
        Index(f"{p}ev_practitioner_time", "practitioner", "time"),
        Index(f"{p}ev_patient", "patient"),
        Index(f"{p}ev_time", "time"),
        Index(f"{p}ev_outcome_time", "outcome", "time"),
    )
    firsts = Table(
        f"{p}firsts",
        md,
        Column("practitioner", String(256), primary_key=True),
        Column("patient", String(80), primary_key=True),
        Column("time", Float, nullable=False),
        Index(f"{p}fi_practitioner_time", "practitioner", "time"),
    )
    daily = Table(
        f"{p}daily",
        md,
        Column("day", Integer, primary_key=True),
        Column("what", String(48), primary_key=True),
        Column("count", BigInteger, nullable=False),
    )
    return events, firsts, daily


def _cases(md: MetaData, p: str) -> tuple[Table, Table, Table]:
    alerts = Table(
        f"{p}alerts",
        md,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("case_id", String(96), nullable=False),
        Column("practitioner", String(256), nullable=False),
        Column("signal", String(64), nullable=False),
        Column("evidence", Text),
        Column("time", Float, nullable=False),
        Column("retry_after", Float),
        Column("kind", String(64)),
        Column("enforced", Boolean, nullable=False),
        Column("lockout", Boolean, nullable=False),
        Index(f"{p}al_case", "case_id"),
        Index(f"{p}al_practitioner_time", "practitioner", "time"),
        Index(f"{p}al_lockout_time", "lockout", "time"),
    )
    cases = Table(
        f"{p}cases",
        md,
        Column("case_id", String(96), primary_key=True),
        Column("practitioner", String(256), nullable=False),
        Column("opened", Float, nullable=False),
        Column("last_alert", Float, nullable=False),
        Column("alerts", Integer, nullable=False),
        Column("signals", String(256), nullable=False),
        Column("lockout", Boolean, nullable=False),
        Column("enforced", Boolean, nullable=False),
        Column("state", String(16), nullable=False),
        Column("note", Text),
        Column("updated", Float),
        Column("updated_by", String(256)),
        Index(f"{p}ca_state_last", "state", "last_alert"),
        Index(f"{p}ca_last", "last_alert"),
        Index(f"{p}ca_practitioner", "practitioner"),
    )
    notices = Table(
        f"{p}notices",
        md,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("time", Float, nullable=False),
        Column("signal", String(64), nullable=False),
        Column("cohort", String(80)),
        Column("evidence", Text),
        Column("kind", String(64)),
        Index(f"{p}no_time", "time"),
    )
    return alerts, cases, notices


def _review(md: MetaData, p: str) -> tuple[Table, Table]:
    break_glass = Table(
        f"{p}break_glass",
        md,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("time", Float, nullable=False),
        Column("practitioner", String(256), nullable=False),
        Column("patient", String(80), nullable=False),
        Column("code", String(16), nullable=False),
        Column("text", Text),
        Column("expires", Float),
        Column("budget_left", Integer),
        Column("quota", String(64)),
        Column("kind", String(64)),
        Column("enforced", Boolean, nullable=False),
        Column("verdict", String(24)),
        Column("verdict_by", String(256)),
        Column("verdict_note", Text),
        Column("verdict_time", Float),
        Index(f"{p}bg_time", "time"),
        Index(f"{p}bg_verdict_time", "verdict", "time"),
    )
    actions = Table(
        f"{p}actions",
        md,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("time", Float, nullable=False),
        Column("officer", String(256), nullable=False),
        Column("action", String(32), nullable=False),
        Column("target", String(256)),
        Column("reason", Text),
        Column("writer", String(64), nullable=False),
        *_sealed(),
        Index(f"{p}ac_officer_action_time", "officer", "action", "time"),
        Index(f"{p}ac_time", "time"),
    )
    return break_glass, actions


def make_tables(prefix: str, schema: str | None) -> Tables:
    """The store's tables named ``<prefix><name>``, in ``schema`` (PostgreSQL) if given."""
    md = MetaData(schema=schema)
    return Tables(md, *_trail(md, prefix), *_cases(md, prefix), *_review(md, prefix))
