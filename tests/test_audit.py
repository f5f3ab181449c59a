"""Audit events and their sinks: every sink really receives every event, a failing
sink never breaks a lookup, and nothing in the trail is a NIR."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from nirguard import AuditEvent, LookupGuard, QuotaExceeded, QuotaPolicy
from nirguard.audit import JsonLinesSink, make_sink
from nirguard.testing import NIRGenerator
from tests.conftest import assert_no_nir

NIRS = NIRGenerator(seed=11).many(10)


def test_a_logger_sink_emits_every_event_as_json(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("portal.audit")
    guard = LookupGuard(QuotaPolicy.only(lookups="1/hour"), audit=logger)
    with caplog.at_level(logging.INFO, logger="portal.audit"):
        with guard.lookup("dr", NIRS[0]) as lookup:
            lookup.record({"name": "x"})
        with pytest.raises(QuotaExceeded), guard.lookup("dr", NIRS[1]):
            pass
        assert guard.flush(5)  # a logger does I/O: it runs on the hook worker
    records = [r for r in caplog.records if r.name == "portal.audit"]
    assert [json.loads(r.getMessage())["outcome"] for r in records] == ["allowed", "denied"]
    assert records[0].levelno == logging.INFO
    structured = records[1].nirguard_audit  # type: ignore[attr-defined]
    assert structured["quota"] == "lookups"
    assert_no_nir(caplog.text, NIRS[0], NIRS[1])


def test_a_json_lines_sink_appends_private_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    guard = LookupGuard(QuotaPolicy.only(lookups="1/hour"), audit=str(path))
    with guard.lookup("dr", NIRS[0]) as lookup:
        lookup.record({"x": 1})
    with pytest.raises(QuotaExceeded), guard.lookup("dr", NIRS[1]):
        pass
    guard.close()  # flushes the hook worker
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["outcome"] for line in lines] == ["allowed", "denied"]
    assert lines[0]["patient"].startswith("ephemeral:")
    assert oct(path.stat().st_mode)[-3:] == "600"
    assert_no_nir(path.read_text(), NIRS[0], NIRS[1])
    assert repr(make_sink(path)) == repr(JsonLinesSink(path))


def test_a_failing_sink_is_reported_once_and_never_breaks_a_lookup(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: AuditEvent) -> None:
        raise RuntimeError("disk full " + NIRS[5])

    guard = LookupGuard(audit=broken)
    with caplog.at_level(logging.ERROR, logger="nirguard.hooks"):
        for value in NIRS[:3]:
            with guard.lookup("dr", value) as lookup:
                lookup.record({"x": 1})
    failures = [r for r in caplog.records if r.name == "nirguard.hooks"]
    assert len(failures) == 1
    assert "RuntimeError" in failures[0].getMessage()
    assert NIRS[5] not in failures[0].getMessage()


def test_an_event_refuses_a_raw_nir_without_echoing_it() -> None:
    for field in ("patient", "cohort"):
        with pytest.raises(ValidationError) as info:
            AuditEvent(time=0, practitioner="dr", outcome="allowed", **{field: NIRS[0]})  # type: ignore[arg-type]
        assert NIRS[0] not in str(info.value)


def test_make_sink_refuses_what_it_cannot_use() -> None:
    with pytest.raises(TypeError):
        make_sink(42)


def test_a_json_lines_sink_follows_log_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesSink(path)
    event = AuditEvent(time=0, practitioner="dr", outcome="allowed", patient="k1:ab")
    sink(event)
    path.rename(tmp_path / "audit.jsonl.1")  # logrotate moves the file away
    sink(event)
    sink(event)
    assert len((tmp_path / "audit.jsonl.1").read_text().splitlines()) == 1
    assert len(path.read_text().splitlines()) == 2
    assert oct(path.stat().st_mode)[-3:] == "600"
    path.unlink()  # deleted outright
    sink(event)
    assert len(path.read_text().splitlines()) == 1
    sink.close()


def test_allowed_events_carry_the_time_of_the_decision() -> None:
    now = [1_800_000_000.0]
    events: list[AuditEvent] = []
    guard = LookupGuard(
        QuotaPolicy.only(lookups="5/minute"), audit=events.append, clock=lambda: now[0]
    )
    with guard.lookup("dr", NIRS[0]):
        now[0] += 30  # the portal's lookup takes its time
    assert events[0].time.timestamp() == 1_800_000_000.0


@pytest.mark.parametrize(
    ("given", "said"),
    [(0.3, 1), (59.99970817565918, 60), (60.0000001, 60), (60.2, 61), (3600, 3600), (0, 1),
     (float("inf"), None), (float("nan"), None), (1e300, None), (None, None)],
)  # fmt: skip
def test_retry_after_is_whole_seconds_rounded_up(given: float | None, said: int | None) -> None:
    event = AuditEvent(time=0, practitioner="dr", outcome="denied", retry_after=given)  # type: ignore[arg-type]
    assert event.retry_after == said and type(event.retry_after) is type(said)
    assert json.loads(event.model_dump_json())["retry_after"] == said


def test_a_refusal_in_the_trail_says_when_to_retry_in_whole_seconds() -> None:
    now = [1_767_225_600.3]
    events: list[AuditEvent] = []
    guard = LookupGuard(QuotaPolicy.only(lookups="1/minute"), audit=events.append,
                        clock=lambda: now[0], metrics=False)  # fmt: skip
    with guard.lookup("dr", NIRS[0]) as lookup:
        lookup.record({"name": "x"})
    now[0] += 59.7  # 0.3 s of the minute left
    with pytest.raises(QuotaExceeded) as caught, guard.lookup("dr", NIRS[1]):
        pass
    assert guard.flush(5)
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after < 1
    assert [e.retry_after for e in events] == [None, 1]
