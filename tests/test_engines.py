"""One decision suite, run against every engine: memory, Redis, Redis Cluster.

Each scenario drives an engine directly with explicit times (``Request.now``),
so that Redis follows the same clock as the memory engine and every window,
lockout and baseline can be walked through in a test. The engines must agree
decision for decision: the last test checks that on random sequences.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nirguard import QuotaPolicy
from nirguard._engine import PORTAL_TAG, Decision, Engine, Keys, escape
from nirguard._memory import MemoryEngine
from tests.engine_helpers import (
    DAY,
    ENGINES,
    HOUR,
    T0,
    Driver,
    cleanup,
    drive,
    engines,
    redis_engine,
)
from tests.redis_helpers import WORKER_PREFIX


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """Every engine, each with a key namespace of its own (deleted afterwards)."""
    yield from engines(request)


# -- keys -----------------------------------------------------------------------------------------


@given(st.text(max_size=12), st.text(max_size=12))
def test_escaping_never_merges_two_practitioners(a: str, b: str) -> None:
    if a != b:
        assert escape(a) != escape(b)
    for c in "{}:":
        assert c not in escape(a)


@pytest.mark.parametrize(
    ("a", "b"),
    [("a:b", "a%3Ab"), ("a{b", "a%7Bb"), ("%portal", "%25portal"), ("x}", "x%7D")],
)
def test_look_alike_ids_keep_their_own_budgets(engine: Engine, a: str, b: str) -> None:
    d = drive(engine, lookups="1/hour")
    assert d.look(escape(a), "p").outcome == "allowed"
    assert d.look(escape(b), "p").outcome == "allowed"  # not the budget of a


def _tag(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


@given(st.text(max_size=12), st.text(min_size=1, max_size=40))
def test_no_practitioner_shares_a_portal_or_cohort_record(who: str, cohort: str) -> None:
    keys = Keys("ng", escape(who), cohort, "abc123")
    own = {keys.account, keys.recent}
    assert not own & {keys.portal, keys.heat}
    assert _tag(keys.account) == _tag(keys.recent) == escape(who)
    assert _tag(keys.portal) == PORTAL_TAG[1:-1]
    assert _tag(keys.heat).startswith("%c")  # "%c" never starts an escape
    assert _tag(keys.account) not in (_tag(keys.portal), _tag(keys.heat))


def test_each_cohort_hashes_to_its_own_tag() -> None:
    tags = {_tag(Keys("ng", "dr", f"k:{i:032x}", "abc123").heat) for i in range(1000)}
    assert len(tags) == 1000  # spread over the Cluster's slots like the practitioners
    braces = Keys("ng", escape("a}b{c"), "c", "1:2")
    assert braces.account.startswith("ng:{a%7Db%7Bc}:")  # the whole id is the hash tag


# -- per-practitioner quotas ----------------------------------------------------------------------


def test_lookups_quota_refuses_then_frees_with_its_window(engine: Engine) -> None:
    d = drive(engine, lookups="3/minute")
    assert [d.look("dr", "p1").outcome for _ in range(3)] == ["allowed"] * 3
    d.wait(20)
    refused = d.look("dr", "p1")
    assert (refused.outcome, refused.quota) == ("denied", "lookups")
    assert refused.retry_after == pytest.approx(40, abs=0.01)
    assert not refused.lockout_started
    d.wait(40)
    assert d.look("dr", "p1").outcome == "allowed"


def test_every_refusal_counts_against_lookups(engine: Engine) -> None:
    d = drive(engine, lookups="9/hour", distinct_patients="2/hour", break_glass=None)
    d.look("dr", "p1")
    d.look("dr", "p2")
    assert d.look("dr", "p3").outcome == "denied"  # distinct breach: lockout
    assert d.status("dr").remaining["lookups"] == 6  # the lockout start counted
    assert d.look("dr", "p1").outcome == "locked"
    assert d.status("dr").remaining["lookups"] == 5  # so does a refusal while locked
    assert d.status("dr").level == 1  # which never extends the lockout


def test_distinct_patients_counts_new_patients_only(engine: Engine) -> None:
    d = drive(engine, distinct_patients="2/day", break_glass=None)
    for patient in ["a", "b", "a", "b", "a"]:
        assert d.look("dr", patient).outcome == "allowed"
    refused = d.look("dr", "c")
    assert (refused.outcome, refused.quota, refused.lockout_started) == (
        "denied",
        "distinct_patients",
        True,
    )
    assert (refused.count, refused.limit, refused.level) == (3, 2, 1)
    assert refused.retry_after == pytest.approx(HOUR)
    locked = d.look("dr", "a")
    assert locked.outcome == "locked"
    assert locked.retry_after == pytest.approx(HOUR)


def test_a_patient_is_new_again_after_the_window(engine: Engine) -> None:
    d = drive(engine, distinct_patients="2/day", break_glass=None)
    d.look("dr", "a")
    d.look("dr", "b")
    d.wait(DAY + 1)
    assert d.look("dr", "c").outcome == "allowed"
    assert d.look("dr", "a").outcome == "allowed"  # new again, second of the new window
    assert d.look("dr", "d").outcome == "denied"


def test_invalid_nirs_count_then_lock(engine: Engine) -> None:
    d = drive(engine, invalid_nirs="2/hour")
    assert d.invalid("dr").outcome == "invalid"
    assert d.invalid("dr").outcome == "invalid"
    third = d.invalid("dr")
    assert (third.outcome, third.quota, third.lockout_started) == ("denied", "invalid_nirs", True)
    assert d.invalid("dr").outcome == "locked"
    assert d.look("dr", "a").outcome == "locked"


def test_misses_budget_is_checked_before_the_lookup(engine: Engine) -> None:
    d = drive(engine, misses="2/hour")
    d.look("dr", "a")
    d.miss("dr")
    d.look("dr", "b")
    d.miss("dr")
    refused = d.look("dr", "c")
    assert (refused.outcome, refused.quota, refused.lockout_started) == ("denied", "misses", True)


def test_miss_ratio_is_a_detection(engine: Engine) -> None:
    d = drive(engine, miss_ratio=0.5, miss_ratio_min_lookups=4)
    for i in range(4):
        d.look("dr", f"p{i}")
        if i < 3:
            d.miss("dr")
    refused = d.look("dr", "p9")
    assert (refused.outcome, refused.quota) == ("suspected", "miss_ratio")
    assert refused.evidence["misses"] == 3
    assert refused.evidence["lookups"] == 4


def test_cohort_walk_is_a_detection(engine: Engine) -> None:
    d = drive(engine, cohort="3/day", break_glass=None)
    for i in range(3):
        assert d.look("dr", f"p{i}", "c1").outcome == "allowed"
    assert d.look("dr", "other", "c2").outcome == "allowed"
    refused = d.look("dr", "p3", "c1")
    assert (refused.outcome, refused.quota) == ("suspected", "cohort")
    assert refused.evidence["cohort_patients"] == 4


def test_a_cohort_walk_outlives_its_shorter_window(engine: Engine) -> None:
    # the walk is kept to the end of its longest window: once the hour has ended, the
    # day's count goes on (the memory engine keeps a walk as a compact tuple: issue 20)
    d = drive(engine, cohort="3/hour;4/day", break_glass=None)
    for i in range(3):
        assert d.look("dr", f"p{i}", "c1").outcome == "allowed"
    d.wait(3601)
    assert d.look("dr", "p3", "c1").outcome == "allowed"
    refused = d.look("dr", "p4", "c1")
    assert (refused.outcome, refused.quota) == ("suspected", "cohort")
    assert refused.evidence["cohort_patients"] == 5


def test_portal_quota_is_shared_and_not_lockout_class(engine: Engine) -> None:
    d = drive(engine, portal="3/minute")
    assert [d.look(f"dr{i}", "a").outcome for i in range(3)] == ["allowed"] * 3
    refused = d.look("dr9", "b")
    assert (refused.outcome, refused.quota, refused.lockout_started) == ("denied", "portal", False)
    assert d.look("dr0", "a").outcome == "denied"
    d.wait(61)
    assert d.look("dr9", "b").outcome == "allowed"


# -- lockouts -------------------------------------------------------------------------------------


def test_escalation_counts_from_the_latest_lockout(engine: Engine) -> None:
    d = Driver(
        engine,
        QuotaPolicy.only(
            invalid_nirs="1/hour",
            lockout="1 hour",
            lockout_escalation=("1 day", None),
            lockout_memory="7 days",
        ),
    )

    def breach() -> Decision:
        d.invalid("dr")
        return d.invalid("dr")

    first = breach()
    assert (first.level, first.retry_after) == (1, pytest.approx(HOUR))
    d.wait(5 * DAY)
    second = breach()
    assert (second.level, second.retry_after) == (2, pytest.approx(DAY))
    d.wait(5 * DAY)  # 10 days after the first lockout, 5 after the latest: still remembered
    third = breach()
    assert third.level == 3
    assert third.retry_after is None  # until unlock()
    d.wait(400 * DAY)
    assert d.look("dr", "a").outcome == "locked"
    assert d.status("dr").locked_for is not None


def test_escalation_is_forgotten_after_the_memory(engine: Engine) -> None:
    d = drive(engine, invalid_nirs="1/hour")
    d.invalid("dr")
    assert d.invalid("dr").level == 1
    d.wait(8 * DAY)
    d.invalid("dr")
    again = d.invalid("dr")
    assert (again.level, again.retry_after) == (1, pytest.approx(HOUR))


def test_unlock_lifts_and_forgets(engine: Engine) -> None:
    d = drive(engine, invalid_nirs="1/hour", distinct_patients="1/day", break_glass=None)
    d.invalid("dr")
    d.invalid("dr")
    assert d.look("dr", "a").outcome == "locked"
    d.unlock("dr")
    assert d.status("dr").level == 0
    assert d.look("dr", "a").outcome == "allowed"
    assert d.invalid("dr").outcome == "invalid"


# -- break-glass ----------------------------------------------------------------------------------


def test_first_new_patient_past_the_quota_asks_for_a_reason(engine: Engine) -> None:
    d = drive(engine, distinct_patients="2/day", break_glass="3/day")
    d.look("dr", "a")
    d.look("dr", "b")
    asked = d.look("dr", "c")
    assert (asked.outcome, asked.quota, asked.lockout_started) == (
        "reason_required",
        "distinct_patients",
        False,
    )
    assert d.look("dr", "c").outcome == "reason_required"  # the same patient again: no lockout
    assert d.look("dr", "a").outcome == "allowed"  # known patients still go through
    granted = d.look("dr", "c", reason=True)
    assert (granted.outcome, granted.quota, granted.break_glass_left) == (
        "break_glass",
        "distinct_patients",
        2,
    )
    again = d.look("dr", "c")  # the grant opens that one patient
    assert (again.outcome, again.quota) == ("allowed", "break_glass")


def test_a_second_new_patient_without_a_reason_locks(engine: Engine) -> None:
    d = drive(engine, distinct_patients="1/day", break_glass="3/day")
    d.look("dr", "a")
    assert d.look("dr", "b").outcome == "reason_required"
    locked = d.look("dr", "c")
    assert (locked.outcome, locked.quota, locked.lockout_started) == (
        "denied",
        "distinct_patients",
        True,
    )
    assert d.look("dr", "b", reason=True).outcome == "locked"  # never lifts a lockout


def test_break_glass_budget_then_lockout(engine: Engine) -> None:
    d = drive(engine, distinct_patients="1/day", break_glass="2/day")
    d.look("dr", "a")
    assert d.look("dr", "b", reason=True).break_glass_left == 1
    assert d.look("dr", "c", reason=True).break_glass_left == 0
    spent = d.look("dr", "d", reason=True)
    assert (spent.outcome, spent.quota, spent.lockout_started) == (
        "denied",
        "distinct_patients",
        True,
    )


def test_break_glass_grant_ends_with_its_time_box(engine: Engine) -> None:
    d = drive(
        engine, distinct_patients="1/7 days", break_glass="5/day", break_glass_access="2 days"
    )
    d.look("dr", "a")
    d.look("dr", "b", reason=True)
    d.wait(DAY)
    assert d.look("dr", "b").quota == "break_glass"
    d.wait(1.5 * DAY)
    assert d.look("dr", "b").outcome == "reason_required"


def test_break_glass_never_lifts_a_lookups_rate_limit(engine: Engine) -> None:
    d = drive(engine, lookups="1/minute", distinct_patients="1/day", break_glass="3/day")
    d.look("dr", "a")
    refused = d.look("dr", "b", reason=True)
    assert (refused.outcome, refused.quota) == ("denied", "lookups")


def test_a_reason_that_is_not_needed_costs_nothing(engine: Engine) -> None:
    d = drive(engine, distinct_patients="5/day", break_glass="1/day")
    assert d.look("dr", "a", reason=True).outcome == "allowed"
    assert d.status("dr").remaining["break_glass"] == 1


# -- portal-wide evidence -------------------------------------------------------------------------


def hot_policy(**extra: Any) -> QuotaPolicy:
    fields: dict[str, Any] = {
        "hot_cohort": 4.0,
        "hot_cohort_min": 5,
        "portal_cohort": "3/day",
        "portal_cohort_share": 0.5,
    }
    fields.update(extra)
    return QuotaPolicy.only(**fields)


def test_a_cohort_turns_hot_against_its_baseline_and_alerts_once(engine: Engine) -> None:
    d = Driver(engine, hot_policy())
    seen = []
    for i in range(8):
        decision = d.look(f"dr{i}", f"p{i}", "c1")  # eight accounts, one patient each
        seen.append((decision.hot, decision.hot_alert))
        d.wait(60)
    assert seen[:5] == [(False, False)] * 5  # heat 5 is not above 4 x baseline + 5
    assert seen[5] == (True, True)
    assert seen[6:] == [(True, False)] * 2  # one alert per window
    assert not d.look("dr0", "p0", "c1").hot  # a repeat: nothing portal-wide to read
    again = d.look("dr9", "p0", "c1")  # new to dr9, known to the portal: no new heat
    assert again.hot and not again.hot_alert
    assert again.heat == pytest.approx(seen_heat(d, 8), abs=1e-3)
    assert not d.look("dr0", "q", "c2").hot


def seen_heat(d: Driver, new: int) -> float:
    """The heat of ``new`` patients, one a minute, the last one a minute ago."""
    return sum(math.exp(-60 * k / DAY) for k in range(1, new + 1))


def test_the_baseline_absorbs_a_cohorts_usual_traffic(engine: Engine) -> None:
    d = Driver(engine, hot_policy())
    for day in range(28):  # four weeks with three new patients a day in the cohort
        for i in range(3):
            d.look(f"dr{i}", f"d{day}p{i}", "c1")
            d.wait(HOUR)
        d.wait(DAY - 3 * HOUR)
    busy = [d.look(f"dr{i}", f"busy{i}", "c1") for i in range(12)]
    assert not any(x.hot for x in busy)  # twelve in a day: usual enough for this cohort


def test_portal_evidence_alone_never_locks_an_ordinary_account(engine: Engine) -> None:
    d = Driver(engine, hot_policy())
    for i in range(10):
        d.look(f"walker{i}", f"w{i}", "c1")
    gp = [d.look("gp", f"gp{i}", f"other{i}") for i in range(5)]
    gp.append(d.look("gp", "newborn", "c1"))  # one of its patients falls in the hot cohort
    assert gp[-1].hot
    assert all(x.outcome == "allowed" for x in gp)


def test_an_account_feeding_hot_cohorts_is_suspected(engine: Engine) -> None:
    d = Driver(engine, hot_policy(break_glass=None))
    for i in range(8):
        d.look(f"other{i}", f"o{i}", "c1")  # the cohort is walked across accounts
    outcomes = [d.look("bot", f"b{i}", "c1").outcome for i in range(5)]
    assert outcomes[:3] == ["allowed"] * 3
    assert outcomes[3] == "suspected"
    assert d.log[-2][3] == "portal_cohort"


def test_a_busy_account_with_a_few_hot_patients_is_not_suspected(engine: Engine) -> None:
    d = Driver(engine, hot_policy(break_glass=None))
    for i in range(8):
        d.look(f"other{i}", f"o{i}", "c1")
    for i in range(20):  # a desk: many new patients elsewhere ...
        d.look("desk", f"x{i}", f"c{i + 10}")
    outcomes = [d.look("desk", f"h{i}", "c1").outcome for i in range(6)]  # ... and six here
    assert outcomes == ["allowed"] * 6  # six of 26 new patients: under the share


def test_a_fresh_store_warms_up_before_any_cohort_is_hot(engine: Engine) -> None:
    d = Driver(engine, hot_policy(hot_cohort_warmup="7 days", break_glass=None))
    busy = [d.look(f"gp{i}", f"p{i}", "c1") for i in range(10)]  # hot, were it not warming
    assert not any(x.hot or x.hot_alert for x in busy)
    walked = [d.look("bot", f"b{i}", "c1").outcome for i in range(5)]
    assert walked == ["allowed"] * 5  # no portal_cohort while no cohort can be hot
    d.wait(7 * DAY)  # warm: the same walk of a fresh cohort heats it and is caught
    for i in range(8):
        d.look(f"other{i}", f"o{i}", "c2")
    outcomes = [d.look("bot2", f"w{i}", "c2").outcome for i in range(5)]
    assert outcomes[:4] == ["allowed"] * 3 + ["suspected"]


def test_hot_cohort_reason_action(engine: Engine) -> None:
    d = Driver(engine, hot_policy(hot_cohort_action="reason", break_glass="1/day"))
    for i in range(8):
        d.look(f"other{i}", f"o{i}", "c1")
    asked = d.look("gp", "n1", "c1")
    assert (asked.outcome, asked.quota, asked.lockout_started) == (
        "reason_required",
        "hot_cohort",
        False,
    )
    assert d.look("gp", "n2", "c1").outcome == "reason_required"  # never a lockout
    assert d.look("gp", "n1", "c1", reason=True).outcome == "break_glass"
    spent = d.look("gp", "n2", "c1", reason=True)
    assert (spent.outcome, spent.quota, spent.lockout_started) == ("denied", "break_glass", False)


# -- status ---------------------------------------------------------------------------------------


def test_status_reports_remaining_budgets(engine: Engine) -> None:
    d = drive(engine, lookups="10/hour;50/day", distinct_patients="5/day", break_glass="2/day")
    d.look("dr", "a")
    d.look("dr", "b")
    d.look("dr", "a")
    status = d.status("dr")
    assert status.remaining["lookups"] == 7
    assert status.remaining["distinct_patients"] == 3
    assert status.remaining["break_glass"] == 2
    assert status.remaining["misses"] is None
    assert status.locked_for is None


# -- the engines agree ----------------------------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["look", "look", "look", "reason", "invalid", "miss", "wait", "unlock"]),
        st.sampled_from(["dr1", "dr2", "dr3"]),
        st.integers(0, 9),
        st.integers(0, 2),
        st.sampled_from([1.0, 30.0, 700.0, 4000.0, 90000.0]),
    ),
    max_size=40,
)
PARITY: dict[str, Any] = dict(
    lookups="6/10 minutes;20/day",
    distinct_patients="3/hour;8/day",
    invalid_nirs="2/hour",
    misses="3/hour",
    cohort="2/day",
    portal_cohort="2/day",
    portal_cohort_share=0.3,
    hot_cohort=2.0,
    hot_cohort_min=2,
    miss_ratio=0.6,
    miss_ratio_min_lookups=3,
    break_glass="2/day",
    portal="25/hour",
    strikes="3/hour;5/day",
)
PARITY_POLICY = QuotaPolicy.only(**PARITY)


def _key(decision: Decision) -> tuple[Any, ...]:
    retry = None if decision.retry_after is None else round(decision.retry_after, 3)
    return (
        decision.outcome,
        decision.quota,
        retry,
        decision.lockout_started,
        decision.level,
        decision.hot,
        decision.hot_alert,
        round(decision.heat, 3),
        round(decision.expected, 3),
        decision.break_glass_left,
        decision.count,
        decision.limit,
        decision.incident,
        decision.alert,
    )


def _play(
    engine: Engine, ops: list[tuple[str, str, int, int, float]], policy: QuotaPolicy = PARITY_POLICY
) -> list[Any]:
    d = Driver(engine, policy)
    out: list[Any] = []
    for op, who, patient, cohort, seconds in ops:
        if op in ("look", "reason"):
            out.append(_key(d.look(who, f"p{patient}", f"c{cohort}", reason=op == "reason")))
        elif op == "invalid":
            out.append(_key(d.invalid(who)))
        elif op == "miss":
            d.miss(who)
        elif op == "unlock":
            d.unlock(who)
        else:
            d.wait(seconds)
    s = d.status("dr1")
    out.append((s.remaining, s.level, None if s.locked_for is None else round(s.locked_for, 3)))
    return out


def play_twice(
    url: str, ops: Any, play: Callable[[Engine, Any], list[Any]] = _play
) -> tuple[list[Any], list[Any]]:
    """``ops`` played (by ``play``) on the memory engine, then on the Redis engine at ``url``
    (the same prefix; its keys deleted afterwards): what each answered."""
    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    on_redis = redis_engine(url, prefix)
    try:
        return play(MemoryEngine(lambda: T0, prefix=prefix), ops), play(on_redis, ops)
    finally:
        on_redis.close()
        cleanup(url, prefix)


@pytest.mark.redis
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_memory_and_redis_agree_on_every_sequence(redis_url: str, ops: Any) -> None:
    expected, got = play_twice(redis_url, ops)
    assert got == expected


#: The parity policy on a store that is still warming up: no cohort can be hot, and a Cluster
#: decides a new patient before it counts its heat (two calls instead of three).
WARMING_POLICY = QuotaPolicy.only(**PARITY, hot_cohort_warmup=30 * DAY)


@pytest.mark.redis
@pytest.mark.parametrize("policy", [PARITY_POLICY, WARMING_POLICY], ids=["warm", "warming"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_memory_and_a_cluster_agree_on_every_sequence(
    redis_cluster_url: str, policy: QuotaPolicy, ops: Any
) -> None:
    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    on_cluster = redis_engine(redis_cluster_url, prefix)
    try:
        expected = _play(MemoryEngine(lambda: T0, prefix=prefix), ops, policy)
        got = _play(on_cluster, ops, policy)
    finally:
        on_cluster.close()
        cleanup(redis_cluster_url, prefix)
    assert got == expected


def test_heat_decays_exponentially(engine: Engine) -> None:
    d = Driver(engine, hot_policy(hot_cohort_window="1 day", hot_cohort_baseline="28 days"))
    first = d.look("dr", "a", "c1")
    assert first.heat == pytest.approx(1.0)
    d.wait(DAY)
    second = d.look("dr2", "b", "c1")
    assert second.heat == pytest.approx(1 + math.exp(-1), abs=1e-3)
    assert second.expected == pytest.approx((1 + math.exp(-1 / 28)) / 28, abs=1e-3)


def test_the_async_path_decides_the_same(engine: Engine) -> None:
    """The async path (on Redis: the dispatcher's pipelines; on a Cluster, its two phases)."""
    import asyncio

    sync = Driver(engine, hot_policy(break_glass=None))
    expected = [sync.look(f"s{i}", f"p{i}", "c1") for i in range(8)]

    async def run() -> list[Decision]:
        d = Driver(engine, hot_policy(break_glass=None), now=T0 + 400 * DAY)
        got = []
        for i in range(8):
            got.append(await engine.adecide(d.request(f"a{i}", f"q{i}", "c9")))
        got.append(await engine.adecide(d.request("a0", "q0", "c9")))
        got.append(await engine.adecide(d.request("a9", "q0", "c9")))
        await engine.aclose()
        return got

    got = asyncio.run(run())
    assert [(x.outcome, x.hot, x.hot_alert) for x in got[:8]] == [
        (x.outcome, x.hot, x.hot_alert) for x in expected
    ]
    assert (got[8].outcome, got[8].hot) == ("allowed", False)  # a repeat: one call, no heat
    assert (got[9].outcome, got[9].hot) == ("allowed", True)


def test_a_policy_change_keeps_the_lockout_and_the_shared_windows(engine: Engine) -> None:
    old = QuotaPolicy.only(invalid_nirs="1/hour", lookups="10/hour", distinct_patients="5/day")
    new = QuotaPolicy.only(lookups="10/hour;100/day", distinct_patients="5/day", misses="9/day")
    d = Driver(engine, old)
    d.look("dr2", "a")
    d.look("dr2", "b")
    d.invalid("dr")
    assert d.invalid("dr").outcome == "denied"  # locked out under the old policy
    d.policy = new
    assert d.look("dr", "x").outcome == "locked"  # the new policy keeps the lockout
    status = d.status("dr2")
    assert status.remaining["lookups"] == 8  # the 10/hour window is shared: carried over
    assert status.remaining["distinct_patients"] == 3


# -- edges that mutation testing found unchecked ---------------------------------------------------


def test_a_window_is_open_until_its_end_and_no_longer(engine: Engine) -> None:
    d = drive(engine, lookups="1/minute")
    d.look("dr", "a")
    d.wait(59.5)
    assert d.look("dr", "a").outcome == "denied"
    d.wait(0.5)  # exactly one minute after the first hit: a new window
    assert d.look("dr", "a").outcome == "allowed"


def test_a_patient_is_new_again_exactly_when_its_window_ends(engine: Engine) -> None:
    d = drive(engine, distinct_patients="1/hour", break_glass=None)
    d.look("dr", "a")
    d.wait(HOUR - 1)
    assert d.look("dr", "a").outcome == "allowed"  # a repeat
    d.wait(1)
    assert d.look("dr", "b").outcome == "allowed"  # a new window: b is the first new patient
    assert d.look("dr", "a").outcome == "denied"  # a is new again, and past the quota


def test_a_grant_ends_exactly_with_its_time_box(engine: Engine) -> None:
    d = drive(engine, distinct_patients="1/day", break_glass="5/day", break_glass_access="1 hour")
    d.look("dr", "a")
    d.look("dr", "b", reason=True)
    d.wait(HOUR - 1)
    assert d.look("dr", "b").quota == "break_glass"
    d.wait(1)
    assert d.look("dr", "b").outcome == "reason_required"


def test_the_miss_ratio_forgets_with_its_window(engine: Engine) -> None:
    d = drive(engine, miss_ratio=0.5, miss_ratio_min_lookups=3, miss_ratio_window="1 hour")
    for patient in ("a", "b"):  # two lookups, two misses: too few lookups for a ratio yet
        d.look("dr", patient)
        d.miss("dr")
    d.wait(HOUR)  # both counts start again
    for patient in ("c", "d", "e"):
        assert d.look("dr", patient).outcome == "allowed"
    assert d.look("dr", "f").outcome == "allowed"  # 0 misses of 3 lookups, not 2 of 3


def test_a_lockout_until_unlock_outlives_every_other_record(engine: Engine) -> None:
    d = drive(engine, invalid_nirs="1/hour", misses="100/day", lockout_escalation=(None,))
    d.invalid("dr")
    d.invalid("dr")  # first lockout: an hour
    d.wait(2 * HOUR)
    d.invalid("dr")
    assert d.invalid("dr").retry_after is None  # second: until unlock()
    d.miss("dr")  # a miss recorded after the lockout rewrites the record
    d.wait(60 * DAY)
    assert d.look("dr", "a").outcome == "locked"


def test_a_grant_answers_the_question(engine: Engine) -> None:
    """After a grant, the next new patient past the quota is asked again, not locked out."""
    d = drive(engine, distinct_patients="1/day", break_glass="5/day")
    d.look("dr", "a")
    assert d.look("dr", "b").outcome == "reason_required"
    assert d.look("dr", "b", reason=True).outcome == "break_glass"
    assert d.look("dr", "c").outcome == "reason_required"  # asked, not locked
    assert d.look("dr", "c", reason=True).outcome == "break_glass"


def test_a_locked_account_heats_no_cohort(engine: Engine) -> None:
    # A bot locked out keeps asking for new people: were its attempts evidence about
    # their cohorts, it would make them hot and trip the ordinary accounts that look
    # people of those cohorts up (portal_cohort). Only accounts not locked heat cohorts.
    d = Driver(
        engine,
        hot_policy(distinct_patients="2/hour", break_glass=None, hot_cohort_window="1 day"),
    )
    assert [d.look("bot", f"p{i}", "c1").outcome for i in range(3)] == [
        "allowed",
        "allowed",
        "denied",
    ]
    heat = d.look("dr", "q0", "c1").heat  # the bot's three asks and this lookup
    for i in range(3, 40):
        d.wait(1)
        assert d.look("bot", f"p{i}", "c1").outcome == "locked"
    after = d.look("dr", "q1", "c1").heat
    assert after == pytest.approx(heat + 1, abs=0.01)  # only dr's own new patient
