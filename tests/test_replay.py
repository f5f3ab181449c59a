"""The replay behind ``nirguard simulate``: world model, attacks, passes, report.

Small worlds (scale 0.02: 40 accounts, about 40,000 people; a week of
history and two attack days) exercise the whole pipeline through the real
guard. The targets themselves are the replay's report, not timed tests.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from nirguard import nir
from nirguard.cli import build_parser, main
from nirguard.replay import ReplaySettings, run_replay
from nirguard.replay.attacks import (
    DESCRIPTIONS,
    FAST,
    OWNED,
    RETRY_PAIRS,
    STRATEGIES,
    TACTICS,
    build_attack,
)
from nirguard.replay.outcome import QUIET, Outcome, ReplayResult
from nirguard.replay.practitioners import (
    DAY,
    LOOKUP,
    TYPO,
    UNKNOWN,
    accounts_for,
    build_workload,
    typo,
)
from nirguard.replay.registry import LOCAL_POOL, PEOPLE_PER_SCALE, build_registry
from nirguard.replay.report import closing_line, format_table, targets, to_json
from nirguard.replay.runner import run_replay as _run
from nirguard.replay.simulation import guard_features
from nirguard.replay.tactics import FAST_INTERVAL, Attack, Tactics, slow_interval
from nirguard.replay.walks import attack_material
from nirguard.replay.world import build_world

NIR_SHAPED = re.compile(r"(?<![0-9])[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?(?![0-9])")
FEATURES = guard_features()

SMALL = ReplaySettings(
    seed=11,
    scale=0.02,
    history_weeks=1,
    attack_days=2,
    strategies=("enumeration", "list", "spread", "break-glass"),
    jobs=1,
)


@pytest.fixture(scope="module")
def small_result():
    return run_replay(SMALL)


@pytest.fixture(scope="module")
def registry():
    return build_registry(0.02, seed=5)


# --------------------------------------------------------------------------- registry


def test_registry_numbers_are_valid_unique_and_found(registry):
    rng = random.Random(1)
    people = [rng.randrange(len(registry)) for _ in range(3000)]
    numbers = [registry.nir(p) for p in people]
    assert all(nir.is_valid(n) for n in numbers)
    assert [registry.find(n) for n in numbers] == people
    assert len(set(numbers)) == len(set(people))


def test_cohorts_are_whole_sorted_and_dense_from_001(registry):
    for c in range(0, registry.cohorts, 53):
        orders = list(registry.orders(c))
        assert orders == sorted(orders)
        assert len(orders) == registry.size(c)
        assert orders[0] >= 1
        assert orders[-1] <= registry.top(c) <= 999
        prefix = registry.prefix(c)
        for rank, order in enumerate(orders):
            person = registry.start(c) + rank
            assert registry.nir(person)[:10] == prefix
            assert registry.cohort_of(person) == c
            assert registry.order(person) == order
    # A number of nobody in an existing cohort is not found.
    c = max(range(registry.cohorts), key=registry.size)
    missing = next(o for o in range(1, 1000) if o not in set(registry.orders(c)))
    assert registry.find(registry.nir_from_order(c, missing)) is None


def test_registry_has_maternity_towns_corsica_overseas_and_abroad():
    big = build_registry(0.3, seed=2)
    departments: Counter[str] = Counter()
    metro_sizes = []
    for c in range(big.cohorts):
        parsed = nir.parse(big.nir(big.start(c), c))
        departments[parsed.department] += big.size(c)
        if len(parsed.department) == 2 and parsed.department != "99":
            metro_sizes.append(big.size(c))
    assert departments["2A"] + departments["2B"] + departments["20"] > 0
    assert sum(v for d, v in departments.items() if len(d) == 3) > 0  # overseas
    assert 0.08 < departments["99"] / len(big) < 0.2  # born abroad
    # A maternity town's month: 120-400 people of one sex (the largest more).
    assert max(metro_sizes) >= 300
    assert sum(1 for n in metro_sizes if 120 <= n <= 400) >= 50
    # Most cohorts are a handful of people born at home or in small places.
    assert sorted(metro_sizes)[len(metro_sizes) // 2] <= 3
    months = Counter(big.prefix(c)[3:5] for c in range(big.cohorts))
    assert months["20"] > 0  # born abroad, month unknown


def test_scale_grows_cohorts_not_their_size():
    small, large = build_registry(0.05, seed=1), build_registry(0.2, seed=1)
    assert 0.8 < len(large) / len(small) / 4 < 1.25
    assert abs(len(small) - 0.05 * PEOPLE_PER_SCALE) < 0.15 * 0.05 * PEOPLE_PER_SCALE
    top = sorted((small.size(c) for c in range(small.cohorts)), reverse=True)[20]
    top_large = sorted((large.size(c) for c in range(large.cohorts)), reverse=True)[80]
    assert 0.5 < top / top_large < 2  # the 20th of 1/4 as many cohorts ~ the 80th


def test_regions_keep_a_department_sized_local_pool():
    one = build_registry(0.05, seed=3)
    assert len({r for a, r in one.regions.items() if a != "99"}) == 1
    three = build_registry(3.0, seed=3)
    regions = {r for a, r in three.regions.items() if a != "99"}
    assert len(regions) > 3
    assert all(three.area_people[r] >= LOCAL_POOL for r in regions)


def test_registry_is_deterministic_and_refuses_bad_scales():
    assert build_registry(0.01, seed=1).nir(100) == build_registry(0.01, seed=1).nir(100)
    assert build_registry(0.01, seed=1).cohorts != build_registry(0.01, seed=2).cohorts
    with pytest.raises(ValueError, match="positive"):
        build_registry(0)


# --------------------------------------------------------------------------- practitioners


def test_typo_is_one_substitution_or_adjacent_swap_and_invalid(registry):
    rng = random.Random(3)
    for person in range(0, len(registry), 17):
        number = registry.nir(person)
        typed = typo(number, rng)
        assert not nir.is_valid(typed)
        diff = [i for i in range(15) if typed[i] != number[i]]
        assert len(diff) in (1, 2)
        if len(diff) == 2:
            i, j = diff
            assert j == i + 1
            assert (typed[i], typed[j]) == (number[j], number[i])


@pytest.fixture(scope="module")
def workload(registry):
    return build_workload(registry, 120, history_weeks=2, attack_days=7, seed=4)


def test_workload_looks_like_care(registry, workload):
    times = list(workload.times)
    assert times == sorted(times)
    kinds = Counter(workload.kind)
    typed = kinds[LOOKUP] + kinds[UNKNOWN]
    assert 0.01 < kinds[TYPO] / typed < 0.03
    assert 0 < kinds[UNKNOWN] / typed < 0.01
    for e in range(0, len(workload), 7):
        if workload.kind[e] == TYPO:
            assert not nir.is_valid(workload.typed[e])
        elif workload.kind[e] == LOOKUP:
            assert registry.cohort_of(workload.person[e]) == workload.cohort[e]
        else:
            assert registry.find(workload.typed[e]) is None
            assert nir.is_valid(workload.typed[e])
    accounts = Counter(p.kind for p in workload.practitioners)
    assert accounts["hospital"] >= 1 and accounts["pharmacy"] >= 1 and accounts["new_gp"] >= 1
    gp = workload.weekly_volume("gp")
    assert 90 <= gp["lookups_median"] <= 180  # about 25 a working day
    assert gp["distinct_median"] < gp["lookups_median"]  # patients come back
    sunday = [
        e
        for e in range(len(workload))
        if workload.practitioners[workload.who[e]].kind == "gp"
        and workload.times[e] // DAY % 7 == 6
    ]
    assert not sunday


def test_history_comes_before_the_attack_week(workload):
    assert workload.attack_day == 14
    split = workload.split
    assert workload.times[split - 1] < 14 * DAY <= workload.times[split]
    assert workload.count(0, split)["lookups"] > workload.count(split)["lookups"]


def test_new_gps_see_mostly_new_patients(workload):
    idx = [i for i, p in enumerate(workload.practitioners) if p.kind == "new_gp"]
    gps = [i for i, p in enumerate(workload.practitioners) if p.kind == "gp"]
    new = sum(workload.week_new[i] for i in idx) / max(
        1, sum(workload.week_lookups[i] for i in idx)
    )
    old = sum(workload.week_new[i] for i in gps) / sum(workload.week_lookups[i] for i in gps)
    assert new > 0.9
    assert new >= old


# --------------------------------------------------------------------------- attacks


def test_slow_pace_stays_under_every_rate():
    policy = {"lookups": "30/minute;300/day", "distinct_patients": "60/day", "misses": "10/hour"}
    interval = slow_interval(policy)
    assert interval >= 86400 / 60
    assert 86400 / interval < 60
    assert slow_interval({}) == FAST_INTERVAL


def test_enumeration_computes_valid_keys_and_list_has_no_misses(registry):
    enum = build_attack("enumeration", registry, accounts=2, seed=1)
    tried = [enum.next_nir(0) for _ in range(200)]
    assert all(n is not None and nir.is_valid(n) for n in tried)
    assert len({n[:10] for n in tried if n}) < 50  # walks within cohorts
    leak = build_attack("list", registry, accounts=2, seed=1)
    listed = [leak.next_nir(1) for _ in range(200)]
    assert all(n is not None and registry.find(n) is not None for n in listed)
    assert len(set(listed)) == 200


def test_unknown_strategy_is_refused(registry):
    with pytest.raises(ValueError, match="unknown strategy"):
        build_attack("telepathy", registry)


@pytest.mark.parametrize("strategy", ["enumeration", "list"])
def test_unguarded_shortcuts_match_the_script(registry, strategy):
    """The closed-form unguarded runs are the scripts' own walks."""
    material = attack_material(registry, 2)
    for end in (4000.0, 2 * 86400.0):
        fast = build_attack(strategy, registry, accounts=3, seed=2, material=material)
        slow = build_attack(strategy, registry, accounts=3, seed=2, material=material)
        got, found, attempts = fast.unguarded(registry, end)
        ref, ref_found, ref_attempts = Attack.unguarded(slow, registry, end)
        assert sorted(got) == sorted(ref)
        assert (found, attempts) == (ref_found, ref_attempts)


def _times(attack: Attack, account: int, count: int) -> list[float]:
    t, out = attack.start[account], []
    for _ in range(count):
        out.append(t)
        attack.next_nir(account)
        t = attack.next_time(account, t)
    return out


def test_burst_is_40_lookups_a_minute_then_sleep(registry):
    burst = build_attack("burst", registry, accounts=2, seed=1)
    times = _times(burst, 0, 120)
    assert times[39] - times[0] <= 60
    assert times[40] - times[39] >= 3000
    assert times[80] - times[40] == pytest.approx(3600, abs=1)


def test_spread_variants(registry):
    policy = {"distinct_patients": "8/10 minutes;100/day;300/7 days"}
    spread = build_attack("spread", registry, policy=policy, seed=1)
    assert spread.interval >= 7 * 86400 / 300
    walk = [spread.next_nir(i % 19) for i in range(60)]
    assert len({n[:10] for n in walk if n}) <= 3  # one cohort after another, 001 upwards
    parallel = build_attack("spread-parallel", registry, policy=policy, seed=1)
    cohorts = [n[:10] for n in (parallel.next_nir(0) for _ in range(16)) if n]
    assert len(set(cohorts[:8])) == 8  # eight cohorts at once
    randomised = build_attack("spread-random", registry, policy=policy, seed=1)
    first = [randomised.next_nir(0) for _ in range(30)]
    orders = [int(n[10:13]) for n in first if n and n[:10] == first[0][:10]]
    assert orders != sorted(orders)
    rotating = build_attack("spread-rotating", registry, policy=policy, seed=1)
    assert rotating.interval == pytest.approx(spread.interval / 3)
    for account in range(3):
        for t in _times(rotating, account, 200):
            assert int(t % 86400 // (86400 / 3)) == account % 3  # on shift


def test_break_glass_states_reasons(registry):
    attack = build_attack("break-glass", registry, seed=1)
    assert attack.tactics.always_reason
    assert attack.tactics.on_reason == "reason"
    assert attack.reason(0, 5) == "ETREAT"
    assert {attack.reason(1, k) for k in range(8)} == {"ETREAT", "TREAT", "COC", "PATRQT"}
    assert not build_attack("list", registry).tactics.always_reason


def test_every_strategy_says_what_it_does():
    assert set(DESCRIPTIONS) == set(STRATEGIES)
    assert all(len(text) < 100 for text in DESCRIPTIONS.values())
    for tactics in (Tactics(), *TACTICS.values()):
        assert "after a 428" in tactics.describe()


def test_the_answer_to_a_refusal_is_a_parameter(registry):
    plain = build_attack("list", registry, accounts=2, seed=1)
    assert plain.after_refusal(0, 100.0, True, None) == (False, 100.0 + FAST_INTERVAL)
    assert plain.after_refusal(0, 100.0, False, 300.0) == (True, 400.0)
    assert plain.after_refusal(0, 100.0, False, None) is None  # locked until unlocked
    fast = build_attack("retry-fast", registry, accounts=2, seed=1)
    answers = [fast.after_refusal(1, 10.0 * k, True, None) for k in range(200)]
    assert answers[:199] == [(True, 10.0 * k + 1.0) for k in range(199)]
    assert answers[199] == (True, 1990.0 + 3600.0)  # 200 in a row, then it rests
    paced = build_attack("retry-paced", registry, accounts=2, seed=1)
    assert paced.after_refusal(0, 0.0, False, 3600.0) == (True, 100.0)
    moving = build_attack("move-on", registry, accounts=2, seed=1)
    assert moving.after_refusal(0, 0.0, False, 3600.0) == (False, FAST_INTERVAL)
    moving = build_attack("move-on-paced", registry, accounts=2, seed=1)
    assert moving.after_refusal(0, 0.0, False, 3600.0) == (False, 100.0)
    assert moving.after_refusal(0, 0.0, True, None) == (False, 100.0)
    policy = {"distinct_patients": "8/10 minutes;120/day;350/7 days"}
    slowing = build_attack("slow-down", registry, accounts=2, seed=1, policy=policy)
    assert slowing.next_time(0, 0.0) == FAST_INTERVAL
    slowing.after_refusal(0, 0.0, True, None)
    assert slowing.next_time(0, 0.0) == pytest.approx(7 * 86400 / 350 * 1.02)
    assert slowing.next_time(1, 0.0) == FAST_INTERVAL  # only the refused account slows
    custom = build_attack("list", registry, tactics=Tactics(on_denied="drop", wait=7.0))
    assert custom.after_refusal(0, 0.0, False, 60.0) == (False, 7.0)


def test_the_runner_asks_a_refused_number_again_or_moves_on(registry):
    from nirguard.replay.attack_runner import AttackRunner

    for strategy, again in (("retry-paced", True), ("list", False)):
        attack = build_attack(strategy, registry, accounts=1, seed=1, start=0.0)
        asked: list[str] = []

        def call(who: int, number: str, person: object, reason: object, session: object) -> object:
            asked.append(number)
            return ("reason_required", "distinct_patients", None) if len(asked) == 1 else None

        runner = AttackRunner(attack, [0], call, lambda t: None, registry.find, 10_000.0)
        runner.until(2_000.0)
        assert (asked[1] == asked[0]) is again
        assert runner.tally.asked == [1]
        assert runner.tally.first_refusal[0] is not None
        assert runner.tally.got[0] == len(set(asked)) - (0 if again else 1)


def test_gp_paced_harvesters_keep_a_gps_hours(registry):
    paced = build_attack("gp-paced", registry, accounts=3, seed=1, start=3600.0)
    times = _times(paced, 0, 400)
    assert all(t % 86400 // 3600 in range(8, 20) for t in times)
    assert all(t // 86400 % 7 < 5 for t in times)  # Monday to Friday
    per_day = Counter(int(t // 86400) for t in times)
    assert 30 <= sorted(per_day.values())[len(per_day) // 2] <= 50
    around = build_attack("owner-24-7", registry, accounts=["gp-00001"], seed=1, start=3600.0)
    times = _times(around, 0, 400)
    assert {int(t // 86400) % 7 for t in times} == set(range(7))
    assert {int(t % 86400 // 3600) for t in times} == set(range(24))
    assert around.owners and not paced.owners
    assert set(OWNED) <= set(STRATEGIES)


def test_padding_looks_people_up_again(registry):
    padded = build_attack("padded", registry, accounts=1, seed=1)
    numbers = []
    for _ in range(500):
        number = padded.next_nir(0)
        assert number is not None
        numbers.append(number)
        padded.feedback(0, registry.find(number) is not None)
    again = len(numbers) - len(set(numbers))
    assert 0.3 * len(numbers) < again < 0.5 * len(numbers)


def test_spread_wide_walks_hundreds_of_cohorts_at_once(registry):
    wide = build_attack("spread-wide", registry, seed=1)
    cohorts = {n[:10] for n in (wide.next_nir(0) for _ in range(200)) if n}
    assert len(cohorts) == 200


def test_owner_strategies_steal_legitimate_gps_accounts():
    world = build_world(replace(SMALL, strategies=("owner",)))
    attack = world.attack("owner")
    gps = {p.id for p in world.workload.practitioners if p.kind == "gp"}
    assert set(attack.accounts) <= gps
    assert len(attack.accounts) == SMALL.attackers
    assert world.attack("list").accounts == world.attackers()


# --------------------------------------------------------------------------- passes


def test_replay_is_deterministic_for_a_seed(small_result):
    again = run_replay(SMALL)
    assert _without_seconds(to_json(again)) == _without_seconds(to_json(small_result))


def _without_seconds(text: str) -> dict[str, object]:
    data = json.loads(text)
    data.pop("seconds")
    return data


def test_worker_processes_do_not_change_the_result(small_result):
    other = run_replay(replace(SMALL, jobs=2))
    assert _without_seconds(to_json(other)) == _without_seconds(to_json(small_result))


def test_a_week_replayed_again_equals_a_week_forked_after_the_history(monkeypatch):
    """Where processes cannot fork, a fresh pass replays the history before each week:
    the same result as a week forked after the history."""
    from nirguard.replay import passes

    settings = replace(SMALL, strategies=("spread", "owner"), shadow=False)
    forked = run_replay(settings)
    monkeypatch.setattr(passes, "can_fork", lambda: False)
    again = run_replay(settings)
    assert _without_seconds(to_json(again)) == _without_seconds(to_json(forked))


def test_the_guard_exposes_far_less_than_no_guard(small_result):
    for strategy in ("enumeration", "list"):
        none = small_result.outcome(strategy, "none")
        guard = small_result.outcome(strategy, "guard")
        assert none.exposed > 1000
        assert guard.exposed < 0.1 * none.exposed
        assert guard.first_signal_lookups is not None
        assert guard.first_signal_lookups <= 50
        assert guard.accounts_signalled == SMALL.attackers
    assert small_result.outcome("enumeration", "none").first_signal_lookups is None


def test_legitimate_lookups_and_typos_are_counted_apart(small_result):
    world = small_result.world
    for o in small_result.outcomes:
        if o.legit is None:
            continue
        assert o.legit.total_lookups == world["attack_week_lookups"]["lookups"]
        assert o.legit.typos == world["attack_week_lookups"]["typos"]
        assert o.legit_all is not None
        history = world["history_lookups"]["lookups"]
        assert o.legit_all.total_lookups == history + o.legit.total_lookups


def test_exposure_curve_ends_at_the_total(small_result):
    for outcome in small_result.outcomes:
        curve = outcome.exposure_by_hour
        assert len(curve) == SMALL.attack_days * 24
        assert curve == sorted(curve)
        assert curve[-1] == outcome.exposed


@pytest.mark.skipif(not FEATURES.shadow, reason="the installed guard has no shadow mode")
def test_shadow_mode_reports_enforcements_first_refusals(small_result):
    for o in small_result.outcomes:
        if o.configuration == "guard":
            assert o.shadow is not None
            assert o.shadow.refused == 0
            assert o.shadow.same == o.shadow.accounts, o.shadow.differences


@pytest.mark.skipif(not FEATURES.reason, reason="the installed guard has no break-glass")
def test_break_glass_attacker_gets_at_most_its_budget(small_result):
    from nirguard import QuotaPolicy

    o = small_result.outcome("break-glass", "guard")
    weekly = max(item.amount for item in QuotaPolicy().items("break_glass"))
    assert o.break_glass <= SMALL.attackers * weekly


# --------------------------------------------------------------------------- report


def test_table_reads_on_its_own_and_shows_no_nir(small_result):
    table = format_table(small_result)
    text = to_json(small_result)
    data = json.loads(text)
    assert {t["name"] for t in data["targets"]} == {t.name for t in targets(small_result)}
    for strategy in SMALL.strategies:
        assert strategy in table
    for word in ("Legend", "identities exposed", "first signal", "typos", "Targets"):
        assert word in table
    assert NIR_SHAPED.search(table) is None
    assert NIR_SHAPED.search(text) is None
    assert data["summary"] == closing_line(small_result)


def test_numbers_agree_between_header_table_and_closing_line(small_result):
    table = format_table(small_result)
    week = small_result.world["attack_week_lookups"]["lookups"]
    assert f"Legitimate lookups in the attack week: {week:,}" in table
    assert f"{week:,} legitimate lookups of the attack week" in closing_line(small_result)
    biggest = max(o.exposed for o in small_result.outcomes if o.configuration == "none")
    assert f"{biggest:,}" in closing_line(small_result)


def test_targets_cover_the_issue(small_result):
    names = " ".join(t.name for t in targets(small_result))
    for words in ("GPs", "desks", "portal-wide", "fast attack", "first signal"):
        assert words in names


# --------------------------------------------------------------------------- CLI


CLI_SMALL = ["--scale", "0.02", "--history-weeks", "1", "--attack-days", "1", "--jobs", "1"]


def test_cli_json(capsys):
    code = main(["simulate", *CLI_SMALL, "--strategy", "list", "--json", "--quiet"])
    out = capsys.readouterr()
    assert code == 0
    data = json.loads(out.out)
    assert {o["strategy"] for o in data["outcomes"]} == {"list"}
    assert {o["configuration"] for o in data["outcomes"]} == {"none", "guard"}
    assert out.err == ""
    assert NIR_SHAPED.search(out.out) is None


def test_cli_progress_goes_to_stderr(capsys):
    code = main(["simulate", *CLI_SMALL, "--strategy", "enumeration", "--no-shadow"])
    out = capsys.readouterr()
    assert code == 0
    assert "history" in out.err or "building" in out.err
    assert "Legend" in out.out


def test_cli_policy_override_and_compare_quotas(capsys, tmp_path):
    policy = tmp_path / "loose.json"
    policy.write_text(json.dumps({"lookups": "100000/day"}), encoding="utf-8")
    args = ["simulate", *CLI_SMALL, "--strategy", "slow", "--json", "--quiet", "--compare-quotas"]
    assert main([*args, "--policy-json", str(policy)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["policy"]["lookups"] == "100000/day"
    assert {o["configuration"] for o in data["outcomes"]} == {"none", "quotas", "guard"}


def test_cli_scales_prints_the_scale_table(capsys):
    args = ["simulate", "--scales", "0.01,0.02", "--quick", "--strategy", "list", "--quiet"]
    assert main([*args, "--jobs", "1", "--no-shadow", "--attack-days", "1"]) == 0
    out = capsys.readouterr().out
    assert "by scale" in out
    assert "0.01" in out and "0.02" in out


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--jobs", "0", "at least 1"),
        ("--attackers", "0", "at least 1"),
        ("--attack-days", "0", "at least 1"),
        ("--history-weeks", "-1", "at least 0"),
        ("--jobs", "two", "whole number"),
    ],
)
def test_cli_whole_numbers_have_their_floor(capsys, flag, value, message):
    # refused by argparse before any world is built (exit 2, the reason on stderr)
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", flag, value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_whole_numbers_take_their_floor():
    parser = build_parser()
    args = parser.parse_args(["simulate", "--history-weeks", "0", "--jobs", "1"])
    assert (args.history_weeks, args.jobs) == (0, 1)


def test_cli_bad_policy_is_a_clear_error(capsys):
    code = main(["simulate", *CLI_SMALL, "--policy-json", '{"lookups": "lots"}'])
    assert code == 2
    assert "invalid policy" in capsys.readouterr().err


def test_cli_plot_without_matplotlib_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = main(["simulate", *CLI_SMALL, "--plot", "x.png", "--quiet"])
    assert code == 2
    assert "'.[plot]'" in capsys.readouterr().err


def test_plot_writes_a_png(small_result, tmp_path: Path):
    pytest.importorskip("matplotlib")
    from nirguard.replay.report import plot

    target = tmp_path / "exposure.png"
    plot(small_result, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tuning_prints_one_json_row_per_candidate(capsys):
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "tools" / "replay_tuning.py"
    spec = importlib.util.spec_from_file_location("replay_tuning", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tuning = module.main

    args = ["--scales", "0.01", "--quick", "--strategy", "list", "--attack-days", "1"]
    assert tuning([*args, "--candidate", "shipped", "--candidate", 'loose={"cohort": null}']) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["candidate"] for r in rows] == ["shipped", "loose"]
    assert rows[1]["fields"] == {"cohort": None}
    assert "gp_refused_week" in rows[0] and "list_exposed" in rows[0]


def test_every_strategy_runs(registry):
    world_settings = replace(SMALL, scale=0.01, strategies=STRATEGIES, attack_days=1, shadow=False)
    result = run_replay(world_settings)
    assert set(result.strategies) == set(STRATEGIES)
    assert accounts_for(0.01) == 20


@pytest.mark.skipif(not FEATURES.shadow, reason="the installed guard has no shadow mode")
def test_shadow_equals_enforcement_whatever_the_policy():
    """Property: for any policy and world, shadow mode's first would-refusal of every
    account is enforcement's first refusal (same lookup, same quota or signal)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from nirguard import QuotaPolicy

    @settings(max_examples=6, deadline=None, derandomize=True)
    @given(
        seed=st.integers(0, 1000),
        cohort=st.integers(2, 6),
        burst=st.integers(3, 10),
        hot=st.floats(1.5, 6.0),
        hot_min=st.integers(2, 20),
        action=st.sampled_from(["alert", "reason"]),
    )
    def check(seed: int, cohort: int, burst: int, hot: float, hot_min: int, action: str) -> None:
        policy = QuotaPolicy(
            cohort=f"{cohort}/day",
            distinct_patients=f"{burst}/10 minutes;100/day;300/7 days",
            hot_cohort=hot,
            hot_cohort_min=hot_min,
            hot_cohort_action=action,
        )
        result = run_replay(
            replace(
                SMALL,
                seed=seed,
                scale=0.01,
                attack_days=1,
                policy=policy,
                strategies=("enumeration", "spread", "break-glass"),
            )
        )
        for o in result.outcomes:
            if o.configuration == "guard":
                assert o.shadow is not None
                assert o.shadow.refused == 0
                assert o.shadow.same == o.shadow.accounts, o.shadow.differences

    check()


def test_no_strategy_replays_a_quiet_week():
    result = _run(replace(SMALL, strategies=(), scale=0.01, attack_days=1, shadow=False))
    quiet = result.outcome(QUIET, "guard")
    assert quiet.exposed == 0
    assert quiet.legit is not None and quiet.legit.total_lookups > 0


# --------------------------------------------------------------------------- alerts, legend, trade-off


def _outcome(strategy: str, **fields) -> Outcome:
    return Outcome(strategy, "guard", **fields)


def _result(*outcomes: Outcome) -> ReplayResult:
    return ReplayResult(settings={}, world={}, features={}, history={}, outcomes=list(outcomes))


def test_alert_times_count_refused_accounts_never_alerted():
    o = _outcome(
        "list",
        refusal_hours=[0.1, 0.2, None, 0.3],
        alert_after_refusal_hours=[0.5, None, None, -0.1],
        alert_hours=[0.6, None, None, 0.2],
    )
    median, latest = o.after_refusal()
    assert (median, latest) == (0.5, float("inf"))  # 0 (alert first), 0.5, never
    assert o.never_alerted == 2
    assert o.alert_max_hours == 0.6
    data = o.to_dict()
    assert data["alert_after_refusal_max_hours"] == "never"
    assert data["never_alerted"] == 2


def test_alert_targets_follow_the_slowest_stolen_account():
    quick = _outcome(
        "list", refusal_hours=[0.1], alert_after_refusal_hours=[0.5], alert_hours=[0.6]
    )
    late = _outcome("list", refusal_hours=[0.1], alert_after_refusal_hours=[2.0], alert_hours=[2.1])
    never = _outcome(
        "list", refusal_hours=[0.1], alert_after_refusal_hours=[None], alert_hours=[None]
    )
    name = "first refusal to the alert"
    for outcome, value, met in (
        (quick, 0.5, True),
        (late, 2.0, False),
        (never, float("inf"), False),
    ):
        (target,) = [t for t in targets(_result(outcome)) if name in t.name]
        assert (target.value, target.met) == (value, met)


def test_owner_targets_take_the_most_per_account_and_the_median_alert():
    owner = _outcome(
        "owner", exposed_per_account_max=49, alert_hours=[3.0, 30.0, None], per_account=[49, 1, 1]
    )
    checks = {t.name: t for t in targets(_result(owner))}
    per_account = next(t for n, t in checks.items() if "owners' accounts" in n)
    alert = next(t for n, t in checks.items() if "median owner" in n)
    assert (per_account.value, per_account.met) == (49, True)
    assert (alert.value, alert.met) == (30.0, False)


def test_a_retrying_bot_is_measured_against_one_that_moves_on_at_its_pace():
    retry = _outcome("retry-paced", exposed=900)
    move_on = _outcome("move-on-paced", exposed=300)
    (target,) = [t for t in targets(_result(retry, move_on)) if "retrying bot" in t.name]
    assert (target.value, target.met) == (600, False)
    assert "move-on-paced: 300" in target.name
    (target,) = [t for t in targets(_result(_outcome("retry-paced", exposed=200), move_on))
                 if "retrying bot" in t.name]  # fmt: skip
    assert target.met
    fast = _result(_outcome("retry-fast", exposed=500), _outcome("move-on", exposed=100), retry)
    (target,) = [t for t in targets(fast) if "retrying bot" in t.name]
    assert (target.value, target.detail) == (400, "worst: retry-fast")
    # another pace is not like with like: no comparison
    assert not [t for t in targets(_result(retry, _outcome("move-on", exposed=0)))
                if "retrying bot" in t.name]  # fmt: skip


def test_slow_down_is_a_fast_attack_until_its_first_refusal():
    assert "slow-down" in FAST and "slow" not in FAST
    assert ("retry-paced", "move-on-paced") in RETRY_PAIRS
    assert TACTICS["move-on-paced"].wait == TACTICS["retry-paced"].wait


def test_the_table_explains_every_strategy_it_prints(small_result):
    table = format_table(small_result)
    assert "Alerts naming the stolen accounts" in table
    assert "false alerts" in table
    for strategy in small_result.strategies:
        assert re.search(rf"^  {re.escape(strategy)} +{re.escape(DESCRIPTIONS[strategy])}$",
                         table, re.MULTILINE), strategy  # fmt: skip


def test_help_describes_every_strategy(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for strategy, text in DESCRIPTIONS.items():
        assert f"{strategy} {' '.join(text.split())}" in out


def test_readme_table_explains_every_strategy():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `([a-z0-9-]+)`(?: \*)? \| ([^|]+) \|", readme, re.MULTILINE)
    }
    assert set(rows) >= set(STRATEGIES)
    for strategy in STRATEGIES:
        assert rows[strategy].strip() == DESCRIPTIONS[strategy]
    assert "**0** (as for `spread-random`) means" in " ".join(readme.split())


def test_a_stricter_weekly_cap_holds_a_paced_harvester_to_fewer_per_account():
    from nirguard.replay.tradeoff import format_tradeoff, tradeoff

    settings = replace(SMALL, scale=0.01, attack_days=3, strategies=("gp-paced",))
    points = tradeoff(
        settings, {"shipped": {}, "cap 30": {"distinct_patients": "8/10 minutes;30/day;30/7 days"}}
    )
    shipped, strict = points
    assert strict.per_account < shipped.per_account
    assert strict.per_account <= 30 + 2  # the cap and the break-glass budget
    table = format_tradeoff(points)
    assert "cap 30" in table and "false alerts" in table


def test_a_lockout_is_counted_from_the_refusals_with_the_quota_that_started_it():
    """An alert names a lockout only when it opens a case: the replay also reads lockouts
    from the refusals, a "locked" answer after the refusal that started it."""
    from nirguard.replay.simulation import Pass
    from nirguard.replay.tallies import LegitTally

    p = Pass.__new__(Pass)
    p._last_quota = {}
    tally = LegitTally()
    p._locked(3, ("denied", "portal_cohort", 3600.0), tally)
    assert tally.locked == {}
    p._locked(3, ("locked", "locked", 3500.0), tally)
    p._locked(3, ("denied", "lookups", 60.0), tally)
    p._locked(3, ("locked", "locked", 50.0), tally)
    assert tally.locked == {3: "portal_cohort"}  # the first lockout, by what started it
    p._locked(4, ("locked", "locked", None), tally)
    assert tally.locked[4] == "locked"


def test_cli_tradeoff_prints_one_point_per_policy(capsys):
    from nirguard.replay.tradeoff import CANDIDATES

    args = ["--scale", "0.01", "--history-weeks", "1", "--attack-days", "3", "--jobs", "1"]
    code = main(["simulate", "--tradeoff", *args, "--strategy", "gp-paced", "--json", "--quiet"])
    assert code == 0
    points = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert list(points) == list(CANDIDATES)
    assert all(p["worst"] == "gp-paced" for p in points.values())
    assert points["week cap 80"]["per_account"] < points["shipped"]["per_account"]


# --------------------------------------------------------------------------- sessions


def _gp_days(workload, sessions):
    """Per (GP, day): its sessions in the order of its lookups."""
    from collections import defaultdict

    kinds = [p.kind for p in workload.practitioners]
    days = defaultdict(list)
    for e in range(len(workload)):
        who = workload.who[e]
        if kinds[who] in ("gp", "new_gp"):
            days[(who, int(workload.times[e] // DAY))].append(sessions[e])
    return days


def _returns(order):
    """Whether a session comes back after another one was used (A, B, A)."""
    left: set[int] = set()
    last = None
    for s in order:
        if s != last:
            if s in left:
                return True
            if last is not None:
                left.add(last)
            last = s
    return False


def _overlaps(timed, window=1800.0):
    """Whether any lookup of ``(time, session)`` is a return (a session the account used
    before, while one that used it since is active) or a third session (while two others
    are active): the session_overlap rule, repeats and new patients alike."""
    last: dict[int, float] = {}
    previous = None
    for t, s in timed:
        if previous is not None and s != previous:
            if s in last:
                if any(t - u <= window for u in last.values() if u > last[s]):
                    return True
            elif sum(t - u <= window for u in last.values()) >= 2:
                return True
        last[s], previous = t, s
    return False


def test_legit_sessions_are_deterministic_per_seed(workload):
    from nirguard.replay.sessions import legit_sessions

    one = legit_sessions(workload, seed=2, two_devices=0.05)
    assert one == legit_sessions(workload, seed=2, two_devices=0.05)
    assert one != legit_sessions(workload, seed=3, two_devices=0.05)
    assert len(one) == len(workload) and min(one) >= 1


def test_one_device_never_comes_back_to_a_session_and_logs_in_each_day(workload):
    """On one device a GP's sessions follow one another (hand-overs): never A, B, A; a
    new login each working day, and after the lunch break (longer than the idle timeout)."""
    from nirguard.replay.sessions import legit_sessions

    days = _gp_days(workload, legit_sessions(workload, seed=2, two_devices=0.0))
    assert not any(_returns(order) for order in days.values())
    firsts = [order[0] for _, order in sorted(days.items())]
    assert len(set(firsts)) == len(firsts)  # no session spans two days
    assert sum(len(set(o)) >= 2 for o in days.values()) > 0.9 * len(days)


def test_the_two_device_share_is_honoured_and_nested():
    from nirguard.replay.sessions import two_device_day

    pairs = [(who, day) for who in range(400) for day in range(50) if day % 7 < 5]
    at = {
        share: {p for p in pairs if two_device_day(7, *p, share) is not None}
        for share in (0.0, 0.01, 0.05)
    }
    assert not at[0.0]
    assert 0.007 < len(at[0.01]) / len(pairs) < 0.013
    assert 0.045 < len(at[0.05]) / len(pairs) < 0.055
    assert at[0.01] <= at[0.05]  # a two-device day stays one at a larger share
    start, end = two_device_day(7, *sorted(at[0.01])[0], 0.01)
    assert 3600 <= end - start <= 3 * 3600


def test_two_devices_overlap_on_about_the_share_of_gp_days(workload):
    """The session rule sees two devices at once on some two-device days (where the GP
    switches within the window: a GP looks someone up every 20 minutes or so), and a
    single device on no day (whatever the idle timeouts in between)."""
    from collections import defaultdict

    from nirguard.replay.sessions import legit_sessions

    kinds = [p.kind for p in workload.practitioners]
    for share, low, high in ((0.0, 0.0, 0.0), (0.3, 0.05, 0.3)):
        sessions = legit_sessions(workload, seed=2, two_devices=share)
        days = defaultdict(list)
        for e in range(len(workload)):
            who, t = workload.who[e], workload.times[e]
            if kinds[who] in ("gp", "new_gp"):
                days[(who, int(t // DAY))].append((t, sessions[e]))
        hit = sum(_overlaps(timed) for timed in days.values()) / len(days)
        assert low <= hit <= high


def test_desk_stations_share_one_account_at_once(workload):
    from nirguard.replay.sessions import legit_sessions

    sessions = legit_sessions(workload, seed=2, two_devices=0.0)
    kinds = [p.kind for p in workload.practitioners]
    hospital = kinds.index("hospital")
    order = [sessions[e] for e in range(len(workload)) if workload.who[e] == hospital]
    assert _returns(order)


def test_logins_end_with_their_period_after_idle_and_past_their_lifetime():
    from nirguard.replay.sessions import IDLE, LIFETIME, Logins

    logins = Logins()
    first = logins.at("a", 0.0, 0)
    assert logins.at("a", IDLE, 0) == first  # idle exactly the timeout: still on
    assert logins.at("a", IDLE + 1, 0) == first  # the clock restarts with every request
    assert logins.at("a", 2 * IDLE + 2, 0) != first
    second = logins.at("b", 0.0, 0)
    assert second not in (first, logins.at("a", 2 * IDLE + 3, 0))
    assert logins.at("b", 10.0, 1) != second  # a new working period: a new login
    t, last = 10.0, logins.at("c", 10.0, 0)
    while t <= 10.0 + LIFETIME:
        t += IDLE / 2
        now = logins.at("c", t, 0)
    assert now != last


def test_a_bot_logs_in_per_working_period_or_for_every_lookup_when_it_churns(registry):
    owner = build_attack("owner", registry, seed=1)
    churn = build_attack("owner-churn", registry, seed=1)
    t = owner.start[0]
    times = [t]
    for _ in range(60):
        times.append(owner.next_time(0, times[-1]))
    bot = [owner.session(0, x) for x in times]
    assert all(s.startswith("bot") for s in bot)
    periods = {owner.hours.period(x) for x in times}
    assert len(periods) <= len(set(bot)) < len(times)
    churned = [churn.session(0, x) for x in times]
    assert len(set(churned)) == len(times)


def test_owner_night_works_while_the_owner_is_idle(registry):
    from nirguard.replay.practitioners import HOUR

    night = build_attack("owner-night", registry, seed=1)
    t = night.start[0]
    for _ in range(200):
        hour = (t % DAY) / HOUR
        assert hour < 6.5 or hour >= 21.5
        t = night.next_time(0, t)


def _recorded(settings, strategy):
    """Every (practitioner, session) the guard saw in one attack week."""
    from nirguard.replay.passes import _new_pass

    world = build_world(settings)
    p = _new_pass(world, "guard", True)
    seen: list[tuple[str, object]] = []
    lookup = p._lookup

    def spy(name, number, **options):
        seen.append((name, options.get("session")))
        return lookup(name, number, **options)

    p._lookup = spy
    p.run(world.workload.split, len(world.workload), attack=world.attack(strategy), end=world.end)
    return world, seen


@pytest.mark.skipif(not FEATURES.session, reason="the installed guard takes no session=")
def test_lookups_carry_sessions_and_the_bots_never_the_owners():
    settings = replace(SMALL, history_weeks=0, attack_days=2, sessions=True)
    world, seen = _recorded(settings, "owner")
    stolen = set(world.attack("owner").accounts)
    ours = {(n, s) for n, s in seen if n in stolen and s.startswith("bot")}
    theirs = {(n, s) for n, s in seen if n in stolen and s.startswith("s")}
    assert ours and theirs and all(s is not None for _, s in seen)
    assert not {s for _, s in ours} & {s for _, s in theirs}
    _, quiet = _recorded(replace(settings, sessions=False), "owner")
    assert {s for _, s in quiet} == {None}


def test_all_runs_the_session_variants_only_with_sessions(monkeypatch):
    from nirguard import _cli_simulate
    from nirguard.replay.attacks import SESSION_VARIANTS

    parser = build_parser()
    off = parser.parse_args(["simulate", "--all", "--no-sessions"])
    on = parser.parse_args(["simulate", "--all", "--sessions", "--two-devices", "0.05"])
    without = _cli_simulate._settings(off, 0.05, None, None)
    assert not set(SESSION_VARIANTS) & set(without.strategies)
    assert without.sessions is False
    default = _cli_simulate._settings(parser.parse_args(["simulate", "--all"]), 0.05, None, None)
    assert (default.sessions, default.strategies) == (False, without.strategies)
    with_them = _cli_simulate._settings(on, 0.05, None, None)
    assert set(with_them.strategies) == set(STRATEGIES)
    assert (with_them.sessions, with_them.two_devices) == (True, 0.05)
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--two-devices", "1.5"])
    with pytest.raises(ValueError, match="two_devices"):
        replace(SMALL, two_devices=-0.1).check()
