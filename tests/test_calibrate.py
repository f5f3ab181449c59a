"""nirguard calibrate: logs written by a real guard, replayed, measured and proposed from."""

from __future__ import annotations

import gzip
import io
import json
import sys
import tracemalloc
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nirguard import QuotaPolicy, nir
from nirguard.audit import REFUSED, WOULD
from nirguard.calibrate import LogSource, calibrate
from nirguard.calibrate._propose import Choice, _base, ceiling, floor, over_ceiling, period_text
from nirguard.calibrate._read import ReadStats, read
from nirguard.calibrate._report import format_text, policy_json, to_json
from nirguard.calibrate._run import looser
from nirguard.calibrate._stats import excess, percentile
from nirguard.cli import main
from tests.calibrate_helpers import (
    DAY,
    DESK,
    ENUMERATOR,
    GP,
    START,
    Portal,
    build_portal,
    drive,
    event_line,
    synthetic_lines,
)
from tests.conftest import assert_no_nir

CANDIDATES = {"gp": GP, "desk": DESK}


@pytest.fixture(scope="module")
def portal() -> Portal:
    return build_portal()


@pytest.fixture(scope="module")
def logs(portal: Portal, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    where = tmp_path_factory.mktemp("calibrate")
    enforced, shadow = where / "enforce.jsonl", where / "shadow.jsonl"
    return {
        "enforce": enforced,
        "shadow": shadow,
        "enforce_refusals": drive(portal, enforced, enforce=True),
        "shadow_refusals": drive(portal, shadow, enforce=False),
    }


@pytest.fixture(scope="module")
def shadow_result(logs: dict[str, object]):  # type: ignore[no-untyped-def]
    return calibrate([logs["shadow"]], CANDIDATES)  # type: ignore[list-item]


def _events(path: object) -> list[dict[str, object]]:
    return [json.loads(line) for line in Path(str(path)).read_text().splitlines()]


def _all_fields(result) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    """Per field, over every account: [refused itself, reason asked, locked by it]."""
    out: dict[str, list[int]] = {}
    for r in result.kinds:
        for summary in (r.candidate_kept, r.candidate_set_aside):
            for name, f in summary.fields.items():
                row = out.setdefault(name, [0, 0, 0])
                row[0] += f.refused
                row[1] += f.reason_required
                row[2] += f.locked
    return {name: row for name, row in out.items() if any(row)}


# -- the replay is the guard ---------------------------------------------------------------------


def test_enforcement_log_replays_to_exactly_the_refusals_the_guard_made(logs):
    guard = logs["enforce_refusals"]
    result = calibrate([logs["enforce"]], CANDIDATES, verify=False)
    replayed = Counter()
    for r in result.kinds:
        replayed.update(r.candidate_outcomes)
    assert replayed == guard.outcomes
    # Several fields refused, through lockouts, reasons and detection alike.
    assert {"distinct_patients", "cohort"} <= set(guard.fields)
    assert _all_fields(result) == guard.fields
    # And the log says the same as the exceptions did.
    logged = Counter(
        (e["outcome"], e["quota"])
        for e in _events(logs["enforce"])
        if e["outcome"] in REFUSED - {"invalid"}
    )
    assert +logged == guard.outcomes


def test_shadow_log_replays_to_its_would_refusals(logs):
    result = calibrate([logs["shadow"]], CANDIDATES, verify=False)
    replayed = Counter()
    for r in result.kinds:
        replayed.update({(WOULD[o], q): n for (o, q), n in r.candidate_outcomes.items()})
    logged = Counter(
        (e["outcome"], e["quota"])
        for e in _events(logs["shadow"])
        if str(e["outcome"]).startswith("would_")
    )
    assert replayed == logged
    assert logs["shadow_refusals"].outcomes == Counter()  # shadow mode refused nothing


def test_refusal_table_per_field_and_accounts(logs):
    result = calibrate([logs["enforce"]], CANDIDATES, verify=False)
    gp = next(r for r in result.kinds if r.kind == "gp")
    assert ENUMERATOR in gp.set_aside and "cohort" in gp.set_aside[ENUMERATOR]
    aside = gp.candidate_set_aside
    assert aside.accounts == aside.accounts_refused == 1
    cohort, strikes = aside.fields["cohort"], aside.fields["strikes"]
    # locked out at its cohort walk; it asks on for new numbers while locked: no strike,
    # but they spend the day's lookups, and the 4th lookups refusal after the lockout is a
    # strike lockout (a day); no retry while locked escalates it further
    assert cohort.lockouts == 1 and strikes.lockouts == 1
    assert aside.fields["lookups"].refused == 3
    assert cohort.locked + strikes.locked > 500
    kept = gp.candidate_kept
    assert kept.accounts == 31 and kept.accounts_refused == 1  # gp-busy, past 100/day
    assert set(kept.fields) == {"distinct_patients"}
    f = kept.fields["distinct_patients"]
    # gp-busy past 100 new patients: asked a reason, granted 3 times (the day's budget), then
    # locked out at the next new patient (an hour); it goes on with new patients while
    # locked: refused, no strike, not escalated; when the hour ends, its next new patient
    # meets the question the lockout left pending, and moving on locks it again (a day)
    assert f.accounts == 1 and f.lockouts == 2 and f.break_glass == 3
    assert kept.refused == f.lookups
    assert f.lookups == f.refused + f.reason_required + f.locked
    desk = next(r for r in result.kinds if r.kind == "desk")
    assert desk.candidate_kept.refused == 0


def test_a_stricter_candidate_refuses_more_and_says_where(logs):
    strict = QuotaPolicy(name="gp", distinct_patients="4/10 minutes;30/day;300/7 days")
    result = calibrate([logs["shadow"]], {"gp": strict, "desk": DESK}, verify=False)
    gp = next(r for r in result.kinds if r.kind == "gp")
    f = gp.candidate_kept.fields["distinct_patients"]
    assert f.accounts > 1 and gp.candidate_kept.accounts_refused >= f.accounts
    assert gp.candidate_kept.share > 0.01


# -- distributions -------------------------------------------------------------------------------


def _reference(portal: Portal, kind: str, period: float, *, new_only: bool) -> Counter[int]:
    """Fixed windows from the first hit, patients new within 7 days: straight from the NIRs."""
    hist: Counter[int] = Counter()
    by_who: dict[str, list[tuple[float, str]]] = {}
    for x in portal.lookups:
        if x.practitioner == ENUMERATOR or not nir.is_valid(x.nir):
            continue
        if x.practitioner.startswith("desk") == (kind == "desk"):
            by_who.setdefault(x.practitioner, []).append((x.time, x.nir))
    for lookups in by_who.values():
        seen: dict[str, float] = {}
        end, count = -1.0, 0
        for t, number in lookups:
            if new_only:
                if seen.get(number, -1.0) > t:
                    continue
                seen[number] = t + 7 * DAY
            if t >= end:
                if count:
                    hist[count] += 1
                end, count = t + period, 0
            count += 1
        hist[count] += 1
    return hist


@pytest.mark.parametrize(
    ("kind", "field", "period", "new_only"),
    [
        ("gp", "lookups", 60, False),
        ("gp", "lookups", 86400, False),
        ("gp", "distinct_patients", 600, True),
        ("gp", "distinct_patients", 86400, True),
        ("gp", "distinct_patients", 604800, True),
        ("desk", "lookups", 86400, False),
        ("desk", "distinct_patients", 86400, True),
    ],
)
def test_distributions_count_windows_as_the_guard_does(
    portal, shadow_result, kind, field, period, new_only
):
    report = next(r for r in shadow_result.kinds if r.kind == kind)
    hist = report.stats.histograms[field][period]
    assert Counter(hist) == _reference(portal, kind, period, new_only=new_only)
    shown = next(d for d in report.distributions if d.field == field and d.period == period)
    assert shown.max == max(hist)
    assert shown.percentiles[0] == percentile(hist, 50)


def test_distributions_of_cohorts_hot_cohorts_misses_and_break_glass(portal, logs, shadow_result):
    gp = next(r for r in shadow_result.kinds if r.kind == "gp").stats
    desk = next(r for r in shadow_result.kinds if r.kind == "desk").stats
    # The maternity: newborns of one cohort, several a day at a desk.
    assert max(desk.histograms["cohort"][86400]) >= 3
    # GPs never walk a cohort: one new patient per cohort a day, but for gp-00's three.
    assert gp.histograms["cohort"][86400].keys() == {1, 3}
    # gp-00's three patients born in the cohort the script had made hot.
    assert gp.hot_new == gp.hot_new_logged == 3
    assert max(gp.histograms["portal_cohort"][86400]) == 3
    # Hot is what the candidate's own settings make hot, on the whole portal's traffic.
    cool = QuotaPolicy(name="gp", hot_cohort_min=1000)
    cooled = calibrate([logs["shadow"]], {"gp": cool, "desk": DESK}, verify=False)
    gp_cool = next(r for r in cooled.kinds if r.kind == "gp").stats
    assert (gp_cool.hot_new, gp_cool.hot_new_logged) == (0, 3)
    legit_misses = sum(
        1
        for x in portal.lookups
        if not x.found and x.practitioner.startswith("gp-") and x.practitioner != ENUMERATOR
    )
    assert 0 < gp.misses <= legit_misses  # typos of a missing number are invalid, not misses
    assert gp.ratios and max(gp.ratios) < 50
    enforced = calibrate([logs["enforce"]], CANDIDATES, verify=False)
    gp_enforced = next(r for r in enforced.kinds if r.kind == "gp").stats
    assert gp_enforced.break_glass == 3  # gp-busy stated a reason 3 times, the day's budget
    assert max(gp_enforced.histograms["break_glass"][86400]) == 3


# -- the proposal --------------------------------------------------------------------------------


def test_proposal_loads_and_refuses_no_more_than_the_target(portal, shadow_result):
    assert shadow_result.target == 0.001
    proposed = {}
    for r in shadow_result.kinds:
        loaded = QuotaPolicy.from_json(policy_json(r))
        assert loaded == r.proposed and loaded.name == r.kind
        assert r.proposed_kept is not None and r.proposed_kept.share <= 0.001
        proposed[r.kind] = loaded
        # Every value says how it was chosen; rates stay within floors and ceilings.
        assert all(c.how for c in r.choices)
        for c in r.choices:
            if c.period is not None and c.value is not None and c.field != "miss_ratio":
                assert floor(c.field, c.period) <= c.value <= ceiling(c.field, c.period)
    # A real guard enforcing the proposals on the legitimate traffic (no enumerator):
    legit = drive(
        portal,
        None,
        enforce=True,
        policy=lambda who: proposed["desk" if who.startswith("desk") else "gp"],
        skip=frozenset({ENUMERATOR}),
    )
    assert sum(legit.outcomes.values()) <= 0.001 * legit.lookups
    # ... and they still stop the enumerator.
    caught = drive(
        portal,
        None,
        enforce=True,
        policy=lambda who: proposed["desk" if who.startswith("desk") else "gp"],
    )
    locked = [caught.fields.get(name, [0, 0, 0])[2] for name in ("cohort", "strikes")]
    assert locked[0] > 0 and sum(locked) > 500  # locked at its walk, then at its strikes


def test_proposal_is_raised_after_replay_when_the_target_is_missed(logs):
    # A candidate that locks out at the first breach: the first proposal refuses more than
    # the target through lockouts, so the fields that refused are raised to the observed max.
    harsh = QuotaPolicy(name="gp", break_glass=None, lockout_escalation=(None,))
    result = calibrate([logs["shadow"]], {"gp": harsh, "desk": DESK}, target=0.002, margin=0.0)
    gp = next(r for r in result.kinds if r.kind == "gp")
    assert gp.proposed_kept is not None
    if gp.adjusted:
        assert result.passes == 4
        assert all("observed max" in c.how for c in gp.choices if c.field in gp.adjusted)
    assert gp.proposed_kept.share <= 0.002


def test_base_is_the_smallest_value_within_the_budget():
    hist = {1: 100, 5: 3, 9: 1}
    assert excess(hist, 5) == 4 and excess(hist, 4) == 8
    assert _base(hist, 0) == 9
    assert _base(hist, 4) == 5
    assert _base(hist, 7) == 5
    assert _base(hist, 8) == 4
    assert _base({}, 3) == 0
    assert percentile(hist, 50) == 1 and percentile(hist, 99.9) == 9 and percentile({}, 50) == 0


def test_floors_ceilings_and_set_aside():
    assert ceiling("lookups", 60) == 60 and ceiling("lookups", 30) == 60
    assert ceiling("lookups", 7200) == 1200  # 2 x 600/hour, below 2000/day
    assert floor("distinct_patients", 600) == 5 and floor("distinct_patients", 86400) == 40
    assert floor("cohort", 600) == 1
    assert period_text(60) == "minute" and period_text(600) == "10 minutes"
    assert period_text(604800) == "7 days" and period_text(7200) == "2 hours"
    assert over_ceiling({("lookups", 60): 12}) is None
    assert "ceiling 30" in str(over_ceiling({("cohort", 86400): 31}))
    assert "miss ratio" in str(over_ceiling({("miss_ratio", 0): 0.95}))


def test_fields_without_data_or_off_are_kept():
    lines = [
        event_line(
            time=f"2026-01-0{1 + i // 10}T10:{i % 10:02d}:00Z",
            practitioner="gp-1",
            patient=f"p:{i}",
            outcome="allowed",
            kind="gp",
        )
        for i in range(40)
    ]
    policy = QuotaPolicy(name="gp", cohort=None)
    result = calibrate(LogSource(lines=lambda: lines), {"gp": policy})
    (gp,) = result.kinds
    how = {c.field: c.how for c in gp.choices}
    assert gp.proposed.cohort is None and "kept off" in how["cohort"]
    assert gp.proposed.misses == policy.misses and "no data" in how["misses"]
    assert gp.proposed.portal_cohort == policy.portal_cohort
    assert any("no cohort pseudonyms" in w for w in result.warnings)


# -- reading -------------------------------------------------------------------------------------


def test_reader_replays_attempts_and_counts_what_it_skips():
    base = {"time": "2026-01-01T10:00:00Z", "practitioner": "gp-1", "kind": "gp"}
    full = json.loads(event_line(**base, outcome="allowed"))
    lines = [
        event_line(**base, patient="p:1", outcome="allowed"),
        "2026-01-01 10:00:01 INFO portal.audit "
        + event_line(**base, patient="p:2", outcome="miss"),
        event_line(**base, patient="p:3", outcome="reason_required", quota="cohort"),
        event_line(**base, patient="p:3", outcome="break_glass", reason="TREAT"),
        event_line(**base, outcome="invalid", quota="invalid_nirs"),
        event_line(**base, outcome="locked", quota="locked"),
        event_line(**{**base, "practitioner": "<invalid>"}, outcome="denied", quota="practitioner"),
        event_line(**base, outcome="denied", quota="reason", patient=None),
        event_line(**base, patient="p:4", outcome="unguarded"),
        event_line(**base, patient="p:4", outcome="unavailable"),
        event_line(**{**base, "time": "2026-01-01T09:00:00Z"}, patient="p:5", outcome="would_lock"),
        "not json at all",
        "{broken",
        json.dumps({**full, "outcome": "teleported", "patient": "p:6"}),
        json.dumps({**full, "time": "yesterday", "patient": "p:7"}),
        "",
    ]
    stats = ReadStats()
    entries = list(read(LogSource(lines=lambda: lines), stats))
    assert [(e.action, e.reason, e.break_glass) for e in entries] == [
        (1, False, False),
        (2, False, False),
        (1, False, False),
        (1, True, True),
        (3, False, False),
        (3, False, False),
        (1, False, False),
    ]
    assert entries[-1].time == entries[-2].time  # an earlier event is kept in order
    assert (stats.lines, stats.entries, stats.input_refusals, stats.outages) == (16, 7, 2, 2)
    assert (stats.unreadable, stats.out_of_order) == (4, 1)
    assert stats.skipped == {"not JSON": 2, "bad outcome": 1, "bad time": 1}
    assert stats.locked == {"gp-1": 2}


def test_gzip_and_several_logs_in_order(logs, tmp_path):
    lines = Path(str(logs["enforce"])).read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl"
    first.write_bytes(gzip.compress(b"".join(lines[:half])))
    second.write_bytes(b"".join(lines[half:]))
    split = calibrate([first, second], CANDIDATES, verify=False)
    whole = calibrate([logs["enforce"]], CANDIDATES, verify=False)
    assert [r.candidate_outcomes for r in split.kinds] == [
        r.candidate_outcomes for r in whole.kinds
    ]
    assert split.log.entries == whole.log.entries


def test_bad_settings():
    source = LogSource(lines=list)
    with pytest.raises(ValueError, match="target"):
        calibrate(source, target=0)
    with pytest.raises(ValueError, match="margin"):
        calibrate(source, margin=-1)
    with pytest.raises(ValueError, match="paths"):
        LogSource()


# -- what it prints ------------------------------------------------------------------------------


def test_no_nir_and_no_pseudonym_in_any_output(portal, logs, shadow_result, tmp_path, capsys):
    pseudonyms = {
        str(e[key]) for e in _events(logs["shadow"]) for key in ("patient", "cohort") if e.get(key)
    }
    known = sorted(n for n in portal.everyone if nir.is_valid(n))[:2000]
    policy_files = tmp_path / "policies"
    assert main(["calibrate", str(logs["shadow"]), "--policy-dir", str(policy_files)]) == 0
    out = capsys.readouterr()
    texts = [
        format_text(shadow_result),
        to_json(shadow_result),
        out.out,
        out.err,
        *(p.read_text() for p in policy_files.iterdir()),
    ]
    for text in texts:
        assert_no_nir(text, *known)
        assert not any(p in text for p in pseudonyms)


def test_cli_text_json_progress_and_policy_files(logs, tmp_path, capsys):
    gp_file = tmp_path / "gp.json"
    gp_file.write_text(GP.model_dump_json())
    args = ["calibrate", str(logs["shadow"]), "--policy-json", f"gp={gp_file}"]
    args += ["--policy-json", "desk=" + DESK.model_dump_json(), "--target", "0.002"]
    assert main([*args, "--policy-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    assert "== gp:" in out.out and "== desk:" in out.out and "proposed policy" in out.out
    assert "pass 1 (distributions, candidate replay)" in out.err and "lines" in out.err
    for kind in ("gp", "desk"):
        loaded = QuotaPolicy.from_json((tmp_path / "out" / f"{kind}.json").read_text())
        assert loaded.name == kind
    assert main([*args, "--json", "--quiet", "--no-verify"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    data = json.loads(out.out)
    assert data["target"] == 0.002 and data["passes"] == 2
    kinds = {k["kind"]: k for k in data["kinds"]}
    assert kinds["gp"]["set_aside"].keys() == {ENUMERATOR}
    assert kinds["gp"]["proposed"]["kept"] is None
    QuotaPolicy.from_dict(kinds["desk"]["proposed"]["policy"])
    assert {d["field"] for d in kinds["gp"]["distributions"]} >= {"lookups", "miss_ratio"}


def test_cli_errors(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path / "missing.jsonl"), "--quiet"]) == 2
    assert "cannot read the log" in capsys.readouterr().err
    assert main(["calibrate", "x.jsonl", "--policy-json", '{"lookups": "lots"}']) == 2
    assert "invalid policy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", "x.jsonl", "--target", "5"])


def test_cli_reads_stdin(logs, monkeypatch, capsys):
    data = Path(str(logs["shadow"])).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["calibrate", "-", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["log"]["events"] == data.count(b"\n") and result["passes"] == 3


def test_plot(shadow_result, tmp_path):
    pytest.importorskip("matplotlib")
    from nirguard.calibrate._report import plot

    target = tmp_path / "curves.png"
    plot(shadow_result, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- streaming -----------------------------------------------------------------------------------


def test_progress_lines_and_pairs_on_a_generated_log():
    lines: list[str] = []
    result = calibrate(
        LogSource(lines=lambda: synthetic_lines(120_000)), verify=False, progress=lines.append
    )
    assert [line.split(" lines")[0].rsplit(" ", 1)[1] for line in lines] == [
        "50,000",
        "100,000",
        "120,000",
    ]
    assert all(line.startswith("pass 1 (distributions, candidate replay): ") for line in lines)
    assert result.log.entries == 120_000
    assert 0 < result.peak_pairs <= 2 * 100 * 200 and result.peak_records > 0


@pytest.mark.soak
def test_a_million_lines_stream_in_bounded_memory():
    """Memory follows the pairs alive in a window, not the length of the log."""
    samples: list[tuple[int, int]] = []

    def progress(line: str) -> None:
        lines = int(line.split(": ", 1)[1].split(" lines", 1)[0].replace(",", ""))
        samples.append((lines, tracemalloc.get_traced_memory()[0]))

    tracemalloc.start()
    try:
        result = calibrate(
            LogSource(lines=lambda: synthetic_lines(1_000_000)), verify=False, progress=progress
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.log.entries == 1_000_000
    early = max(m for n, m in samples if 150_000 <= n <= 300_000)
    late = max(m for n, m in samples if n >= 700_000)
    assert late < 1.25 * early, (early, late)
    assert peak < 40e6, peak
    assert result.peak_pairs <= 2 * 100 * 200  # pairs seen, and cohort windows open
    assert START  # the generated log starts where the portal's does


# -- a log nobody can poison: hostile lines, other loggers, warnings (issue 18.2) ---------------


def _injected(days: int = 10, accounts: int = 4, per_day: int = 400) -> list[str]:
    """JSON lines of another logger of the portal: a time, a practitioner, a patient..."""
    out = []
    for day in range(days):
        for a in range(accounts):
            for n in range(per_day):
                stamp = START + day * DAY + 8 * 3600 + n * 60 + a
                when = datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat()
                out.append(
                    json.dumps(
                        {
                            "time": when.replace("+00:00", "Z"),
                            "level": "info",
                            "logger": "portal.search",
                            "practitioner": f"svc-{a}",
                            "patient": f"x:{a}-{day}-{n}",
                            "outcome": "allowed",
                            "kind": "gp",
                            "msg": "patient search",
                        }
                    )
                    + "\n"
                )
    return out


def test_lines_of_another_logger_do_not_move_the_proposal(logs):
    clean = Path(str(logs["shadow"])).read_text().splitlines(keepends=True)
    mixed = sorted(clean + _injected(), key=lambda line: json.loads(line)["time"])
    before = calibrate(LogSource(lines=lambda: clean), CANDIDATES, verify=False)
    after = calibrate(LogSource(lines=lambda: mixed), CANDIDATES, verify=False)
    proposals = [(r.kind, r.proposed) for r in before.kinds]
    assert [(r.kind, r.proposed) for r in after.kinds] == proposals
    assert after.log.entries == before.log.entries
    assert after.log.skipped == {"not a nirguard audit event": 4 * 10 * 400}
    assert any("16,000 lines skipped" in w for w in after.warnings)
    assert "skipped, not a nirguard audit event: 16,000" in format_text(after)
    assert json.loads(to_json(after))["log"]["skipped"] == after.log.skipped


HOSTILE = {
    "deep JSON": '{"a":' * 12_000,
    "huge time": None,  # filled below: every field right but "time": 1e308
    "time far ahead": None,
    "kind outside the name pattern": None,
    "kind as a path": None,
    "NaN retry_after": None,
    "signals not a list": None,
    "top-level list": "[1, 2, 3]",
    "a string": '"allowed"',
    "huge line": '{"note": "' + "x" * 70_000 + '"}',
    "extra field": None,
    "unlocked": None,
}


def _hostile_lines() -> dict[str, str]:
    good = json.loads(
        event_line(time="2026-01-01T10:00:00Z", practitioner="gp-1", patient="p:1",
                   outcome="allowed", kind="gp")
    )  # fmt: skip
    lines = {name: line for name, line in HOSTILE.items() if line is not None}
    lines["huge time"] = json.dumps({**good, "time": 1e308})
    lines["time far ahead"] = json.dumps({**good, "time": "9999-12-31T23:59:59Z"})
    lines["kind outside the name pattern"] = json.dumps({**good, "kind": "general practice!"})
    lines["kind as a path"] = json.dumps({**good, "kind": "../../etc/cron.d/x"})
    lines["NaN retry_after"] = json.dumps({**good, "retry_after": float("nan")})
    lines["signals not a list"] = json.dumps({**good, "signals": "hot_cohort"})
    lines["extra field"] = json.dumps({**good, "msg": "patient search"})
    lines["unlocked"] = event_line(
        time="2026-01-01T11:00:00Z", practitioner="gp-1", outcome="unlocked", actor="admin"
    )
    return lines


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_one_hostile_line_is_skipped_never_a_traceback(name, tmp_path, capsys):
    good = [
        event_line(time=f"2026-01-01T10:{i:02d}:00Z", practitioner="gp-1", patient=f"p:{i}",
                   outcome="allowed", kind="gp")
        for i in range(30)
    ]  # fmt: skip
    log = tmp_path / "audit.jsonl"
    log.write_text("\n".join([*good[:15], _hostile_lines()[name], *good[15:]]) + "\n")
    result = calibrate([log], verify=False)
    assert result.log.entries == 30 and result.log.unreadable == 1
    assert [r.kind for r in result.kinds] == ["gp"]
    policies = tmp_path / "policies"
    code = main(["calibrate", str(log), "--quiet", "--policy-dir", str(policies)])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err
    assert "lines skipped" in out.out
    assert sorted(p.name for p in policies.iterdir()) == ["gp.json"]
    assert not (tmp_path.parent / "etc").exists()


def test_warnings_name_locked_and_set_aside_accounts_and_a_looser_proposal(logs):
    strict = QuotaPolicy(name="gp", distinct_patients="4/10 minutes;20/day;60/7 days")
    result = calibrate([logs["shadow"]], {"gp": strict, "desk": DESK}, verify=False)  # type: ignore[list-item]
    text = "\n".join(result.warnings)
    assert result.log.locked.get(ENUMERATOR, 0) > 0
    assert "lockout events" in text and ENUMERATOR in text.split("lockout events", 1)[1]
    assert f"gp: 1 account(s) set aside, beyond any sane policy: {ENUMERATOR}." in text
    (gp,) = [r for r in result.kinds if r.kind == "gp"]
    assert gp.proposed.distinct_patients != strict.distinct_patients
    assert "gp: the proposal is looser than the policy in force: distinct_patients per" in text
    loose = looser(strict, gp.choices)
    assert loose and f"the policy in force: {'; '.join(loose)}" in text


def test_looser_compares_window_by_window():
    gp = QuotaPolicy(name="gp", distinct_patients="8/10 minutes;100/day", miss_ratio=0.5)
    choices = [
        Choice("distinct_patients", 600, 8, ""),
        Choice("distinct_patients", 86400, 120, ""),
        Choice("miss_ratio", 86400, 0.6, ""),
        Choice("cohort", None, None, ""),
    ]
    assert looser(gp, choices) == [
        "distinct_patients per day 120 > 100",
        "miss_ratio 0.6 > 0.5",
    ]


def test_events_without_a_kind_go_to_untagged(tmp_path, capsys):
    lines = [
        event_line(time=f"2026-01-01T10:{i:02d}:00Z", practitioner="gp-1", patient=f"p:{i}",
                   outcome="allowed")
        for i in range(30)
    ]  # fmt: skip
    log = tmp_path / "audit.jsonl"
    log.write_text("\n".join(lines) + "\n")
    assert main(["calibrate", str(log), "--quiet", "--policy-dir", str(tmp_path / "p")]) == 0
    assert "== (untagged):" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["(untagged).json"]
    QuotaPolicy.from_json((tmp_path / "p" / "(untagged).json").read_text())


def test_a_sealed_trail_is_read_whole_without_a_warning(tmp_path):
    from nirguard.audit import AuditEvent
    from nirguard.audit_chain import AuditKey, SealedAuditLog

    path = tmp_path / "audit.jsonl"
    sink = SealedAuditLog(path, AuditKey.generate("audit-2026"), checkpoint=None)
    for i in range(40):
        sink(
            AuditEvent(time=START + 60 * i, practitioner="gp-1", patient=f"k1:{i}",
                       outcome="allowed", kind="gp")
        )  # fmt: skip
    sink.close()
    result = calibrate([path], verify=False)
    assert result.log.entries == 40
    assert result.log.skipped == {"audit chain record": 2}  # its open and close records
    assert not any("skipped" in w for w in result.warnings)


def test_the_replay_sees_hot_cohorts_from_the_logs_first_day() -> None:
    # The log was written by a guard that had long watched the portal; calibrate replays
    # it on a fresh store, where the store's warm-up (hot_cohort_warmup, 14 days by
    # default) would call no cohort hot in the log's first days.
    from nirguard._compiled import compile_policy
    from nirguard.calibrate._read import LOOKUP, Entry
    from nirguard.calibrate._replay import Replay

    policy = QuotaPolicy(name="gp")
    assert policy.hot_cohort_warmup is not None
    replay = Replay({None: compile_policy(policy)})
    hot = [
        replay.add(
            Entry(START + i, f"dr-{i}", None, LOOKUP, f"p{i}", "cohort-1", False, False, False)
        )
        for i in range(60)
    ]
    assert any(hot)
