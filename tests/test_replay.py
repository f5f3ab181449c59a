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
from nirguard.cli import main
from nirguard.replay import ReplaySettings, run_replay
from nirguard.replay.attacks import (
    FAST_INTERVAL,
    STRATEGIES,
    Attack,
    attack_material,
    build_attack,
    slow_interval,
)
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
from nirguard.replay.runner import QUIET, build_world
from nirguard.replay.runner import run_replay as _run
from nirguard.replay.simulation import Pass, guard_features

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
    assert attack.reasons
    assert attack.reason(0, 5) == "ETREAT"
    assert {attack.reason(1, k) for k in range(8)} == {"ETREAT", "TREAT", "COC", "PATRQT"}
    assert not build_attack("list", registry).reasons


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


def test_a_week_from_the_snapshot_equals_a_full_pass():
    """Restoring the history snapshot gives exactly what replaying it again gives."""
    settings = replace(SMALL, strategies=("spread",))
    world = build_world(settings)
    w = world.workload

    def fresh() -> Pass:
        return Pass(
            registry=world.registry,
            workload=w,
            policy_for=world.policy_for("guard"),
            key=b"replay-test-key-0123456789abcdef",
            attackers=world.attackers(),
        )

    first = fresh()
    first.run(0, w.split)
    state = first.snapshot()
    first.run(w.split, len(w), attack=world.attack("list"), end=world.end)  # dirty it
    first.restore(state)
    legit, tally = first.run(w.split, len(w), attack=world.attack("spread"), end=world.end)
    second = fresh()
    second.run(0, w.split)
    legit2, tally2 = second.run(w.split, len(w), attack=world.attack("spread"), end=world.end)
    assert legit == legit2
    assert tally is not None and tally2 is not None
    assert (tally.exposed, tally.attempts, tally.first_signal) == (
        tally2.exposed,
        tally2.attempts,
        tally2.first_signal,
    )
    assert first.first == second.first


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
    from nirguard.replay.tuning import main as tuning

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
