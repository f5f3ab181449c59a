"""The admission steps through the guard's public API: shadow mode, break-glass,
``miss_on``, practitioner ids, stated reasons, alerts and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from nirguard import (
    Alert,
    AuditEvent,
    EnumerationSuspected,
    GuardUnavailable,
    InvalidNIR,
    InvalidPractitioner,
    InvalidReason,
    LookupDenied,
    LookupGuard,
    PractitionerLocked,
    Pseudonymiser,
    QuotaExceeded,
    QuotaPolicy,
    Reason,
    ReasonCode,
    ReasonRequired,
    nir,
)
from nirguard.alerts import BreakGlass, Notice
from nirguard.metrics import ALERTS, BREAK_GLASS, DECISIONS, DURATION, LOCKOUTS, NOTICES
from nirguard.testing import NIRGenerator
from tests.conftest import assert_no_nir
from tests.guard_helpers import KEY, Clock
from tests.metrics_helpers import MetricsCapture

NIRS = NIRGenerator(seed=77).many(200)
DAY = 86400.0


class Portal:
    """A guard on the memory store with everything it reports collected."""

    def __init__(self, policy: QuotaPolicy, **kwargs: Any) -> None:
        self.clock = Clock()
        self.events: list[AuditEvent] = []
        self.alerts: list[Alert] = []
        self.grants: list[BreakGlass] = []
        self.notices: list[Notice] = []
        self.calls: list[str] = []
        self.capture = MetricsCapture()
        self.guard = LookupGuard(
            policy,
            clock=self.clock,
            audit=self.events.append,
            alert=self.alerts.append,
            on_break_glass=self.grants.append,
            notice=self.notices.append,
            pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
            metrics=self.capture.metrics,
            hooks="inline",
            **kwargs,
        )
        self.lookup = self.guard.protect(practitioner="who", nir="value", reason="why")(self._find)

    def _find(self, who: str, value: str, why: object = None) -> dict[str, str] | None:
        self.calls.append(value)
        return None if value in self.unknown else {"name": "Jeanne"}

    unknown: frozenset[str] = frozenset()

    def outcomes(self) -> list[str]:
        return [e.outcome for e in self.events]

    def everything(self) -> str:
        return json.dumps(
            [e.model_dump(mode="json") for e in self.events]
            + [repr(a) for a in self.alerts]
            + [repr(g) for g in self.grants]
            + [repr(p) for p in self.capture.points()]
        )


# -- shadow mode ----------------------------------------------------------------------------------


def test_shadow_mode_never_refuses_and_audits_what_it_would_have_done() -> None:
    enforcing = Portal(QuotaPolicy.only(distinct_patients="2/hour", break_glass=None))
    shadow = Portal(QuotaPolicy.only(distinct_patients="2/hour", break_glass=None), enforce=False)
    for portal in (enforcing, shadow):
        for value in NIRS[:5]:
            with contextlib.suppress(LookupDenied):
                portal.lookup("dr", value)
    assert enforcing.outcomes() == ["allowed", "allowed", "lockout", "locked", "locked"]
    assert shadow.outcomes() == ["allowed", "allowed", "would_lockout", "would_lock", "would_lock"]
    assert len(shadow.calls) == 5
    assert len(enforcing.calls) == 2
    assert [e.quota for e in shadow.events] == [e.quota for e in enforcing.events]
    assert [(a.signal, a.enforced) for a in shadow.alerts] == [("distinct_patients", False)]
    assert shadow.capture.value(DECISIONS, outcome="would_lock", enforced=False) == 2


def test_shadow_mode_answers_an_invalid_number_as_enforcement_does() -> None:
    # One request must not tell the modes apart: an invalid number is a 422 in both (the
    # lookup cannot run on it); the lockout it would start is only recorded.
    for enforce, second in ((True, QuotaExceeded), (False, InvalidNIR)):
        portal = Portal(QuotaPolicy.only(invalid_nirs="1/hour"), enforce=enforce)
        with pytest.raises(InvalidNIR):
            portal.lookup("dr", "1 85 05 78 006 084 90")  # wrong key
        with pytest.raises(second):
            portal.lookup("dr", "1 85 05 78 006 084 90")
        assert portal.outcomes() == ["invalid", "lockout" if enforce else "would_lockout"]
        assert portal.calls == []


def test_shadow_mode_only_records_a_bad_reason_and_a_bad_practitioner_id() -> None:
    shadow = Portal(QuotaPolicy(), enforce=False)
    assert shadow.lookup("dr", NIRS[0], "NOT-A-CODE") == {"name": "Jeanne"}
    assert shadow.lookup("\x00bad", NIRS[1]) == {"name": "Jeanne"}
    assert [(e.outcome, e.quota, e.practitioner) for e in shadow.events] == [
        ("would_deny", "reason", "dr"),
        ("allowed", None, "dr"),
        ("would_deny", "practitioner", "<invalid>"),
    ]
    assert len(shadow.calls) == 2
    enforcing = Portal(QuotaPolicy())
    with pytest.raises(InvalidReason):
        enforcing.lookup("dr", NIRS[0], "NOT-A-CODE")
    with pytest.raises(InvalidPractitioner):
        enforcing.lookup("\x00bad", NIRS[1])
    assert [e.outcome for e in enforcing.events] == ["denied", "denied"]
    assert enforcing.calls == []


@pytest.mark.parametrize("seed", range(6))
def test_shadow_reports_the_same_first_refusal_as_enforcement(seed: int) -> None:
    rng = random.Random(seed)
    policy = QuotaPolicy.only(
        lookups="12/10 minutes",
        distinct_patients="5/hour",
        cohort="2/day",
        invalid_nirs="2/hour",
        misses="3/hour",
        break_glass="1/day",
    )
    plan = []
    for _ in range(40):
        kind = rng.random()
        value = rng.choice(NIRS[:15]) if kind > 0.1 else "1 85 05 78 006 084 90"
        plan.append((rng.choice(["a", "b"]), value, rng.random() < 0.2, rng.uniform(1, 300)))
    portals = {mode: Portal(policy, enforce=mode) for mode in (True, False)}
    for portal in portals.values():
        portal.unknown = frozenset(NIRS[10:15])
        for who, value, reason, wait in plan:
            with contextlib.suppress(LookupDenied, InvalidNIR):
                portal.lookup(who, value, "TREAT" if reason else None)
            portal.clock.advance(wait)
    for who in ("a", "b"):
        first = {}
        for mode, portal in portals.items():
            events = [e for e in portal.events if e.practitioner == who]
            refusals = [
                (i, e.quota)
                for i, e in enumerate(events)
                if e.outcome in ("denied", "locked", "suspected", "reason_required", "lockout")
                or e.outcome.startswith("would_")
            ]
            first[mode] = refusals[0] if refusals else None
        assert first[True] == first[False]


# -- break-glass ----------------------------------------------------------------------------------


def test_break_glass_round_trip_with_hook_alert_and_audit() -> None:
    portal = Portal(QuotaPolicy.only(distinct_patients="1/day", break_glass="2/day"))
    portal.lookup("dr", NIRS[0])
    with pytest.raises(ReasonRequired) as asked:
        portal.lookup("dr", NIRS[1])
    assert asked.value.quota == "distinct_patients"
    free_text = "seen for chest pain, Mme Martin"
    result = portal.lookup("dr", NIRS[1], Reason(ReasonCode.ETREAT, free_text))
    assert result == {"name": "Jeanne"}
    assert portal.outcomes()[-2:] == ["reason_required", "break_glass"]
    granted = portal.events[-1]
    assert granted.reason is ReasonCode.ETREAT
    assert granted.quota == "distinct_patients"
    assert len(portal.grants) == 1
    grant = portal.grants[0]
    assert grant.reason.text == free_text
    assert grant.budget_left == 1
    assert grant.expires == pytest.approx(portal.clock.now + 3 * 86400)
    assert grant.patient == granted.patient
    assert free_text not in portal.everything().replace(repr(grant), "")  # only in the hook
    assert free_text not in repr(grant)
    assert [(a.signal, a.evidence) for a in portal.alerts] == [
        ("break_glass", {"break_glass_left": 1})  # nearly spent
    ]
    portal.lookup("dr", NIRS[2], "TREAT")
    assert [a.evidence["break_glass_left"] for a in portal.alerts] == [1, 0]
    assert portal.capture.value(BREAK_GLASS, reason="ETREAT") == 1
    assert portal.capture.value(BREAK_GLASS, reason="TREAT") == 1


def test_a_failing_break_glass_hook_does_not_break_the_lookup(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(grant: BreakGlass) -> None:
        raise RuntimeError("review queue down")

    guard = LookupGuard(
        QuotaPolicy.only(distinct_patients="1/day", break_glass="2/day"),
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        on_break_glass=broken,
    )
    with guard.lookup("dr", NIRS[0]):
        pass
    with guard.lookup("dr", NIRS[1], reason="ETREAT") as lookup:
        assert lookup.outcome == "break_glass"
    assert guard.flush(5)  # the hook runs off the request path
    assert "break_glass hook failed (RuntimeError)" in caplog.text


def test_break_glass_never_lifts_a_lockout() -> None:
    portal = Portal(QuotaPolicy.only(invalid_nirs="1/hour", break_glass="5/day"))
    for _ in range(2):
        with pytest.raises((InvalidNIR, QuotaExceeded)):
            portal.lookup("dr", "1 85 05 78 006 084 90")
    with pytest.raises(PractitionerLocked):
        portal.lookup("dr", NIRS[0], "ETREAT")


def test_an_unknown_reason_is_refused_and_audited_without_echo() -> None:
    portal = Portal(QuotaPolicy.only(lookups="5/minute"))
    with pytest.raises(InvalidReason) as info:
        portal.lookup("dr", NIRS[0], "185057800608491")
    assert "185057800608491" not in str(info.value)
    assert portal.calls == []
    assert portal.events[-1].outcome == "denied"
    assert portal.events[-1].quota == "reason"
    assert_no_nir(portal.everything(), "185057800608491")


# -- misses raised as exceptions ------------------------------------------------------------------


class NotFound(Exception):
    pass


def test_misses_raised_as_exceptions_are_counted_and_re_raised() -> None:
    guard = LookupGuard(
        QuotaPolicy.only(misses="3/hour"),
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        miss_on=NotFound,
    )

    @guard.protect(practitioner="who", nir="value")
    def find(who: str, value: str) -> dict[str, str]:
        raise NotFound

    for value in NIRS[:3]:
        with pytest.raises(NotFound):
            find("dr", value)
    with pytest.raises(QuotaExceeded) as info:
        find("dr", NIRS[3])
    assert info.value.quota == "misses"


def test_miss_on_takes_a_test_and_other_errors_are_not_misses() -> None:
    events: list[AuditEvent] = []
    guard = LookupGuard(
        QuotaPolicy.only(misses="2/hour"),
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        audit=events.append,
    )

    def not_found(error: BaseException) -> bool:
        return isinstance(error, LookupError) and str(error) == "404"

    for _ in range(5):
        with pytest.raises(LookupError), guard.lookup("dr", NIRS[0], miss_on=not_found):
            raise LookupError("500")
    assert [e.outcome for e in events] == ["allowed"] * 5
    for value in NIRS[1:3]:
        with pytest.raises(LookupError), guard.lookup("dr", value, miss_on=not_found):
            raise LookupError("404")
    with pytest.raises(QuotaExceeded), guard.lookup("dr", NIRS[4]):
        pass


def test_async_miss_on() -> None:
    guard = LookupGuard(
        QuotaPolicy.only(misses="1/hour"), pseudonymiser=Pseudonymiser(KEY, purpose="guard")
    )

    @guard.protect(practitioner="who", nir="value", miss_on=(KeyError, NotFound))
    async def find(who: str, value: str) -> dict[str, str]:
        raise KeyError(value)

    async def main() -> None:
        with pytest.raises(KeyError):
            await find("dr", NIRS[0])
        with pytest.raises(QuotaExceeded):
            await find("dr", NIRS[1])

    asyncio.run(main())


# -- practitioner ids -----------------------------------------------------------------------------

BAD_IDS = [
    "",
    " ",
    "\x00",
    "dr\x00",
    "dr\n",
    " dr",
    "dr ",
    "a" * 257,
    "dr\u200b",
    "\ud800",
    None,
    42,
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_unusable_practitioner_ids_are_refused_and_audited(bad: Any) -> None:
    portal = Portal(QuotaPolicy.only(lookups="5/minute"))
    with pytest.raises(InvalidPractitioner) as info:
        portal.lookup(bad, NIRS[0])
    assert portal.calls == []
    assert portal.events[-1].outcome == "denied"
    assert portal.events[-1].quota == "practitioner"
    assert portal.events[-1].practitioner == "<invalid>"
    if isinstance(bad, str) and bad.strip():
        assert bad.strip() not in str(info.value)


def test_practitioner_ids_are_one_account_whatever_their_unicode_form() -> None:
    portal = Portal(QuotaPolicy.only(lookups="2/minute"))
    composed, decomposed = "dr-h\u00e9l\u00e8ne", "dr-he\u0301le\u0300ne"
    portal.lookup(composed, NIRS[0])
    portal.lookup(decomposed, NIRS[1])
    with pytest.raises(QuotaExceeded):
        portal.lookup(composed, NIRS[2])


def test_a_huge_id_is_refused_before_it_reaches_the_store() -> None:
    guard = LookupGuard(QuotaPolicy.only(lookups="5/minute"))
    with pytest.raises(InvalidPractitioner), guard.lookup("x" * 10_000_000, NIRS[0]):
        pass
    assert len(guard._engine) == 0  # type: ignore[arg-type]


# -- alerts and metrics ---------------------------------------------------------------------------


def test_metrics_after_a_scripted_sequence() -> None:
    portal = Portal(
        QuotaPolicy.only(lookups="4/minute", distinct_patients="2/day", break_glass="1/day")
    )
    portal.lookup("dr", NIRS[0])
    portal.lookup("dr", NIRS[1])
    with pytest.raises(ReasonRequired):
        portal.lookup("dr", NIRS[2])
    portal.lookup("dr", NIRS[2], "ETREAT")
    with pytest.raises(QuotaExceeded):  # the 428 counted against lookups too: 4 of 4
        portal.lookup("dr", NIRS[0])
    portal.clock.advance(61)
    with pytest.raises(QuotaExceeded):  # budget spent: no 428 a clinician would obey, a lockout
        portal.lookup("dr", NIRS[3])
    with pytest.raises(PractitionerLocked):
        portal.lookup("dr", NIRS[0])
    with pytest.raises(InvalidNIR):
        portal.lookup("dr2", "1 85 05 78 006 084 90")
    value = portal.capture.value
    assert value(DECISIONS, outcome="allowed") == 2
    assert value(DECISIONS, outcome="miss") == 0
    assert value(DECISIONS, outcome="reason_required", quota="distinct_patients") == 1
    assert value(DECISIONS, outcome="break_glass", quota="distinct_patients") == 1
    assert value(DECISIONS, outcome="denied", quota="lookups") == 1
    assert value(DECISIONS, outcome="lockout", quota="distinct_patients") == 1
    assert value(DECISIONS, outcome="locked") == 1
    assert value(DECISIONS, outcome="invalid") == 1
    assert value(LOCKOUTS, quota="distinct_patients") == 1
    assert value(ALERTS, signal="distinct_patients") == 1
    assert value(ALERTS, signal="break_glass") == 1
    assert value(BREAK_GLASS, reason="ETREAT") == 1
    portal.capture.assert_clean(*NIRS[:4])


def test_detections_alert_with_evidence_and_no_nir() -> None:
    portal = Portal(QuotaPolicy.only(cohort="2/day", break_glass=None))
    prefix = "1850578006"
    walked = [f"{prefix}{o:03d}{nir.compute_key(f'{prefix}{o:03d}'):02d}" for o in range(1, 6)]
    portal.lookup("bot", walked[0])
    portal.lookup("bot", walked[1])
    with pytest.raises(EnumerationSuspected):
        portal.lookup("bot", walked[2])
    alert = portal.alerts[-1]
    assert (alert.signal, alert.lockout, alert.evidence["cohort_patients"]) == ("cohort", True, 3)
    assert_no_nir(portal.everything(), *walked)


# -- what the reports carry (mutation testing found these unchecked) -----------------------------


def test_kind_and_enforcement_travel_with_every_report() -> None:
    policy = QuotaPolicy.only(
        name="gp",
        distinct_patients="1/day",
        break_glass="1/day",
        hot_cohort=4.0,
        hot_cohort_min=1,
    )
    prefix = "1850578006"  # three people of one birth cohort: it turns hot at the second
    same = [f"{prefix}{o:03d}{nir.compute_key(f'{prefix}{o:03d}'):02d}" for o in (1, 2, 3)]
    for enforce in (True, False):
        portal = Portal(policy, enforce=enforce)
        portal.lookup("dr", same[0])
        portal.lookup("dr2", same[1], "ETREAT")
        with contextlib.suppress(LookupDenied):
            portal.lookup("dr", same[2])
        portal.lookup("dr", same[2], "ETREAT")
        assert {e.kind for e in portal.events} == {"gp"}
        assert {a.kind for a in portal.alerts} == {"gp"}
        assert {a.enforced for a in portal.alerts} == {enforce}
        assert [g.kind for g in portal.grants] == ["gp"]
        assert [g.enforced for g in portal.grants] == [enforce]
        assert all(a.signal != "hot_cohort" for a in portal.alerts)  # a notice, not an alert
        hot = portal.notices
        assert hot and {n.signal for n in hot} == {"hot_cohort"} and {n.kind for n in hot} == {"gp"}
        assert hot[0].evidence["cohort_heat"] > hot[0].evidence["cohort_expected"] >= 0
        assert not hasattr(hot[0], "practitioner")
        assert portal.capture.value(NOTICES, signal="hot_cohort", kind="gp") >= 1
        assert portal.capture.value(BREAK_GLASS, reason="ETREAT", kind="gp") == 1
        counted = (DECISIONS, ALERTS, LOCKOUTS, BREAK_GLASS, NOTICES)
        points = [p for p in portal.capture.points() if p.name in counted]
        assert {p.attributes.get("nirguard.kind") for p in points} == {"gp"}


def test_a_reason_not_needed_is_audited_but_is_no_break_glass() -> None:
    portal = Portal(QuotaPolicy.only(distinct_patients="5/day", break_glass="1/day"))
    portal.lookup("dr", NIRS[0], "TREAT")
    assert portal.outcomes() == ["allowed"]
    assert portal.events[0].reason is ReasonCode.TREAT
    assert portal.grants == []
    assert portal.capture.value(BREAK_GLASS, reason="TREAT") in (None, 0)


@pytest.mark.parametrize("ok", ["a" * 256, "dr-\u00e9", "dr 1"])
def test_practitioner_ids_that_are_fine(ok: str) -> None:
    Portal(QuotaPolicy.only(lookups="5/minute")).lookup(ok, NIRS[0])


@pytest.mark.parametrize("bad", ["dr\ue000", "dr\u0378", "dr\u2028", "dr\u2029", "dr\u00ad"])
def test_practitioner_ids_with_invisible_or_unassigned_characters(bad: str) -> None:
    with pytest.raises(InvalidPractitioner):
        Portal(QuotaPolicy.only(lookups="5/minute")).lookup(bad, NIRS[0])


def test_an_outage_is_measured_and_fail_open_still_hands_over_the_number() -> None:
    capture = MetricsCapture(store="redis")
    events: list[AuditEvent] = []
    guard = LookupGuard(
        QuotaPolicy.only(lookups="5/minute", name="gp"),
        storage="redis://127.0.0.1:1/0",  # nothing listens there
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        audit=events.append,
        metrics=capture.metrics,
        fail_open=True,
    )
    with guard.lookup("dr", "1 85 05 78 006 084 91") as lookup:
        assert lookup.nir == "185057800608491"  # the portal still needs the number
        assert lookup.patient is not None
    assert [(e.outcome, e.kind) for e in events] == [("unguarded", "gp")]
    assert capture.value(DECISIONS, outcome="unguarded", kind="gp", store="redis") == 1
    closed = LookupGuard(
        storage="redis://127.0.0.1:1/0",
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        metrics=capture.metrics,
    )
    with pytest.raises(GuardUnavailable), closed.lookup("dr", NIRS[0]):
        pass
    assert capture.value(DECISIONS, outcome="unavailable") == 1


# -- what the reports say (found by mutation testing: docs/testing.md) -----------------------------


def test_grant_and_lockout_alerts_say_what_happened_and_share_the_open_case() -> None:
    """A break-glass alert (budget spent) is no lockout and has no retry; the lockout's
    alert has both; a grant while the lockout's incident is open joins its case. The
    grant record, the metrics and the audit evidence say the same."""
    portal = Portal(
        QuotaPolicy.only(distinct_patients="1/day", break_glass="1/day", lockout="1 hour")
    )
    t0 = portal.clock.now
    portal.lookup("dr", NIRS[0])
    portal.clock.advance(10)
    portal.lookup("dr", NIRS[1], "ETREAT")  # a grant; none left: an alert
    portal.clock.advance(10)
    with pytest.raises(LookupDenied):
        portal.lookup("dr", NIRS[2])  # the budget spent: a lockout
    portal.clock.advance(DAY)
    portal.lookup("dr", NIRS[3])
    portal.lookup("dr", NIRS[4], "ETREAT")  # the incident is still open (lockout_memory)
    first, lockout, second = portal.alerts
    assert (first.signal, first.evidence, first.time) == (
        "break_glass",
        {"break_glass_left": 0},
        t0 + 10,
    )
    assert (first.lockout, first.retry_after, first.practitioner) == (False, None, "dr")
    assert (lockout.signal, lockout.lockout, lockout.retry_after) == (
        "distinct_patients",
        True,
        3600,
    )
    assert lockout.evidence == {"distinct_patients": 2, "limit": 1, "lockout_level": 1}
    assert lockout.time == t0 + 20
    assert (second.signal, second.lockout, second.retry_after) == ("break_glass", False, None)
    assert second.case == lockout.case != first.case
    grant = portal.grants[0]
    granted = next(e for e in portal.events if e.outcome == "break_glass")
    assert (grant.practitioner, grant.patient, grant.quota) == (
        "dr",
        granted.patient,
        "distinct_patients",
    )
    assert grant.patient and (grant.time, grant.budget_left) == (t0 + 10, 0)
    assert grant.expires > grant.time
    denied = next(e for e in portal.events if e.outcome == "lockout")
    assert portal.events[0].time == datetime.fromtimestamp(t0, tz=timezone.utc)  # aware, UTC
    assert denied.evidence == lockout.evidence
    capture = portal.capture
    assert capture.value(LOCKOUTS, quota="distinct_patients", lockout_level="1", enforced=True) == 1
    assert capture.value(ALERTS, signal="break_glass", enforced=True) == 2


@pytest.mark.parametrize("gap", [5, 7 * 3600])  # 7 h: a heat of 1.747... (decayed a day)
def test_a_hot_cohort_notice_carries_the_decisions_evidence(gap: int) -> None:
    policy = QuotaPolicy.only(
        distinct_patients="1/day", break_glass="1/day", hot_cohort=4.0, hot_cohort_min=1
    )
    prefix = "1850578006"
    same = [f"{prefix}{o:03d}{nir.compute_key(f'{prefix}{o:03d}'):02d}" for o in (1, 2, 3)]
    portal = Portal(policy)
    portal.lookup("dr", same[0])
    portal.clock.advance(gap)
    portal.lookup("dr2", same[1], "ETREAT")
    notice = portal.notices[0]
    event = next(e for e in portal.events if "hot_cohort" in e.signals)
    assert event.evidence is not None
    assert notice.evidence == {k: event.evidence[k] for k in ("cohort_heat", "cohort_expected")}
    for value in notice.evidence.values():  # in hundredths, as the audit event has them
        assert type(value) is float and value == round(value, 2)
    assert (notice.time, notice.cohort) == (portal.clock.now, event.cohort)


def test_a_failing_notice_hook_is_logged_by_name_and_the_lookups_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(notice: Notice) -> None:
        raise RuntimeError("SIEM down")

    policy = QuotaPolicy.only(hot_cohort=4.0, hot_cohort_min=1)
    prefix = "1850578006"
    same = [f"{prefix}{o:03d}{nir.compute_key(f'{prefix}{o:03d}'):02d}" for o in (1, 2)]
    guard = LookupGuard(policy, clock=Clock(), notice=broken, metrics=False)
    with caplog.at_level(logging.ERROR, logger="nirguard.hooks"):
        for who, value in zip(("dr", "dr2"), same):
            with guard.lookup(who, value) as lookup:
                lookup.record({"name": "x"})
        assert guard.flush(5)
    failed = [r.getMessage() for r in caplog.records if r.name == "nirguard.hooks"]
    assert failed == [
        "nirguard notice hook failed (RuntimeError); further failures are not reported"
    ]


def test_the_audit_file_names_the_practitioner_masked(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    guard = LookupGuard(
        QuotaPolicy.only(distinct_patients="1/day", break_glass=None),
        clock=Clock(),
        audit=str(path),
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        hooks="inline",
    )
    lookup = guard.protect(practitioner="who", nir="value")(lambda who, value: {"ok": True})
    lookup("dr-martin", NIRS[0])
    lookup("dr-" + NIRS[9], NIRS[0])
    with pytest.raises(LookupDenied):
        lookup("dr-martin", NIRS[1])
    guard.close()
    text = path.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert [x["practitioner"][:3] for x in lines] == ["dr-"] * 3
    assert lines[0]["practitioner"] == lines[2]["practitioner"] == "dr-martin"
    assert lines[2]["evidence"] == {"distinct_patients": 2, "limit": 1, "lockout_level": 1}
    assert_no_nir(text, NIRS[9])


@pytest.mark.parametrize("setting", [None, True, False])
def test_alerts_and_notices_go_to_their_loggers_unless_turned_off(
    setting: bool | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Default (``None``) and ``True``: the ``nirguard.alerts`` / ``nirguard.notices``
    loggers; ``False``: nowhere (docs/guard.md)."""
    policy = QuotaPolicy.only(distinct_patients="1/day", hot_cohort=4.0, hot_cohort_min=1)
    prefix = "1850578006"
    same = [f"{prefix}{o:03d}{nir.compute_key(f'{prefix}{o:03d}'):02d}" for o in (1, 2, 3)]
    guard = LookupGuard(
        policy,
        clock=Clock(),
        audit=None,
        alert=setting,
        notice=setting,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        hooks="inline",
    )
    lookup = guard.protect(practitioner="who", nir="value")(lambda who, value: {"ok": True})
    caplog.set_level(logging.INFO)
    lookup("dr", same[0])
    lookup("dr2", same[1])
    with pytest.raises(LookupDenied):
        lookup("dr", same[2])
    names = {r.name for r in caplog.records}
    expected = set() if setting is False else {"nirguard.alerts", "nirguard.notices"}
    assert names & {"nirguard.alerts", "nirguard.notices"} == expected


def test_the_guards_metrics_say_shadow_kind_and_duration_of_each_decision() -> None:
    """Through the guard (not only the recorder): a lockout in shadow mode is counted
    with ``enforced=False`` and its kind, its alert too, and every decision's time."""
    policy = QuotaPolicy.only(name="gp", distinct_patients="1/day", break_glass=None)
    portal = Portal(policy, enforce=False)
    portal.lookup("dr", NIRS[0])
    portal.lookup("dr", NIRS[1])  # would lock out
    capture = portal.capture
    assert capture.value(LOCKOUTS, quota="distinct_patients", kind="gp", enforced=False) == 1
    assert capture.value(LOCKOUTS, enforced=True) == 0
    assert capture.value(ALERTS, signal="distinct_patients", kind="gp", enforced=False) == 1
    assert capture.value(ALERTS, enforced=True) == 0
    durations = [p.value for p in capture.points() if p.name == DURATION]
    assert sum(d.count for d in durations) == 2
