"""Pages about people and the portal: break-glass review, a patient's lookups, the portal view."""

from __future__ import annotations

import csv
import io
import time

from starlette.requests import Request
from starlette.responses import Response

from nirguard import nir
from nirguard.console._app import Context
from nirguard.console._charts import timeline
from nirguard.console._security import Officer
from nirguard.errors import InvalidNIR
from nirguard.reasons import ReasonCode

__all__ = [
    "VERDICTS", "break_glass_export", "break_glass_page", "patient_form", "patient_search",
    "portal_page", "verdict",
]  # fmt: skip

DAY = 86400.0
VERDICTS = {"justified": "justified", "not_justified": "not justified", "escalate": "escalate"}
PAGE = 50
_REFUSED = ("invalid", "denied", "locked", "lockout", "suspected", "reason_required", "unavailable")


def _display(code: str) -> str:
    try:
        return ReasonCode(code).display
    except ValueError:
        return code


def break_glass_page(
    ctx: Context, request: Request, officer: Officer, form: dict[str, str]
) -> Response:
    """Grants, latest first (those awaiting a verdict by default); free text for officers only."""
    show = "all" if request.query_params.get("show") == "all" else "pending"
    raw = request.query_params.get("page", "1")
    page = max(1, min(int(raw), 10_000)) if raw.isdigit() else 1
    rows = ctx.reader.grants(show == "pending", PAGE + 1, (page - 1) * PAGE)
    for row in rows:
        row["display"] = _display(row["code"])
        if not officer.can_act:
            row["text"] = None
    return ctx.render(
        request, officer, "break_glass.html", grants=rows[:PAGE], show=show, page_no=page,
        more=len(rows) > PAGE, verdicts=VERDICTS,
    )  # fmt: skip


def verdict(ctx: Context, request: Request, officer: Officer, form: dict[str, str]) -> Response:
    """An officer's verdict on one grant: justified, not justified, escalate."""
    raw = request.path_params["grant_id"]
    choice = form.get("verdict", "")
    note = (form.get("note") or "").strip()[:2000] or None
    if choice not in VERDICTS or not raw.isdigit():
        return ctx.refuse(request, officer, 400, "Unknown verdict.")
    ctx.store.record_action(
        officer.name, "verdict", f"break_glass:{raw}", f"{choice}: {note or ''}".strip()
    )
    if not ctx.reader.set_verdict(int(raw), choice, note, officer.name, ctx.clock()):
        return ctx.refuse(request, officer, 404, "No such grant.")
    return ctx.back(request, "/break-glass")


def break_glass_export(
    ctx: Context, request: Request, officer: Officer, form: dict[str, str]
) -> Response:
    """CSV of the grants of the last ``days`` days, for the letters to patients.

    One row per grant: when, the patient's pseudonym (the portal maps it back to the
    person through its own records), the practitioner, the reason's code, the verdict.
    No free text: it is the practitioner's note to the security office, not to the patient.
    """
    raw = request.query_params.get("days", "30")
    days = max(1, min(int(raw), 3660)) if raw.isdigit() else 30
    now = ctx.clock()
    ctx.store.record_action(officer.name, "export", "break_glass", f"last {days} days")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "patient_pseudonym", "practitioner", "reason_code", "reason",
                     "verdict", "reviewed_by"])  # fmt: skip
    for row in ctx.reader.grants_between(now - days * DAY, now + 1):
        writer.writerow([
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["time"])), row["patient"],
            _cell(row["practitioner"]), row["code"], _display(row["code"]),
            row["verdict"] or "", _cell(row["verdict_by"] or ""),
        ])  # fmt: skip
    return Response(
        out.getvalue(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="break-glass.csv"'},
    )  # fmt: skip


def _cell(value: str) -> str:
    # no formula injection when the file is opened in a spreadsheet
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def patient_form(
    ctx: Context, request: Request, officer: Officer, form: dict[str, str]
) -> Response:
    """The search form: the NIR is posted, never put in a URL."""
    return ctx.render(request, officer, "patient.html", results=None, error=None,
                      limit=ctx.nir_searches_per_hour)  # fmt: skip


def patient_search(
    ctx: Context, request: Request, officer: Officer, form: dict[str, str]
) -> Response:
    """Every lookup of one person: who, when, outcome (the search itself is recorded)."""
    now = ctx.clock()
    done = ctx.reader.count_actions(officer.name, "nir_search", time.time() - 3600)
    if done >= ctx.nir_searches_per_hour:
        return ctx.render(request, officer, "patient.html", http_status=429, results=None,
                          error="Too many searches this hour: wait, or ask another officer.",
                          limit=ctx.nir_searches_per_hour)  # fmt: skip
    reason = (form.get("reason") or "").strip()[:500]
    value = form.get("nir") or ""
    if len(reason) < 5:
        return ctx.render(request, officer, "patient.html", http_status=400, results=None,
                          error="Say why you search this person (5 characters or more).",
                          limit=ctx.nir_searches_per_hour)  # fmt: skip
    try:
        canonical = nir.validate(value)
    except InvalidNIR:
        ctx.store.record_action(officer.name, "nir_search", None, reason, when=time.time())
        return ctx.render(request, officer, "patient.html", http_status=400, results=None,
                          error="This is not a valid NIR.", limit=ctx.nir_searches_per_hour)  # fmt: skip
    pseudonyms = [p.pseudonymise_canonical(canonical) for p in ctx.pseudonymisers]
    ctx.store.record_action(officer.name, "nir_search", pseudonyms[0], reason, when=time.time())
    rows = ctx.reader.lookups_of(pseudonyms)
    del value, canonical
    return ctx.render(
        request, officer, "patient.html", results=rows, error=None, searched=now,
        limit=ctx.nir_searches_per_hour, pseudonym=pseudonyms[0],
    )  # fmt: skip


def portal_page(ctx: Context, request: Request, officer: Officer, form: dict[str, str]) -> Response:
    """Hot-cohort notices, and refusal and alert rates per day."""
    raw = request.query_params.get("days", "30")
    span = max(7, min(int(raw), 366)) if raw.isdigit() else 30
    last = int(ctx.clock() // DAY)
    days = list(range(last - span + 1, last + 1))
    counts = ctx.reader.daily(days[0], last)
    lookups = {d: counts.get((d, "lookups"), 0) for d in days}
    refused = {d: sum(counts.get((d, f"outcome:{o}"), 0) for o in _REFUSED) for d in days}
    rate = {d: 100.0 * refused[d] / lookups[d] for d in days if lookups[d]}
    per_k = {d: 1000.0 * counts.get((d, "alerts"), 0) / lookups[d] for d in days if lookups[d]}
    charts = [
        timeline(
            days, [("% refused", rate, "#c0392b")], title="Refused lookups, % of the day's lookups"
        ),
        timeline(
            days,
            [("alerts per 1,000 lookups", per_k, "#8e44ad")],
            title="Alerts (new cases) per 1,000 lookups",
        ),
        timeline(days, [("lookups", lookups, "#1f5fa8")], title="Lookups per day"),
    ]
    return ctx.render(
        request, officer, "portal.html", charts=charts, notices=ctx.reader.notices(50),
        actions=ctx.reader.actions(30), span=span,
        totals={"lookups": sum(lookups.values()), "refused": sum(refused.values()),
                "alerts": sum(counts.get((d, "alerts"), 0) for d in days)},
    )  # fmt: skip
