"""The one lookup path: hooks off the request path, alerts as cases, notices, masking,
practitioner ids, unlock's audit (issue 18 items 4-7, 17.4, 20.2)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nirguard import (
    Alert,
    AuditEvent,
    LookupGuard,
    Notice,
    PractitionerLocked,
    Pseudonymiser,
    QuotaExceeded,
    QuotaPolicy,
    nir,
)
from nirguard._engine import Decision
from nirguard._hooks import Hook
from nirguard._redact import mask_nir_runs
from nirguard.alerts import case_id
from nirguard.audit_fhir import FhirAuditSink
from nirguard.metrics import DROPPED
from nirguard.testing import NIRGenerator
from tests.conftest import assert_no_nir, find_nirs
from tests.guard_helpers import KEY, Clock
from tests.metrics_helpers import MetricsCapture

NIRS = NIRGenerator(seed=2026).many(60)


def _guard(policy: QuotaPolicy, **kwargs: Any) -> LookupGuard:
    return LookupGuard(policy, pseudonymiser=Pseudonymiser(KEY, purpose="guard"), **kwargs)


def _look(guard: LookupGuard, who: str, value: str) -> str:
    try:
        with guard.lookup(who, value) as lookup:
            lookup.record({"name": "x"})
        return "ran"
    except (QuotaExceeded, PractitionerLocked):
        return "refused"


# -- hooks off the request path (18.5) ------------------------------------------------------------


def test_a_slow_alert_hook_never_slows_the_refusal_that_starts_a_lockout() -> None:
    # No wall clock: the hook blocks until the test releases it. Run on the request path,
    # it would hold the refusal that starts the lockout (and the alert would be there when
    # the lookups return); off the path, every lookup returns while the hook still waits.
    release = threading.Event()
    alerts: list[Alert] = []

    def slow(alert: Alert) -> None:
        release.wait(10)  # a SIEM that answers when it pleases
        alerts.append(alert)

    guard = _guard(QuotaPolicy.only(distinct_patients="3/hour", break_glass=None), alert=slow)
    outcomes = [_look(guard, "dr-slow", value) for value in NIRS[:6]]
    assert outcomes == ["ran"] * 3 + ["refused"] * 3
    assert alerts == []  # every refusal came back while the hook was still blocked
    release.set()
    assert guard.flush(5)
    assert [a.signal for a in alerts] == ["distinct_patients"]


def test_a_failing_hook_never_changes_a_decision(caplog: pytest.LogCaptureFixture) -> None:
    def broken(value: object) -> None:
        raise RuntimeError("SIEM down")

    outcomes = []
    for alert in (broken, None):
        guard = _guard(
            QuotaPolicy.only(distinct_patients="2/hour", break_glass=None),
            alert=alert,
            audit=broken if alert else None,
        )
        outcomes.append([_look(guard, "dr", value) for value in NIRS[:5]])
        guard.close()
    assert outcomes[0] == outcomes[1] == ["ran", "ran", "refused", "refused", "refused"]
    failures = [r for r in caplog.records if r.name == "nirguard.hooks"]
    assert {r.getMessage().split(" hook")[0] for r in failures} == {
        "nirguard alert",
        "nirguard audit",
    }
    assert all("SIEM down" not in r.getMessage() for r in failures)


def test_a_full_queue_drops_counts_and_logs_but_never_blocks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    seen: list[object] = []

    def stuck(value: object) -> None:
        gate.wait(10)
        seen.append(value)

    capture = MetricsCapture()
    hook = Hook(stuck, "alert", capacity=2, dropped=capture.metrics.dropped)
    start = time.perf_counter()
    for i in range(10):
        hook(i)
    assert time.perf_counter() - start < 0.5  # never waits for the stuck hook
    assert hook.dropped >= 7
    assert capture.value(DROPPED, hook="alert") == hook.dropped
    assert any("alert hook is behind" in r.getMessage() for r in caplog.records)
    gate.set()
    assert hook.flush(5)
    assert len(seen) + hook.dropped == 10


def test_close_flushes_and_a_later_item_starts_the_worker_again(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    guard = _guard(QuotaPolicy.only(lookups="100/hour"), audit=str(path))
    for value in NIRS[:20]:
        _look(guard, "dr", value)
    guard.close()
    assert len(path.read_text().splitlines()) == 20
    _look(guard, "dr", NIRS[20])
    assert guard.flush(5)
    assert len(path.read_text().splitlines()) == 21


def test_inline_hooks_run_at_once() -> None:
    alerts: list[Alert] = []
    guard = _guard(
        QuotaPolicy.only(distinct_patients="1/hour", break_glass=None),
        alert=alerts.append,
        hooks="inline",
    )
    _look(guard, "dr", NIRS[0])
    assert _look(guard, "dr", NIRS[1]) == "refused"
    assert len(alerts) == 1  # no flush needed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_starts_with_an_empty_queue(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    gate = threading.Event()
    lines: list[str] = []

    def sink(event: AuditEvent) -> None:
        gate.wait(5)
        with path.open("a") as f:
            f.write(event.outcome + "\n")
        lines.append(event.outcome)

    hook = Hook(sink, "audit")
    hook("x")  # held by the gate in the parent
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = hook.flush(2)  # nothing of the parent's to deliver here
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    gate.set()


def test_bad_hook_options_are_refused() -> None:
    from nirguard import ConfigurationError

    with pytest.raises(ConfigurationError):
        LookupGuard(hooks="later")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        LookupGuard(hook_queue=0)


# -- alerts as cases, notices (17.4) ---------------------------------------------------------------


def _with_incidents(guard: LookupGuard, incident: float) -> None:
    """The engine's incidents, started at ``incident`` (two processes, one incident)."""
    engine = guard._engine

    class Engine:
        def __getattr__(self, name: str) -> Any:
            return getattr(engine, name)

        def decide(self, request: Any) -> Decision:
            decision = engine.decide(request)
            if decision.incident is not None:
                decision.incident = incident
            return decision

    guard._path._engine = Engine()  # type: ignore[assignment]


def test_one_case_id_per_incident_in_every_process_and_event() -> None:
    reports = []
    for _ in range(2):  # two processes see the same incident
        alerts: list[Alert] = []
        events: list[AuditEvent] = []
        guard = _guard(
            QuotaPolicy.only(distinct_patients="1/hour", break_glass=None),
            alert=alerts.append,
            audit=events.append,
            hooks="inline",
        )
        _with_incidents(guard, 1_767_225_600.0)
        for value in NIRS[:4]:
            _look(guard, "dr-case", value)
        reports.append((alerts, events))
    (alerts_a, events_a), (alerts_b, events_b) = reports
    assert [e.case for e in events_b] == [e.case for e in events_a]
    assert len(alerts_a) == 1  # one alert per account per incident
    case = alerts_a[0].case
    assert case == alerts_b[0].case == case_id("dr-case", 1_767_225_600.0)
    assert [e.outcome for e in events_a] == ["allowed", "lockout", "locked", "locked"]
    assert [e.case for e in events_a] == [None, case, case, case]


def test_without_incidents_a_lockout_still_opens_one_case() -> None:
    alerts: list[Alert] = []
    guard = _guard(
        QuotaPolicy.only(distinct_patients="1/hour", break_glass=None),
        alert=alerts.append,
        hooks="inline",
    )
    for value in NIRS[:5]:
        _look(guard, "dr", value)
    assert len(alerts) == 1
    assert alerts[0].case.startswith("case-") and alerts[0].lockout


def test_alerts_and_notices_go_to_their_loggers_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = "1850578006"
    same = [f"{prefix}{o:03d}{nir.compute_key(f'{prefix}{o:03d}'):02d}" for o in range(1, 6)]
    guard = _guard(
        QuotaPolicy.only(
            distinct_patients="1/hour", break_glass=None, hot_cohort=2.0, hot_cohort_min=1
        )
    )
    with caplog.at_level(logging.INFO):
        for i, value in enumerate(same):
            _look(guard, f"acct-{i % 2}", value)
        assert guard.flush(5)
    alerts = [r for r in caplog.records if r.name == "nirguard.alerts"]
    notices = [r for r in caplog.records if r.name == "nirguard.notices"]
    assert alerts and all(r.levelno == logging.WARNING for r in alerts)
    assert notices and all(r.levelno == logging.INFO for r in notices)
    for record in notices:
        payload = record.nirguard_notice  # type: ignore[attr-defined]
        assert "practitioner" not in payload and "acct-" not in record.getMessage()
    assert alerts[0].nirguard_alert["practitioner"].startswith("acct-")  # type: ignore[attr-defined]


def test_alert_false_sends_alerts_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    guard = _guard(QuotaPolicy.only(distinct_patients="1/hour", break_glass=None), alert=False)
    for value in NIRS[:3]:
        _look(guard, "dr", value)
    assert guard.flush(5)
    assert not [r for r in caplog.records if r.name == "nirguard.alerts"]


def test_a_notice_names_no_practitioner() -> None:
    fields = {f.name for f in dataclasses.fields(Notice)}
    assert fields == {"signal", "cohort", "evidence", "time", "kind"}


# -- masking NIR-shaped runs (18.6) ---------------------------------------------------------------


def test_a_practitioner_id_holding_a_nir_is_masked_everywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hidden = NIRS[0]
    spaced = f"{hidden[0]} {hidden[1:3]} {hidden[3:5]} {hidden[5:7]} {hidden[7:10]} "
    spaced += f"{hidden[10:13]} {hidden[13:]}"
    who = f"dr-{spaced}@example.fr"
    events: list[AuditEvent] = []
    alerts: list[Alert] = []
    fhir = tmp_path / "audit.fhir.jsonl"
    guard = _guard(
        QuotaPolicy.only(distinct_patients="1/hour", break_glass=None),
        audit=lambda e: (events.append(e), FhirAuditSink(fhir, source="p", purpose="guard")(e)),
        alert=alerts.append,
    )
    with caplog.at_level(logging.INFO):
        for value in NIRS[1:4]:
            _look(guard, who, value)
        guard.unlock(who, by=f"admin {hidden}", reason=f"called about {hidden}")
        assert guard.flush(5)
    text = "\n".join(e.model_dump_json() for e in events)
    text += fhir.read_text() + repr(alerts) + caplog.text
    assert_no_nir(text, hidden)
    assert events[0].practitioner == mask_nir_runs(who) != who
    assert events[-1].outcome == "unlocked"


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(NIRS),
    st.sampled_from(["", " ", ".", "-", "\u00a0"]),
    st.text(alphabet=st.characters(categories=["L", "P", "Zs"]), max_size=8),
    st.text(alphabet=st.characters(categories=["L", "P", "Zs"]), max_size=8),
)
def test_masking_leaves_no_nir_in_any_spelling(
    value: str, sep: str, before: str, after: str
) -> None:
    spelled = sep.join([value[0], value[1:3], value[3:5], value[5:7], value[7:10], value[10:13]])
    spelled += sep + value[13:]
    masked = mask_nir_runs(before + spelled + after)
    assert not find_nirs(masked)
    assert value[:13] not in masked
    assert mask_nir_runs("rpps-10003456789 adeli-751234567") == "rpps-10003456789 adeli-751234567"


# -- practitioner ids (18.7) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spellings",
    [
        ("Dr.Martin@example.fr", "dr.martin@example.fr", "DR.MARTIN@EXAMPLE.FR"),
        ("ｄｒ.ｍａｒｔｉｎ", "dr.martin"),  # fullwidth letters
        ("ﬁlip", "filip", "FILIP"),  # a ligature
        ("Straße", "STRASSE", "strasse"),
    ],
)
def test_spellings_of_one_login_share_one_budget(spellings: tuple[str, ...]) -> None:
    guard = _guard(QuotaPolicy.only(lookups=f"{len(spellings)}/hour"))
    assert [_look(guard, who, NIRS[0]) for who in spellings] == ["ran"] * len(spellings)
    assert _look(guard, spellings[0], NIRS[0]) == "refused"
    exact = _guard(QuotaPolicy.only(lookups="1/hour"), fold_practitioner_ids=False)
    assert [_look(exact, who, NIRS[0]) for who in spellings] == ["ran"] * len(spellings)


# -- admin (contract 4) ---------------------------------------------------------------------------


def test_unlock_is_audited_with_who_and_why() -> None:
    events: list[AuditEvent] = []
    clock = Clock()
    guard = _guard(
        QuotaPolicy.only(distinct_patients="1/hour", break_glass=None),
        audit=events.append,
        clock=clock,
    )
    for value in NIRS[:2]:
        _look(guard, "Dr.Locked", value)
    assert guard.status("dr.locked").locked
    guard.unlock("DR.LOCKED", by="secops-1", reason="ticket 4521: owner confirmed")
    status = guard.status("dr.locked")
    assert not status.locked
    assert status.baseline is None or isinstance(status.baseline, dict)
    last = events[-1]
    assert (last.outcome, last.practitioner, last.actor, last.note) == (
        "unlocked",
        "dr.locked",
        "secops-1",
        "ticket 4521: owner confirmed",
    )
    assert json.loads(last.model_dump_json())["actor"] == "secops-1"
    with pytest.raises(Exception, match="string"):
        guard.unlock("dr.locked", by=3)  # type: ignore[arg-type]


def test_the_logged_alert_writes_its_time_in_iso_8601(caplog: pytest.LogCaptureFixture) -> None:
    # POSIX seconds with their decimals can read as a NIR (CI once met 1796689141.82457)
    from nirguard.alerts import Alert, Notice, log_alert, log_notice

    with caplog.at_level(logging.INFO):
        log_alert(Alert("dr", "distinct_patients", {"limit": 5.0}, 1796689141.82457, None))
        log_notice(Notice("hot_cohort", None, {}, 1796689141.82457))

    def report(record: logging.LogRecord) -> Any:
        return getattr(record, "nirguard_alert", None) or getattr(record, "nirguard_notice", {})

    # only these two: another test's guard may still be logging reports of its own
    messages = [r.getMessage() for r in caplog.records if report(r).get("time") == 1796689141.82457]
    assert len(messages) == 2
    for message in messages:
        assert '"time":"2026-12-08T' in message and "1796689141" not in message
        assert not find_nirs(message)


def test_the_reports_reprs_write_their_times_in_iso_8601() -> None:
    from nirguard.alerts import Alert, BreakGlass, Notice
    from nirguard.reasons import Reason

    t = 1796689141.82457  # reads as a NIR with its separator
    reports = [
        Alert("dr", "distinct_patients", {"limit": 5.0}, t, None),
        Notice("hot_cohort", None, {}, t),
        BreakGlass("dr", "p:abc", Reason.of("TREAT"), t, t, 0, "distinct_patients"),
    ]
    for report in reports:
        text = repr(report)
        assert "time='2026-12-08T00:19:01.824570Z'" in text and "1796689141" not in text
        assert not find_nirs(text)
    assert "expires='2026-12-08T00:19:01.824570Z'" in repr(reports[2])
