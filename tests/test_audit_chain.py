"""The sealed audit trail (#18.3): every change, removal, reordering, insertion and cut is found.

Each test tampers with a trail written by :class:`SealedAuditLog` as an attacker
would (by editing the file) and checks what ``verify`` reports and where.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import pickle
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nirguard import AuditEvent, LookupGuard, SecretKey
from nirguard.audit_chain import (
    AuditChain,
    AuditKey,
    Report,
    SealedAuditLog,
    verify_files,
    verify_lines,
)
from nirguard.cli import main
from nirguard.config import GuardSettings
from nirguard.errors import ConfigurationError, InvalidKey
from nirguard.reasons import ReasonCode
from tests.conftest import assert_no_nir

KEY = AuditKey(bytes(range(32)), "audit-1")
OTHER = AuditKey(bytes(range(1, 33)), "audit-1")  # same id, other material: a wrong key
NEXT = AuditKey(bytes(range(2, 34)), "audit-2")
NIR = "1 85 05 78 006 084 91"


def _event(t: float, who: str = "10003456789", patient: str = "k1:ab12") -> AuditEvent:
    return AuditEvent(time=t, practitioner=who, patient=patient, outcome="allowed")


def write(path: Path, n: int, *, key: AuditKey = KEY, name: str = "portal", **kw: Any) -> str:
    """``n`` events in one closed chain; returns the writer id."""
    sink = SealedAuditLog(path, key, writer=name, checkpoint=None, **kw)
    for t in range(n):
        sink(_event(1000.0 + t))
    writer = sink.chain.writer
    sink.close()
    return writer


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def codes(report: Report) -> list[tuple[str, str]]:
    return [(p.code, p.position) for p in report.problems]


def test_an_untouched_trail_verifies_clean(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = write(path, 5)
    report = verify_files([path], KEY, require_closed=True)
    assert report.ok, report.text()
    assert (report.lines, report.sealed, report.verified) == (7, 7, 7)  # open + 5 + close
    (summary,) = report.writers
    assert (summary.writer, summary.first, summary.last, summary.closed) == (writer, 1, 7, True)
    records = [json.loads(line) for line in lines_of(path)]
    assert [r.get("chain") for r in records] == ["open"] + [None] * 5 + ["close"]
    assert all(AuditEvent.model_validate({k: v for k, v in r.items() if k != "seal"})
               for r in records[1:6])  # fmt: skip
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_changed_record_is_found_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5)
    lines = lines_of(path)
    lines[3] = lines[3].replace('"allowed"', '"denied"')
    report = verify_lines(lines, KEY)
    assert codes(report) == [("changed", "line 4")]
    assert "seq 4" in report.problems[0].detail


def test_a_removed_record_is_found_between_its_neighbours(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 6)
    lines = lines_of(path)
    del lines[2:4]  # seq 3 and 4
    report = verify_lines(lines, KEY)
    assert codes(report) == [("removed", "line 3")]
    assert report.problems[0].detail.startswith("seq 3..4 missing (2 records) between line 2")


def test_removed_first_records_are_found_unless_the_trail_is_partial(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 4)
    lines = lines_of(path)[2:]
    assert codes(verify_lines(lines, KEY)) == [("removed", "line 1")]
    assert verify_lines(lines, KEY, partial=True).ok


def test_reordered_records_are_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5)
    lines = lines_of(path)
    lines[2], lines[4] = lines[4], lines[2]  # seq 3 and 5 swapped
    report = verify_lines(lines, KEY)
    assert [p.code for p in report.problems] == ["reordered", "reordered"]
    assert report.problems[0].position == "line 4"  # seq 4 after seq 5
    assert report.problems[1].position == "line 5"  # seq 3 after seq 5


def test_inserted_records_are_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 4)
    lines = lines_of(path)
    unsealed = _event(1001.5, who="intruder").model_dump_json()
    copied = json.loads(lines[2])  # a real seal on other content
    copied["practitioner"] = "intruder"
    forged = json.loads(lines[2])
    forged["seal"]["writer"] = "other-p1-r00000000"
    tampered = [*lines[:3], unsealed, json.dumps(copied), lines[3], lines[3], json.dumps(forged),
                *lines[4:]]  # fmt: skip
    report = verify_lines(tampered, KEY)
    assert sorted(codes(report)) == [
        ("duplicated", "line 7"),
        ("inserted", "line 5"),
        ("unsealed", "line 4"),
        ("unverified", "line 8"),
    ]


def test_lines_of_other_loggers_are_counted_apart_in_a_mixed_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 4)
    lines = lines_of(path)
    syslog = [f"Dec  7 09:40:12 web1 portal[4120]: {line}" for line in lines]
    other = ['{"level": "info", "msg": "GET /health 200"}', "plain text from another logger"]
    mixed = [*syslog[:3], *other, *syslog[3:]]
    assert codes(verify_lines(mixed, KEY)) == [("unsealed", "line 4"), ("unreadable", "line 5")]
    report = verify_lines(mixed, KEY, mixed=True)
    assert report.ok and report.foreign == 2 and report.verified == len(lines)
    assert "2 of other writers" in report.text()
    event = _event(1001.5, who="intruder").model_dump_json()  # an audit event without a seal
    assert codes(verify_lines([*mixed, event], KEY, mixed=True)) == [("unsealed", "line 9")]
    assert codes(verify_lines(mixed[:2] + mixed[4:], KEY, mixed=True)) == [("removed", "line 4")]


def test_a_cut_tail_is_found_by_the_checkpoints_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    now = [0.0]
    quiet = SealedAuditLog(path, KEY, writer="quiet", checkpoint=60, clock=lambda: now[0])
    busy = SealedAuditLog(path, KEY, writer="busy", checkpoint=60, clock=lambda: now[0])
    for t in range(0, 600, 10):
        now[0] = float(t)
        if t % 60 == 0:
            quiet.checkpoint()  # what its thread does when it is idle
        busy(_event(float(t)))
    quiet_lines = [i for i, line in enumerate(lines_of(path)) if '"quiet-' in line]
    assert verify_files([path], KEY).ok  # both open, neither silent too long
    lines = lines_of(path)
    cut = [line for i, line in enumerate(lines) if i not in quiet_lines[-4:]]  # last 4 minutes
    report = verify_lines(cut, KEY)
    assert [p.code for p in report.problems] == ["tail_missing"]
    assert report.problems[0].writer == quiet.chain.writer
    assert report.problems[0].position == f"line {quiet_lines[-5] + 1}"
    # a closed chain whose closing record is cut: found when the writers have stopped
    quiet.close()
    busy.close()
    lines = lines_of(path)
    assert verify_lines(lines, KEY, require_closed=True).ok
    without_close = [line for line in lines if not ('"close"' in line and '"quiet-' in line)]
    report = verify_lines(without_close, KEY, require_closed=True)
    assert [(p.code, p.writer) for p in report.problems] == [("tail_missing", quiet.chain.writer)]


def test_records_after_a_close_are_found() -> None:
    chain = AuditChain(KEY, writer="portal")
    records = [{"n": 1}, {"n": 2}, {"chain": "close"}, {"n": 3}]  # sealed on after its close
    lines = [json.dumps(chain.seal(record)) for record in records]
    assert codes(verify_lines(lines, KEY)) == [("after_close", "line 4")]
    assert codes(verify_lines(lines[:2] + lines[3:] + lines[2:3], KEY)) == [
        ("reordered", "line 4"),
        ("after_close", "line 3"),
    ]


def test_two_writers_interleaved_in_one_process_verify_apart(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sinks = [SealedAuditLog(path, KEY, writer=f"w{i}", checkpoint=None) for i in range(2)]

    def run(sink: SealedAuditLog) -> None:
        for t in range(200):
            sink(_event(float(t)))

    threads = [threading.Thread(target=run, args=(sink,)) for sink in sinks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sink in sinks:
        sink.close()
    report = verify_files([path], KEY, require_closed=True)
    assert report.ok, report.text()
    assert sorted(w.records for w in report.writers) == [202, 202]
    lines = lines_of(path)
    victim = next(i for i, line in enumerate(lines) if sinks[1].chain.writer in line and i > 100)
    del lines[victim]
    report = verify_lines(lines, KEY)
    assert [(p.code, p.writer) for p in report.problems] == [("removed", sinks[1].chain.writer)]


def _process_writer(args: tuple[str, str, int]) -> str:
    path, name, count = args
    sink = SealedAuditLog(path, KEY, writer=name, checkpoint=None)
    for t in range(count):
        sink(_event(float(t)))
    writer = sink.chain.writer
    sink.close()
    return writer


@pytest.mark.slow
def test_workers_in_several_processes_append_to_one_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        writers = pool.map(_process_writer, [(str(path), f"worker{i}", 300) for i in range(3)])
    assert len(set(writers)) == 3
    lines = lines_of(path)
    assert len(lines) == 3 * 302
    report = verify_files([path], KEY, require_closed=True)
    assert report.ok, report.text()
    assert sorted(w.writer for w in report.writers) == sorted(writers)
    # one record of the second worker changed: only its chain is flagged, at that line
    victim = [i for i, line in enumerate(lines) if writers[1] in line][150]
    lines[victim] = lines[victim].replace('"k1:ab12"', '"k1:ffff"')
    report = verify_lines(lines, KEY)
    assert [(p.code, p.position, p.writer) for p in report.problems] == [
        ("changed", f"line {victim + 1}", writers[1])
    ]


def test_the_chain_follows_rotation_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = SealedAuditLog(path, KEY, writer="portal", checkpoint=None)
    rotated = []
    for part in range(3):
        for t in range(4):
            sink(_event(float(part * 10 + t)))
        if part < 2:
            rotated.append(tmp_path / f"audit.jsonl.{2 - part}")
            path.rename(rotated[-1])  # logrotate: the writer goes on in the new file
    sink.close()
    with open(rotated[0], "rb") as raw, gzip.open(f"{rotated[0]}.gz", "wb") as packed:
        packed.write(raw.read())
    rotated[0].unlink()
    files = [tmp_path / "audit.jsonl.2.gz", rotated[1], path]
    report = verify_files(files, KEY, require_closed=True)
    assert report.ok, report.text()
    assert report.writers[0].records == 14  # open + 12 + close, one chain over three files
    report = verify_files(files[::2], KEY)  # the middle file removed
    assert codes(report) == [("removed", f"{path}:1")]
    assert verify_files(files[1:], KEY, partial=True).ok  # the oldest expired


def test_a_wrong_key_and_an_unknown_key_id_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = write(path, 3)
    report = verify_files([path], OTHER)
    assert [(p.code, p.writer) for p in report.problems] == [
        ("wrong_key", None),
        ("unverified", writer),
    ]
    assert report.problems[1].position == f"{path}:1"
    report = verify_files([path], NEXT)
    assert [(p.code, p.position) for p in report.problems] == [("unknown_key", f"{path}:1")]
    # key rotation: a second chain under the next key, both keys given
    write(path, 2, key=NEXT)
    assert not verify_files([path], KEY).ok
    assert verify_files([path], [NEXT, KEY], require_closed=True).ok


def _full_event() -> AuditEvent:
    return AuditEvent(
        time=12.5, practitioner="10003456789", patient="k1:ab12", outcome="break_glass",
        quota="distinct_patients", retry_after=30.0, cohort="k1:cc", kind="gp",
        reason=ReasonCode.ETREAT, signals=("hot_cohort",), evidence={"walk": 2.0},
        case="case-1", actor="officer", note="why",
    )  # fmt: skip


def _mutated(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, "x"]
    if isinstance(value, dict):
        return {**value, "x": 1.0}
    return "x"


SEALED_FIELDS = [*AuditEvent.model_fields, "seal.v", "seal.key", "seal.writer", "seal.seq",
                 "seal.prev", "seal.mac", "+extra", "-practitioner"]  # fmt: skip


@pytest.mark.parametrize("name", SEALED_FIELDS)
def test_the_mac_covers_every_field(tmp_path: Path, name: str) -> None:
    chain = AuditChain(KEY, writer="portal")
    lines = [json.dumps(chain.seal(_full_event().model_dump(mode="json"))) for _ in range(3)]
    record = json.loads(lines[1])
    if name == "+extra":
        record["extra"] = 1
    elif name.startswith("-"):
        del record[name[1:]]
    elif name.startswith("seal."):
        record["seal"][name[5:]] = _mutated(record["seal"][name[5:]])
    else:
        record[name] = _mutated(record[name])
    assert verify_lines(lines, KEY).ok
    report = verify_lines([lines[0], json.dumps(record), lines[2]], KEY)
    assert "line 2" in [p.position for p in report.problems], (name, report.text())


def test_nothing_verify_prints_holds_a_nir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3)
    lines = lines_of(path)
    record = json.loads(lines[1])
    record["practitioner"] = f"dr {NIR}"  # the attacker writes a NIR into a record
    forged = json.loads(lines[2])
    forged["seal"]["writer"] = NIR.replace(" ", "-")  # and into a writer id and a key id
    forged["seal"]["key"] = NIR.replace(" ", "")
    junk = f'{{"practitioner": "{NIR}", "seal": 1}}'
    path.write_text("\n".join([lines[0], json.dumps(record), json.dumps(forged), junk,
                               f"not json {NIR}", *lines[3:]]) + "\n")  # fmt: skip
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY.to_text())
    key_file.chmod(0o600)
    assert main(["audit", "verify", "--key-file", str(key_file), str(path)]) == 1
    out, err = capsys.readouterr()
    assert {"changed", "unsealed", "unreadable", "unknown_key"} <= {
        line.split(": ")[1] for line in out.splitlines()[1:] if ": " in line
    }
    assert_no_nir(out + err, NIR)


def test_the_cli_makes_an_audit_key_and_verifies_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "audit.key"
    assert main(["audit", "keygen", "--key-id", "audit-7", "-o", str(key_file)]) == 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = AuditKey.from_file(key_file)
    assert key.key_id == "audit-7"
    write(tmp_path / "audit.jsonl", 2, key=key)
    write(tmp_path / "audit.jsonl.1", 2, key=key)
    capsys.readouterr()
    monkeypatch.delenv("NIRGUARD_AUDIT_KEY", raising=False)
    monkeypatch.setenv("NIRGUARD_AUDIT_KEY_FILE", str(key_file))
    assert main(["audit", "verify", str(tmp_path / "audit.jsonl*")]) == 0
    assert "2 writers: OK" in capsys.readouterr().out
    monkeypatch.delenv("NIRGUARD_AUDIT_KEY_FILE")
    assert main(["audit", "verify", str(tmp_path / "audit.jsonl")]) == 2
    assert "no audit key" in capsys.readouterr().err
    assert main(["audit", "verify", "--key-file", str(key_file), str(tmp_path / "nope")]) == 2


def test_the_audit_key_is_its_own_kind_and_never_shows() -> None:
    assert repr(KEY) == "AuditKey(key_id='audit-1')" == str(KEY)
    assert KEY.to_text().startswith("nirguard-audit-key:v1:audit-1:")
    with pytest.raises(TypeError):
        pickle.dumps(KEY)
    with pytest.raises(TypeError):
        pickle.dumps(AuditChain(KEY))
    pseudonym_key = SecretKey(bytes(range(32)), "k1")
    with pytest.raises(InvalidKey) as caught:
        AuditKey.from_text(pseudonym_key.to_text())
    assert caught.value.code == "key_wrong_kind"
    assert pseudonym_key.to_text().split(":")[-1] not in str(caught.value)
    with pytest.raises(InvalidKey):
        SealedAuditLog("/nonexistent/audit.jsonl", pseudonym_key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        verify_lines([], pseudonym_key)  # type: ignore[arg-type]
    material = KEY.to_text().split(":")[-1]
    assert material not in repr(AuditChain(KEY)) + repr(SealedAuditLog("x.jsonl", KEY))


def test_settings_seal_the_trail_and_refuse_the_pseudonym_key(tmp_path: Path) -> None:
    pseudonym_key = SecretKey(bytes(range(32)), "k1")
    trail = tmp_path / "audit.jsonl"
    settings = GuardSettings.load(
        {"NIRGUARD_KEY": pseudonym_key.to_text(), "NIRGUARD_AUDIT_LOG": str(trail),
         "NIRGUARD_AUDIT_KEY": NEXT.to_text()}
    )  # fmt: skip
    assert settings.audit_key == NEXT
    assert NEXT.to_text().split(":")[-1] not in repr(settings)
    guard = settings.build()
    with guard.lookup("10003456789", NIR) as lookup:
        lookup.record({"name": "x"})
    guard.close()
    assert verify_files([trail], NEXT).ok
    assert '"outcome":"allowed"' in trail.read_text()
    same = AuditKey(bytes(range(32)), "audit-1")  # the pseudonym key's material, re-labelled
    with pytest.raises(ConfigurationError, match="holds the pseudonym key"):
        GuardSettings.load({"NIRGUARD_KEY": pseudonym_key.to_text(),
                            "NIRGUARD_AUDIT_KEY": same.to_text()})  # fmt: skip
    with pytest.raises(ConfigurationError, match="not an audit key"):
        GuardSettings.load({"NIRGUARD_AUDIT_KEY": pseudonym_key.to_text()})
    with pytest.raises(ConfigurationError, match="NIRGUARD_AUDIT_KEY must be"):
        GuardSettings.load({"NIRGUARD_AUDIT_KEY": pseudonym_key})


def test_a_guard_writes_a_sealed_trail_and_the_exit_closes_it(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    script = (
        "import sys\n"
        "from nirguard import LookupGuard\n"
        "from nirguard.audit_chain import AuditKey, SealedAuditLog\n"
        "key = AuditKey.from_text(sys.argv[2])\n"
        "guard = LookupGuard(audit=SealedAuditLog(sys.argv[1], key))\n"
        "for _ in range(3):\n"
        "    with guard.lookup('10003456789', '1 85 05 78 006 084 91') as lookup:\n"
        "        lookup.record({})\n"
    )  # no close: the interpreter's exit writes the closing record after the queued events
    subprocess.run([sys.executable, "-c", script, str(trail), KEY.to_text()], check=True)
    report = verify_files([trail], KEY, require_closed=True)
    assert report.ok, report.text()
    assert report.writers[0].records == 5
    assert isinstance(LookupGuard(audit=SealedAuditLog(trail, KEY)), LookupGuard)


def test_an_idle_writer_writes_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = SealedAuditLog(path, KEY, checkpoint=0.2)
    sink(_event(1.0))
    deadline = time.monotonic() + 5
    while '"checkpoint"' not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.close()
    marks = [json.loads(line).get("chain") for line in lines_of(path)]
    assert marks[0] == "open" and "checkpoint" in marks and marks[-1] == "close"
    assert verify_files([path], KEY, require_closed=True).ok


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_a_chain_of_its_own(tmp_path: Path) -> None:
    chain = AuditChain(KEY, writer="portal")
    parent = chain.seal({"n": 1})["seal"]
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        seal = chain.seal({"n": 2})["seal"]
        os.write(write_end, json.dumps(seal).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = json.loads(pipe.read())
    assert child["writer"] != parent["writer"] and child["seq"] == 1 and child["prev"] == ""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_sink_shared_by_forked_workers_gives_each_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = SealedAuditLog(path, KEY, writer="portal", checkpoint=None)  # made before the fork
    sink(_event(1.0))
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - a worker
            for t in range(5):
                sink(_event(2.0 + t))
            sink.close()
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    sink(_event(9.0))
    sink.close()
    report = verify_files([path], KEY, require_closed=True)
    assert report.ok, report.text()
    assert sorted(w.records for w in report.writers) == [4, 7, 7]  # parent: open, 2, close


def test_the_sql_store_seals_in_the_chain_and_verifies(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    from nirguard.audit_sql import SqlAuditStore

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with SqlAuditStore(url, chain=AuditChain(KEY, writer="portal-1"), writer="portal-1") as store:
        for t in range(4):
            store.audit(_event(float(t)))
        store.flush()
        store.record_action("officer-a", "unlock", "p1", "called the GP")
        lines = list(store.sealed_lines())
    assert len(lines) == 5
    assert verify_lines(lines, KEY).ok
    assert codes(verify_lines(lines[:1] + lines[2:], KEY)) == [("removed", "line 2")]


JUNK = [
    "[" * 100_000 + "]" * 100_000,  # deep JSON
    '{"time": NaN, "seal": {}}',
    '{"a": 1, "a": 2}',  # a name twice: two readers could read two records
    '{"seal": {"v": 1, "key": "k", "writer": "w", "seq": true, "prev": "", "mac": ""}}',
    '{"seal": {"v": 1, "key": "k", "writer": "w", "seq": 1e300, "prev": "", "mac": ""}}',
    '{"seal": {"v": 1, "key": "audit-1", "writer": "w/../x", "seq": 1, "prev": "", "mac": ""}}',
    '{"seal": {"v": 2, "key": "audit-1", "writer": "w", "seq": 1, "prev": "", "mac": ""}}',
    '{"seal": ["v", 1]}',
    "\x00\xff\ud800",
    "",
    "   ",
]


def test_junk_never_raises_and_each_line_is_accounted_for(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 2)
    lines = [*lines_of(path), *JUNK]
    report = verify_lines(lines, KEY)
    flagged = {p.position for p in report.problems}
    assert flagged == {
        f"line {n}" for n in range(5, 5 + len(JUNK) - 2)
    }  # blank lines are no records
    many = verify_lines(["x"] * 300, KEY)
    text = many.text()
    assert text.count("unreadable") == 200 and text.endswith("... and 100 more problems")
