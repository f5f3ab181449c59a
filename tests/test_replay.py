"""The replay behind ``nirguard simulate``: workload realism, metrics, determinism.

A small run (tens of thousands of people, a hundred practitioners, a few
days) exercises the whole pipeline through the real guard.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from nirguard import nir
from nirguard.cli import main
from nirguard.replay import ReplaySettings, run_replay
from nirguard.replay.attacks import FAST_INTERVAL, build_attack, slow_interval
from nirguard.replay.practitioners import LOOKUP, TYPO, UNKNOWN, build_workload, typo
from nirguard.replay.registry import build_registry
from nirguard.replay.report import format_table, targets, to_json

NIR_SHAPED = re.compile(r"(?<![0-9])[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?(?![0-9])")

SMALL = ReplaySettings(seed=11, people=40_000, practitioners=120, days=3, attackers=6, jobs=1)


@pytest.fixture(scope="module")
def small_result():
    return run_replay(SMALL)


@pytest.fixture(scope="module")
def registry():
    return build_registry(30_000, seed=5)


# --------------------------------------------------------------------------- registry


def test_registry_numbers_are_valid_unique_and_indexed(registry):
    assert len(registry) == 30_000
    assert len(set(registry.nirs)) == len(registry)
    assert all(nir.is_valid(n) for n in registry.nirs)
    assert all(registry.index[n] == i for i, n in enumerate(registry.nirs[:2000]))


def test_registry_cohorts_share_the_prefix_and_are_sorted_by_order(registry):
    for c in range(0, registry.cohorts, 97):
        start, end = registry.cohort_start[c], registry.cohort_start[c + 1]
        members = registry.nirs[start:end]
        assert {m[:10] for m in members} == {registry.cohort_prefix[c]}
        orders = [int(m[10:13]) for m in members]
        assert orders == sorted(orders)
        assert all(registry.cohort_of(p) == c for p in range(start, end))


def test_registry_has_corsica_overseas_abroad_and_special_months(registry):
    parsed = [nir.parse(n) for n in registry.nirs]
    departments = Counter(p.department for p in parsed)
    assert departments["2A"] + departments["2B"] + departments["20"] > 0
    assert sum(v for d, v in departments.items() if len(d) == 3) > 0  # overseas
    assert 0.05 < departments["99"] / len(parsed) < 0.2  # born abroad
    assert any(p.birth_month is None for p in parsed)  # special month codes
    assert len({p.birth_year for p in parsed}) > 80
    # Births concentrate in maternity towns: some cohorts are large.
    sizes = [registry.cohort_size(c) for c in range(registry.cohorts)]
    assert max(sizes) >= 5


def test_registry_is_deterministic_for_a_seed():
    assert build_registry(5000, seed=1).nirs == build_registry(5000, seed=1).nirs
    assert build_registry(5000, seed=1).nirs != build_registry(5000, seed=2).nirs


def test_registry_refuses_tiny_sizes():
    with pytest.raises(ValueError, match="at least"):
        build_registry(10)


# --------------------------------------------------------------------------- practitioners


def test_typo_is_one_substitution_or_adjacent_swap_and_invalid(registry):
    import random

    rng = random.Random(3)
    for number in registry.nirs[:3000]:
        typed = typo(number, rng)
        assert not nir.is_valid(typed)
        diff = [i for i in range(15) if typed[i] != number[i]]
        assert len(diff) in (1, 2)
        if len(diff) == 2:
            i, j = diff
            assert j == i + 1
            assert (typed[i], typed[j]) == (number[j], number[i])


def test_workload_looks_like_care(registry):
    workload = build_workload(registry, 120, days=7, seed=4)
    events = workload.events
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    kinds = Counter(e[4] for e in events)
    typed = kinds[LOOKUP] + kinds[UNKNOWN]
    assert 0.01 < kinds[TYPO] / typed < 0.03
    assert 0 < kinds[UNKNOWN] / typed < 0.01
    for t, _, number, person, kind in events:
        if kind == TYPO:
            assert not nir.is_valid(number)
        elif kind == LOOKUP:
            assert registry.nirs[person] == number
        else:
            assert nir.is_valid(number)
            assert number not in registry.index
    accounts = Counter(p.kind for p in workload.practitioners)
    assert accounts["hospital"] >= 1
    assert accounts["pharmacy"] >= 1
    gp = workload.weekly_volume("gp")
    # About 25 lookups a working day, with repeat patients.
    assert 80 <= gp["lookups_median"] <= 200
    assert gp["distinct_median"] < gp["lookups_median"]
    # GPs do not work on Sundays.
    gp_index = {i for i, p in enumerate(workload.practitioners) if p.kind == "gp"}
    assert not [e for e in events if e[1] in gp_index and 6 * 86400 <= e[0] < 7 * 86400]


# --------------------------------------------------------------------------- attacks


def test_quotas_configuration_keeps_quotas_and_drops_detection():
    from nirguard import QuotaPolicy
    from nirguard.replay.runner import QUOTA_FIELDS, without_detection

    full = QuotaPolicy(cohort="3/day", portal_cohort="9/day", miss_ratio=0.4)
    quotas = without_detection(full)
    assert quotas.cohort is None
    assert quotas.portal_cohort is None
    assert quotas.miss_ratio is None
    assert not quotas.lockout_escalation
    for name in QUOTA_FIELDS:
        assert getattr(quotas, name) == getattr(full, name)


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
    assert all(n in registry.index for n in listed)


def test_unknown_strategy_is_refused(registry):
    with pytest.raises(ValueError, match="unknown strategy"):
        build_attack("telepathy", registry)


# --------------------------------------------------------------------------- the replay


def test_replay_is_deterministic_for_a_seed(small_result):
    again = run_replay(SMALL)
    assert to_json(again) == to_json(small_result)


def test_worker_processes_do_not_change_the_result(small_result):
    from dataclasses import replace

    assert to_json(run_replay(replace(SMALL, jobs=2))) == to_json(small_result)


def test_quotas_and_detection_expose_far_less_than_no_guard(small_result):
    for strategy in ("enumeration", "list"):
        none = small_result.outcome(strategy, "none")
        quotas = small_result.outcome(strategy, "quotas")
        full = small_result.outcome(strategy, "detection")
        assert none.exposed > 1000
        assert quotas.exposed < none.exposed
        assert full.exposed <= quotas.exposed
        assert full.exposed < 0.1 * none.exposed


def test_enumeration_raises_an_alert_quickly(small_result):
    full = small_result.outcome("enumeration", "detection")
    assert full.first_alert_account_lookups is not None
    assert full.first_alert_account_lookups <= 50
    assert full.first_alert_seconds is not None
    assert full.accounts_alerted == SMALL.attackers
    assert small_result.outcome("enumeration", "none").first_alert_lookups is None


def test_unguarded_enumeration_shortcut_matches_the_script(registry):
    """The closed-form walk of the unguarded run is the script's own walk."""
    from nirguard.replay.attacks import Attack, attack_material

    material = attack_material(registry, 2)
    for end in (4000.0, 2 * 86400.0):
        fast = build_attack("enumeration", registry, accounts=3, seed=2, material=material)
        slow = build_attack("enumeration", registry, accounts=3, seed=2, material=material)
        assert fast.unguarded(registry, end) == Attack.unguarded(slow, registry, end)


def test_spliced_attack_pass_equals_a_full_pass():
    """Replaying only the accounts an attack can meet gives the full replay's answer,
    even with a portal_cohort limit tight enough to couple many accounts."""
    from nirguard import QuotaPolicy
    from nirguard.replay import runner
    from nirguard.replay.simulation import run_pass

    # A daily cap on new patients only: with the shipped short window the attack stops
    # too early to meet any legitimate account, and the splice would have nothing to prove.
    tight = QuotaPolicy(
        **{**QuotaPolicy().model_dump(), "portal_cohort": "3/day", "distinct_patients": "100/day"}
    )
    settings = ReplaySettings(people=30_000, practitioners=80, days=3, attackers=4, policy=tight)
    shared = runner._prepare(settings)
    events = shared.workload.events
    for strategy in ("enumeration", "list"):
        baseline = runner._run_baseline(shared, "detection")
        spliced = runner._run_attack(shared, strategy, "detection")
        full = run_pass(
            registry=shared.registry,
            workload=shared.workload,
            policy_for=runner._policy_lookup(shared, "detection"),
            key=runner._key("detection"),
            attack=runner._fresh_attack(shared, strategy),
            events=range(len(events)),
            end=shared.hours * 3600.0,
        )
        assert 0 < len(spliced.included) < len(shared.workload.practitioners)
        merged = {e: c for e, c in baseline.status.items() if events[e][1] not in spliced.included}
        merged.update(spliced.status)
        assert merged == full.status
        assert spliced.exposed == full.exposed
        assert spliced.attempts == full.attempts


def test_legitimate_refusals_are_low(small_result):
    for outcome in small_result.outcomes:
        assert outcome.legit_lookups > 5000
        assert outcome.legit_refused_rate <= 0.005, outcome
        # Typos are refused as invalid whatever the configuration.
        assert outcome.typos_rejected > 0
    none = small_result.outcome("list", "none")
    assert none.legit_refused == 0


def test_exposure_curve_ends_at_the_total(small_result):
    for outcome in small_result.outcomes:
        curve = outcome.exposure_by_hour
        assert len(curve) == SMALL.days * 24
        assert curve == sorted(curve)
        assert curve[-1] == outcome.exposed


def test_table_and_json_show_every_pair_and_no_nir(small_result):
    table = format_table(small_result)
    text = to_json(small_result)
    data = json.loads(text)
    assert len(data["outcomes"]) == 12
    assert {t["name"] for t in data["targets"]} == {t.name for t in targets(small_result)}
    for strategy in ("enumeration", "list", "slow", "spread"):
        assert strategy in table
    assert NIR_SHAPED.search(table) is None
    assert NIR_SHAPED.search(text) is None


# --------------------------------------------------------------------------- CLI


CLI_SMALL = ["--people", "20000", "--practitioners", "40", "--days", "2", "--attackers", "3"]


def test_cli_json(capsys):
    code = main(["simulate", *CLI_SMALL, "--strategy", "list", "--json", "--quiet", "--jobs", "1"])
    out = capsys.readouterr()
    assert code == 0
    data = json.loads(out.out)
    assert {o["strategy"] for o in data["outcomes"]} == {"list"}
    assert {o["configuration"] for o in data["outcomes"]} == {"none", "quotas", "detection"}
    assert NIR_SHAPED.search(out.out + out.err) is None


def test_cli_policy_override_changes_the_outcome(capsys, tmp_path):
    policy = tmp_path / "loose.json"
    policy.write_text(json.dumps({"lookups": "100000/day"}), encoding="utf-8")
    args = ["simulate", *CLI_SMALL, "--strategy", "slow", "--json", "--quiet", "--jobs", "1"]
    assert main([*args, "--policy-json", str(policy)]) == 0
    loose = json.loads(capsys.readouterr().out)
    assert loose["settings"]["policy"]["lookups"] == "100000/day"


def test_cli_bad_policy_is_a_clear_error(capsys):
    code = main(["simulate", *CLI_SMALL, "--policy-json", '{"lookups": "lots"}'])
    err = capsys.readouterr().err
    assert code == 2
    assert "invalid policy" in err


def test_cli_plot_without_matplotlib_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = main(["simulate", *CLI_SMALL, "--plot", "x.png", "--quiet"])
    assert code == 2
    assert "nirguard[plot]" in capsys.readouterr().err


def test_plot_writes_a_png(small_result, tmp_path: Path):
    pytest.importorskip("matplotlib")
    from nirguard.replay.report import plot

    target = tmp_path / "exposure.png"
    plot(small_result, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
