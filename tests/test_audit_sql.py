"""The SQL audit store: what it writes, off the request path, sealed, purged, imported."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("sqlalchemy")

from nirguard import AuditEvent, Reason, ReasonCode
from nirguard.alerts import Alert, BreakGlass
from nirguard.audit import JsonLinesSink
from nirguard.audit_sql import SqlAuditStore, mask_nirs
from nirguard.errors import ConfigurationError
from nirguard.testing import NIRGenerator
from tests.conftest import assert_no_nir
from tests.console_world import NIR_IN_TEXT, STOLEN, full_world

PG_URL = os.environ.get("NIRGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _event(
    t: float, who: str = "p1", patient: str | None = "k1:aa", outcome: str = "allowed"
) -> AuditEvent:
    return AuditEvent(time=t, practitioner=who, patient=patient, outcome=outcome)  # type: ignore[arg-type]


def _alert(t: float, who: str = "p1", signal: str = "cohort", lockout: bool = True) -> Alert:
    return Alert(practitioner=who, signal=signal, evidence={"cohort": 12.0}, time=t,
                 retry_after=3600.0, lockout=lockout)  # fmt: skip


class Chain:
    """The audit chain's contract (``AuditChain.seal``), as a test double: an HMAC chain."""

    def __init__(self, key: bytes, writer: str) -> None:
        self.key, self.writer, self.seq, self.prev = key, writer, 0, b""
        self.lock = threading.Lock()

    def seal(self, record: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.seq += 1
            body = json.dumps(record, sort_keys=True).encode()
            mac = hmac.new(self.key, self.prev + body, hashlib.sha256).hexdigest()
            self.prev = mac.encode()
            return {**record, "seal": {"writer": self.writer, "seq": self.seq, "mac": mac}}


def verify(lines: list[str], key: bytes) -> list[int]:
    """Positions where the chain breaks (what ``nirguard audit verify`` reports)."""
    bad, prev, expect = [], b"", 1
    for position, line in enumerate(lines):
        record = json.loads(line)
        seal = record.pop("seal")
        mac = hmac.new(
            key, prev + json.dumps(record, sort_keys=True).encode(), hashlib.sha256
        ).hexdigest()
        if seal["seq"] != expect or not hmac.compare_digest(mac, seal["mac"]):
            bad.append(position)
        prev, expect = seal["mac"].encode(), seal["seq"] + 1
    return bad


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlAuditStore]:
    s = SqlAuditStore(f"sqlite:///{tmp_path / 'audit.db'}", interval=0.01)
    yield s
    s.close()


def test_events_and_their_aggregates_match_the_trail(store: SqlAuditStore) -> None:
    day = 86400.0
    events = [
        _event(10 * day + 1, "a", "k1:p1"), _event(10 * day + 2, "a", "k1:p1"),
        _event(10 * day + 3, "a", "k1:p2", "miss"), _event(11 * day, "a", "k1:p1"),
        _event(11 * day + 5, "a", "k1:p3", "denied"), _event(11 * day + 6, "b", "k1:p1"),
        _event(12 * day, "a", None, "invalid"), _event(12 * day + 1, "a", "k1:p4", "would_deny"),
    ]  # fmt: skip
    for event in events:
        store.audit(event)
    assert store.flush()
    reader = store.reader
    assert reader.count_events() == len(events)
    # new patients per day: first sightings among lookups that ran (a refusal shows nobody)
    assert reader.new_patients_per_day("a", 9, 13) == {10: 2, 12: 1}
    assert reader.new_patients_per_day("b", 9, 13) == {11: 1}
    assert reader.refusals_per_day("a", 9, 13) == {11: 1, 12: 1}
    daily = reader.daily(9, 13)
    expected = Counter((int(e.time.timestamp() // day), f"outcome:{e.outcome}") for e in events)
    for (d, what), n in expected.items():
        assert daily[(d, what)] == n
    assert daily[(10, "lookups")] == 3 and daily[(11, "lookups")] == 3
    assert [r["outcome"] for r in reader.lookups_of(["k1:p1"])] == ["allowed"] * 4


def test_alerts_make_one_case_per_incident_and_a_new_alert_reopens_a_closed_case(
    store: SqlAuditStore,
) -> None:
    store.alert(_alert(100.0, "p1", "cohort"))
    store.alert(_alert(160.0, "p1", "distinct_patients"))
    store.alert(_alert(200.0, "p2", "misses", lockout=False))
    store.alert(_alert(300.0, "p3", "hot_cohort"))  # portal evidence: a notice, not a case
    assert store.flush()
    cases = {c["practitioner"]: c for c in store.reader.cases(None, 10)}
    assert set(cases) == {"p1", "p2"}
    assert cases["p1"]["alerts"] == 2 and cases["p1"]["signals"] == "cohort,distinct_patients"
    assert cases["p1"]["opened"] == 100.0 and cases["p1"]["last_alert"] == 160.0
    assert cases["p1"]["lockout"] and not cases["p2"]["lockout"]
    assert len(store.reader.notices(10)) == 1
    case_id = cases["p1"]["case_id"]
    assert store.reader.set_case(case_id, "closed", "false alarm", "officer", 500.0)
    store.alert(_alert(600.0, "p1", "cohort"))
    assert store.flush()
    again = store.reader.case(case_id)
    assert again is not None and again["state"] == "open" and again["alerts"] == 3
    assert store.reader.lockouts_since(0, 10)[0]["practitioner"] == "p1"


def test_locked_accounts_come_from_lockouts_and_link_the_latest_case(store: SqlAuditStore) -> None:
    store.alert(Alert("p1", "cohort", {}, 100.0, 3600.0, case="case-pppppppppppppppp"))
    store.alert(Alert("p1", "misses", {}, 9000.0, 7200.0, case="case-aaaaaaaaaaaaaaaa"))
    store.alert(Alert("p2", "cohort", {}, 500.0, None, case="case-bbbbbbbbbbbbbbbb",
                      lockout=False))  # fmt: skip
    # p2's incident opened with a signal; its lockout came later, in the same incident (one
    # alert per incident): only the trail says so. p3 has a lockout and no alert at all.
    store.audit(_event(800.0, "p2", "k1:p9", "lockout"))
    store.audit(_event(700.0, "p3", "k1:p9", "lockout"))
    store.audit(_event(50.0, "p4", "k1:p9", "lockout"))  # before the window asked for
    assert store.flush()
    locked = store.reader.lockouts_since(60.0, 10)
    assert [(r["practitioner"], r["time"], r["case_id"]) for r in locked] == [
        ("p1", 9000.0, "case-aaaaaaaaaaaaaaaa"),  # the latest, not the largest id
        ("p2", 800.0, "case-bbbbbbbbbbbbbbbb"),
        ("p3", 700.0, None),
    ]
    assert [c["case_id"] for c in store.reader.cases_of("p1")] == [
        "case-aaaaaaaaaaaaaaaa", "case-pppppppppppppppp",
    ]  # fmt: skip


def test_sinks_return_at_once_and_a_full_queue_drops_with_a_report(
    tmp_path: Path, caplog: Any
) -> None:
    store = SqlAuditStore(
        f"sqlite:///{tmp_path / 'slow.db'}", queue_size=5, max_wait=0.01, interval=0
    )
    gate = threading.Event()
    original = store._writer._write_batch  # the database, made slow by a test

    def slow(conn: Any, batch: Any) -> None:
        gate.wait(10)
        original(conn, batch)

    store._writer._write_batch = slow  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.ERROR, logger="nirguard.audit"):
            started = time.perf_counter()
            for i in range(40):
                store.audit(_event(1000.0 + i))
            elapsed = time.perf_counter() - started
        assert elapsed < 2.0  # 40 calls, each waiting at most 10 ms on the full queue
        assert store.dropped > 0
        assert sum("queue full" in r.getMessage() for r in caplog.records) == 1
    finally:
        gate.set()
    assert store.flush()
    assert store.reader.count_events() == 40 - store.dropped
    store.close()


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'close.db'}"
    store = SqlAuditStore(url, interval=5.0)  # a long wait to fill a batch
    for i in range(25):
        store.audit(_event(float(i)))
    store.close()
    with SqlAuditStore(url) as again:
        assert again.reader.count_events() == 25


def test_records_are_sealed_in_one_chain_with_the_officer_actions(tmp_path: Path) -> None:
    key = b"k" * 32
    chain = Chain(key, "portal-1")
    store = SqlAuditStore(f"sqlite:///{tmp_path / 'sealed.db'}", chain=chain, writer="portal-1")
    for i in range(5):
        store.audit(_event(float(i), patient=f"k1:{i:02x}"))
    store.flush()
    store.record_action("officer-a", "unlock", "p1", "called the GP")
    store.audit(_event(9.0))
    store.close()
    with SqlAuditStore(f"sqlite:///{tmp_path / 'sealed.db'}", writer="portal-1") as again:
        lines = list(again.sealed_lines())
    assert len(lines) == 7
    assert verify(lines, key) == []
    assert json.loads(lines[5])["action"] == "unlock"
    # a record changed in the database is found
    tampered = lines.copy()
    tampered[2] = tampered[2].replace('"allowed"', '"denied"')
    assert verify(tampered, key) == [2]
    assert verify(lines[:3] + lines[4:], key) == [3]  # one removed


def test_free_text_and_ids_are_stored_with_nirs_masked(store: SqlAuditStore) -> None:
    grant = BreakGlass(practitioner=f"dr {NIR_IN_TEXT}", patient="k1:ab",
                       reason=Reason(ReasonCode.ETREAT, f"vu aux urgences, {NIR_IN_TEXT}"),
                       time=5.0, expires=10.0, budget_left=1, quota="distinct_patients")  # fmt: skip
    store.break_glass(grant)
    store.record_action("o", "nir_search", "k1:ab", f"plainte {NIR_IN_TEXT.replace(' ', '')}")
    assert store.flush()
    rows = store.reader.grants(False, 10)
    assert rows[0]["text"] == "vu aux urgences, [NIR]" and rows[0]["code"] == "ETREAT"
    assert_no_nir(json.dumps(rows) + json.dumps(store.reader.actions(10)), NIR_IN_TEXT)


@pytest.mark.parametrize(
    "text",
    ["185057800608491", "1.85.05.78.006.084.91", "１８５０５７８００６０８４９１", "1850578006084",
     "1 85 05 78 006 084 91 12", "2 82 04 2A 011 123 80"],
)  # fmt: skip
def test_mask_nirs_catches_every_spelling(text: str) -> None:
    masked = mask_nirs(f"a {text} b")
    assert masked is not None and "[NIR]" in masked
    assert not any(ch.isdigit() for ch in masked.replace("[NIR]", "").replace(" 12", ""))


def test_purge_deletes_by_age_and_keeps_open_cases(store: SqlAuditStore) -> None:
    day = 86400.0
    for t in (1 * day, 2 * day, 50 * day):
        store.audit(_event(t, patient=f"k1:{int(t)}"))
    store.alert(_alert(1 * day, "old-open"))
    store.alert(_alert(1 * day, "old-closed"))
    assert store.flush()
    closed = next(c for c in store.reader.cases(None, 10) if c["practitioner"] == "old-closed")
    store.reader.set_case(closed["case_id"], "closed", None, "o", 3 * day)
    deleted = store.purge(30, now=51 * day)
    assert deleted["events"] == 2 and deleted["cases"] == 1 and deleted["alerts"] == 2
    assert store.reader.count_events() == 1
    assert [c["practitioner"] for c in store.reader.cases(None, 10)] == ["old-open"]
    assert store.reader.daily(0, 60) == {(50, "lookups"): 1, (50, "outcome:allowed"): 1}
    with pytest.raises(ConfigurationError):
        store.purge(0)


def test_import_of_a_json_lines_trail_skips_what_is_not_an_event(
    store: SqlAuditStore, tmp_path: Path
) -> None:
    path = tmp_path / "trail.jsonl"
    sink = JsonLinesSink(path)
    for i in range(3):
        sink(_event(float(i)))
    sink.close()
    with open(path, "a", encoding="utf-8") as f:
        f.write(f'{{"not": "an event", "nir": "{NIR_IN_TEXT}"}}\nnot json\n[[[[\n\n')
    assert store.import_jsonl(path) == (3, 3)
    assert store.reader.count_events() == 3


def test_bad_urls_and_arguments_are_refused_without_echo() -> None:
    for url in (
        "mysql://root:s3cret@db/x",
        "not a url at all",
        "postgresql://u:s3cret@127.0.0.1:1/x",
    ):
        with pytest.raises(ConfigurationError) as info:
            SqlAuditStore(url)
        assert "s3cret" not in str(info.value) and "s3cret" not in repr(info.value)
    with pytest.raises(ConfigurationError):
        SqlAuditStore("sqlite://", prefix="x; drop table")
    with pytest.raises(ConfigurationError):
        SqlAuditStore("sqlite://", chain=42)


def test_a_replayed_attack_lands_as_a_case_with_its_timeline() -> None:
    world = full_world()
    try:
        reader = world.store.reader
        [case] = [c for c in reader.cases(None, 10) if c["practitioner"] == STOLEN]
        assert case["lockout"]
        # one incident, one case: the lockouts of the attack (it asks on for new numbers
        # while locked: no strike; when the hour ends the question the lockout left pending
        # is asked again, and moving on locks it for a day) and the refusals between them
        # carry its id, and only the first raised an alert
        trail = reader.account_events(STOLEN, 1000)
        lockouts = [e for e in trail if e["outcome"] == "lockout"]
        assert [e["quota"] for e in lockouts] == ["distinct_patients"] * 2
        assert {e["case_id"] for e in lockouts} == {case["case_id"]}
        assert {e["case_id"] for e in trail if e["outcome"] == "locked"} == {case["case_id"]}
        assert case["alerts"] == 1 and len(reader.lockouts_since(0, 10)) == 1
        assert reader.lockouts_since(0, 10)[0]["time"] == max(e["time"] for e in lockouts)
        opened = int(case["opened"] // 86400)
        new = reader.new_patients_per_day(STOLEN, opened - 28, opened)
        before = [n for d, n in new.items() if d < opened]
        assert before and max(before) <= 16  # an ordinary GP's days
        assert new[opened] == 8  # the walk, stopped in its first window (8/10 minutes)
        assert reader.refusals_per_day(STOLEN, opened, opened)[opened] > 0
    finally:
        world.store.close()


def _every_page_answers(world: Any) -> None:
    import warnings

    from nirguard.console import Console, Officer

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")
        from starlette.testclient import TestClient

    console = Console(world.store, authorize=lambda request: Officer("o", "officer"),
                      guard=world.guard, keys=world.key, clock=world.clock)  # fmt: skip
    client = TestClient(console)
    case = next(
        c["case_id"] for c in world.store.reader.cases(None, 10) if c["practitioner"] == STOLEN
    )
    for path in ("/cases", f"/cases/{case}", "/locked", "/break-glass", "/portal", "/patient"):
        response = client.get(path)
        assert response.status_code == 200, path
    assert "own normal" in client.get(f"/cases/{case}").text


def _pg_available() -> bool:
    try:
        import psycopg

        psycopg.connect(
            PG_URL.replace("postgresql://", "postgresql://", 1), connect_timeout=2
        ).close()
    except Exception:
        return False
    return True


@pytest.mark.skipif(
    not _pg_available(), reason="PostgreSQL is not reachable at NIRGUARD_TEST_POSTGRES_URL"
)
def test_postgresql_in_a_schema_of_its_own() -> None:
    import sqlalchemy

    schema = f"nirguard_test_{uuid.uuid4().hex[:10]}"
    world = full_world(PG_URL, schema=schema)
    try:
        reader = world.store.reader
        assert reader.count_events() > 1000
        case = next(c for c in reader.cases(None, 10) if c["practitioner"] == STOLEN)
        assert case["lockout"]
        assert reader.grants(True, 10)[0]["text"].endswith("[NIR]")
        _every_page_answers(world)
        world.store.alert(_alert(time.time(), STOLEN))  # an update of a known case, on PostgreSQL
        assert world.store.flush()
        assert (
            world.store.purge(1, now=datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp())[
                "events"
            ]
            > 0
        )
    finally:
        world.store.close()
        engine = sqlalchemy.create_engine(
            PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
        )
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@given(
    seed=st.integers(0, 10_000),
    sep=st.sampled_from(["", " ", ".", "-", "\u00a0", "\u202f", "  "]),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
    fullwidth=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_no_spelling_of_a_nir_survives_masking(
    seed: int, sep: str, before: str, after: str, fullwidth: bool
) -> None:
    value = NIRGenerator(seed=seed).generate()
    groups = [value[0], value[1:3], value[3:5], value[5:7], value[7:10], value[10:13], value[13:]]
    spelled = sep.join(groups)
    if fullwidth:
        spelled = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in spelled)
    masked = mask_nirs(before + " " + spelled + " " + after) or ""
    assert_no_nir(masked, value)


def test_the_guards_case_ids_are_kept_whole_even_when_digits_run_long(
    store: SqlAuditStore,
) -> None:
    digits = "case-1234567890123456"  # an earlier guard's hex id: masking would make it case-[NIR]
    store.alert(Alert("p1", "cohort", {}, 100.0, 3600.0, case=digits))
    store.alert(Alert("p2", "cohort", {}, 200.0, 3600.0, case="case-6543210987654321"))
    store.alert(Alert("p3", "cohort", {}, 300.0, 3600.0, case=f"x {NIR_IN_TEXT}"))
    assert store.flush()
    cases = {c["practitioner"]: c["case_id"] for c in store.reader.cases(None, 10)}
    assert cases == {"p1": digits, "p2": "case-6543210987654321", "p3": "x [NIR]"}
    store.record_action("o", "case", digits, "closed")
    store.record_action("o", "unlock", NIR_IN_TEXT, "reset")
    assert [a["target"] for a in store.reader.actions(2)] == ["[NIR]", digits]


def test_case_ids_never_look_like_a_nir_so_masking_never_merges_two() -> None:
    from nirguard._redact import mask_nir_runs
    from nirguard.alerts import case_id

    ids = {case_id("10003456789", 1_767_225_600.0 + n) for n in range(5000)}
    assert len(ids) == 5000
    assert all(mask_nirs(i) == i and mask_nir_runs(i) == i for i in ids)
    event = AuditEvent(time=1.0, practitioner="p", outcome="lockout", case=min(ids))  # type: ignore[call-arg]
    assert event.case == min(ids)
