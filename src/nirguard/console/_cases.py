"""Pages about accounts: the cases (alerts per account per incident) and the locked accounts."""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from nirguard.console._app import Context
from nirguard.console._charts import timeline
from nirguard.console._security import Officer

__all__ = ["by_account", "case_page", "case_update", "cases_page", "locked_page", "unlock"]

_log = logging.getLogger("nirguard.console")
DAY = 86400.0
STATES = ("open", "acknowledged", "closed")
PAGE = 50
_WINDOW = 35  # days drawn on a case's timeline


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return max(1, min(int(raw), 10_000)) if raw.isdigit() else 1


def _evidence(raw: str | None) -> dict[str, float]:
    return json.loads(raw) if raw else {}


def by_account(cases: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Cases grouped under their account, in the order of each account's latest case.

    One row per (account, case) still, but an account's cases sit together, so that two
    cases of one account (two incidents, or one incident that an engine without incidents
    split at each lockout) read as one account's story, never as two unrelated accounts.

    >>> rows = [{"practitioner": "a", "case_id": "c3"}, {"practitioner": "b", "case_id": "c2"},
    ...         {"practitioner": "a", "case_id": "c1"}]
    >>> [[c["case_id"] for c in group] for group in by_account(rows)]
    [['c3', 'c1'], ['c2']]
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        groups.setdefault(case["practitioner"], []).append(case)
    return list(groups.values())


def cases_page(ctx: Context, request: Request, officer: Officer, form: dict[str, str]) -> Response:
    """Cases, latest alert first, grouped under their account, filtered by state, 50 a page."""
    state = request.query_params.get("state", "open")
    page = _page_number(request)
    rows = ctx.reader.cases(None if state == "all" else state if state in STATES else "open",
                            PAGE + 1, (page - 1) * PAGE)  # fmt: skip
    for row in rows:
        row["link"] = quote(row["case_id"], safe="")
    return ctx.render(
        request, officer, "cases.html", accounts=by_account(rows[:PAGE]), state=state,
        states=STATES, counts=ctx.reader.case_counts(), page_no=page, more=len(rows) > PAGE,
    )  # fmt: skip


def _baseline(new: dict[int, int], first: int, opened_day: int) -> float | None:
    before = [new[d] for d in range(first, opened_day) if new.get(d)]
    return sum(before) / len(before) if before else None


def _guard_baseline(ctx: Context, practitioner: str) -> tuple[dict[str, float] | None, Any]:
    if ctx.guard is None:
        return None, None
    try:
        status = ctx.guard.status(practitioner)
    except Exception as exc:  # the store may be down: the page still shows the trail
        return None, type(exc).__name__
    return getattr(status, "baseline", None), status


def case_page(ctx: Context, request: Request, officer: Officer, form: dict[str, str]) -> Response:
    """One case: its alerts and evidence, the account's timeline against its own normal."""
    case = ctx.reader.case(request.path_params["case_id"])
    if case is None:
        return ctx.refuse(request, officer, 404, "No such case.")
    practitioner = case["practitioner"]
    opened_day = int(case["opened"] // DAY)
    today = int(ctx.clock() // DAY)
    last = min(max(today, opened_day), int(case["last_alert"] // DAY) + 3)
    first = last - _WINDOW + 1
    new = ctx.reader.new_patients_per_day(practitioner, first - 28, last)
    refused = ctx.reader.refusals_per_day(practitioner, first, last)
    own = _baseline(new, first - 28, opened_day)
    guard_baseline, status = _guard_baseline(ctx, practitioner)
    days = list(range(first, last + 1))
    charts = [
        timeline(days, [("new patients", new, "#1f5fa8")], baseline=own, baseline_label="own normal",
                 title="New patients per day; dashed: the account's own normal; shaded: the incident",
                 mark_from=opened_day),
        timeline(days, [("refused lookups", refused, "#c0392b")], title="Refused lookups per day",
                 mark_from=opened_day, height=120),
    ]  # fmt: skip
    alerts = ctx.reader.case_alerts(case["case_id"])
    for alert in alerts:
        alert["evidence"] = _evidence(alert["evidence"])
    others = [c for c in ctx.reader.cases_of(practitioner) if c["case_id"] != case["case_id"]]
    for other in others:
        other["link"] = quote(other["case_id"], safe="")
    return ctx.render(
        request, officer, "case.html", case=case, link=quote(case["case_id"], safe=""),
        alerts=alerts, others=others, charts=charts, own=own, guard_baseline=guard_baseline,
        status=status if not isinstance(status, str) else None,
        status_error=status if isinstance(status, str) else None,
        events=ctx.reader.account_events(practitioner, 20), states=STATES,
    )  # fmt: skip


def case_update(ctx: Context, request: Request, officer: Officer, form: dict[str, str]) -> Response:
    """An officer moves a case (open, acknowledged, closed) and writes its note."""
    case_id = request.path_params["case_id"]
    state = form.get("state", "")
    note = (form.get("note") or "").strip()[:2000] or None
    if state not in STATES:
        return ctx.refuse(request, officer, 400, "Unknown case state.")
    if ctx.reader.case(case_id) is None:
        return ctx.refuse(request, officer, 404, "No such case.")
    ctx.store.record_action(officer.name, "case", case_id, f"{state}: {note or ''}".strip())
    ctx.reader.set_case(case_id, state, note, officer.name, ctx.clock())
    return ctx.back(request, f"/cases/{quote(case_id, safe='')}")


def locked_page(ctx: Context, request: Request, officer: Officer, form: dict[str, str]) -> Response:
    """Accounts locked now (lockouts of the last 30 days in the trail, checked with the guard)."""
    now = ctx.clock()
    accounts = []
    for row in ctx.reader.lockouts_since(now - 30 * DAY, 100):
        row["status"], row["error"] = None, None
        if ctx.guard is not None:
            try:
                row["status"] = ctx.guard.status(row["practitioner"])
            except Exception as exc:
                row["error"] = type(exc).__name__
            if row["status"] is not None and not row["status"].locked:
                continue
        row["link"] = None if row["case_id"] is None else quote(row["case_id"], safe="")
        accounts.append(row)
    return ctx.render(
        request, officer, "locked.html", accounts=accounts, has_guard=ctx.guard is not None,
        unlocks=ctx.reader.actions(20, "unlock"), done=request.query_params.get("done"),
    )  # fmt: skip


def _unlock(guard: Any, practitioner: str, officer: str, reason: str) -> None:
    parameters = inspect.signature(guard.unlock).parameters
    if "by" in parameters and "reason" in parameters:
        guard.unlock(practitioner, by=officer, reason=reason)
    else:  # a guard from before contract 4: the console's own record is the audit
        guard.unlock(practitioner)


def unlock(ctx: Context, request: Request, officer: Officer, form: dict[str, str]) -> Response:
    """Lift a lockout, with a stated reason (recorded first: no unlock goes unrecorded)."""
    practitioner = (form.get("practitioner") or "").strip()
    reason = (form.get("reason") or "").strip()[:500]
    if ctx.guard is None:
        return ctx.refuse(request, officer, 409, "This console has no guard to unlock with.")
    if not practitioner or len(reason) < 5:
        return ctx.refuse(
            request, officer, 400, "Say why the account is unlocked (5 characters or more)."
        )
    ctx.store.record_action(officer.name, "unlock", practitioner, reason)
    try:
        _unlock(ctx.guard, practitioner, officer.name, reason)
    except Exception as exc:
        ctx.store.record_action(officer.name, "unlock_failed", practitioner, type(exc).__name__)
        return ctx.refuse(
            request, officer, 503, "The guard could not unlock the account; try again."
        )
    return ctx.back(request, "/locked?done=unlocked")
