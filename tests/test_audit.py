"""Audit events and their sinks: every sink really receives every event, a failing
sink never breaks a lookup, and nothing in the trail is a NIR."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from nirguard import AuditEvent, LookupGuard, QuotaExceeded, QuotaPolicy
from nirguard.audit import JsonLinesSink, OffPath, make_sink
from nirguard.metrics import DROPPED
from nirguard.testing import NIRGenerator
from tests.conftest import assert_no_nir
from tests.metrics_helpers import MetricsCapture

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


# -- hooks that fall behind (docs/guard.md, "Hooks run off the request path") --------------------


class _Stuck:
    """A hook that blocks on its first item until released: ``entered`` says it is blocked."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[Any] = []

    def __call__(self, item: Any) -> None:
        self.entered.set()
        self.release.wait(20)
        self.seen.append(item)


def _refused(guard: LookupGuard, who: str) -> None:
    """Two new patients under a one-patient budget: one allowed, one refused (an alert)."""
    with guard.lookup(who, NIRS[0]) as lookup:
        lookup.record({"x": 1})
    with pytest.raises(QuotaExceeded), guard.lookup(who, NIRS[1]):
        pass


def test_a_full_hook_queue_drops_counts_exactly_and_never_holds_a_lookup(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit, alert = _Stuck(), _Stuck()
    capture = MetricsCapture()
    guard = LookupGuard(
        QuotaPolicy.only(distinct_patients="1/hour", break_glass=None),
        audit=OffPath(audit), alert=alert, metrics=capture.metrics, hook_queue=1,
    )  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="nirguard.hooks"):
        _refused(guard, "dr-0")  # 2 events, 1 alert: each worker blocks on its first
        assert audit.entered.wait(5) and alert.entered.wait(5)
        for who in ("dr-1", "dr-2", "dr-3", "dr-4"):  # 8 events, 4 alerts more
            _refused(guard, who)
        # every lookup came back while both hooks were still blocked: none waited
        assert audit.seen == [] and alert.seen == []
    # queued behind the blocked one: 1 event (dr-0's refusal) and 1 alert (dr-1's)
    assert capture.value(DROPPED, hook="audit") == 8
    assert capture.value(DROPPED, hook="alert") == 3
    assert capture.value(DROPPED) == 11  # nothing else dropped
    behind = [r.getMessage() for r in caplog.records if "hook is behind" in r.getMessage()]
    assert behind == [  # the first drop of each hook, then at most once a minute
        "nirguard audit hook is behind: its queue of 1 is full; 1 item(s) dropped so far",
        "nirguard alert hook is behind: its queue of 1 is full; 1 item(s) dropped so far",
    ]
    audit.release.set()
    alert.release.set()
    assert guard.flush(5)
    assert [e.outcome for e in audit.seen] == ["allowed", "lockout"]
    assert [a.practitioner for a in alert.seen] == ["dr-0", "dr-1"]


def _stuck_guard(stuck: Callable[[Any], None]) -> LookupGuard:
    guard = LookupGuard(QuotaPolicy.only(lookups="10/hour"), audit=OffPath(stuck), metrics=False)
    with guard.lookup("dr", NIRS[0]) as lookup:
        lookup.record({"x": 1})
    return guard


def test_flush_gives_up_on_a_stuck_sink_at_its_timeout() -> None:
    stuck = _Stuck()
    guard = _stuck_guard(stuck)
    assert stuck.entered.wait(5)
    assert guard.flush(0.05) is False  # not waiting for the sink: it is still blocked
    assert stuck.seen == []
    stuck.release.set()
    assert guard.flush(5) is True
    assert len(stuck.seen) == 1


def test_close_returns_after_its_five_seconds_however_stuck_the_sink() -> None:
    stuck = _Stuck()
    guard = _stuck_guard(stuck)
    assert stuck.entered.wait(5)
    timer = threading.Timer(5.5, stuck.release.set)  # the sink answers after 5.5 s
    timer.start()
    guard.close()  # 5 s, then it stops waiting: the sink has not answered yet
    assert stuck.seen == []
    timer.join()
    assert guard.flush(5) and len(stuck.seen) == 1


class _Batches:
    """A sink that does I/O and writes many events at once: blocks on its first write."""

    background = True

    def __init__(self) -> None:
        self.stuck = _Stuck()
        self.calls: list[int] = []

    def __call__(self, event: AuditEvent) -> None:
        self.write_many([event])

    def write_many(self, events: list[AuditEvent]) -> None:
        self.stuck(None)
        self.calls.append(len(events))


def test_a_sink_that_writes_many_gets_what_gathered_in_one_call() -> None:
    sink = _Batches()
    guard = LookupGuard(QuotaPolicy.only(lookups="10/hour"), audit=sink, metrics=False)
    for i, value in enumerate(NIRS[:6]):
        with guard.lookup("dr", value) as lookup:
            lookup.record({"x": 1})
        if i == 0:
            assert sink.stuck.entered.wait(5)  # the first write holds the worker
    sink.stuck.release.set()
    assert guard.flush(5)
    assert sink.calls == [1, 5]  # the five that waited: one write, not five
