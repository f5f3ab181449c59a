"""The ``sequence`` signal on every engine (memory, Redis, Redis Cluster): walks shared by
accounts are refused with their evidence, what the signal remembers and forgets (a walker's
history, a reason given, an unlock, twins, the heat window); then the two properties the
signal is for: a walk shared by accounts is always refused, random lookups on a portal of
realistic density are not, even a dense one. The model of the rule:
``tests/test_sequence_model.py``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nirguard._engine import Decision, Engine, Request
from nirguard._memory import MemoryEngine
from nirguard._sequence import SPACING, TWINS, Z2
from tests.engine_helpers import DAY, ENGINES, T0, engines, sequence_policy
from tests.sequence_helpers import (
    HOT,
    LIMIT,
    POLICY,
    label,
    probes,
    sequence_request,
    shared_walk,
)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from engines(request)


def test_a_walk_shared_by_accounts_is_refused_with_the_evidence(engine: Engine) -> None:
    """16 cohorts at once, a lookup every 2 minutes: a cohort's next number every 32
    minutes, its neighbour seen, its controls (4 numbers back or more) out of the heat."""
    run = uuid.uuid4().hex[:8]
    refused, got, _ = shared_walk(engine, run, ["a0", "a1", "a2", "a3"], 16, 120.0, T0)
    assert set(refused) == {"a0", "a1", "a2", "a3"}
    for decision in refused.values():
        assert (decision.outcome, decision.quota) == ("suspected", "sequence")
        # the sign test's least evidence: Z2 new patients with a neighbour only, no control
        assert decision.evidence["neighbour_only"] == Z2
        assert decision.evidence["control_only"] == 0
    # each account got its share of the first round (nobody next to anyone) and Z2 - 1 more
    assert max(got.values()) <= 16 // 4 + Z2 - 1


def test_a_walk_dense_enough_to_cancel_the_controls_heats_its_cohort() -> None:
    """The limit of the control: a walk that looks up each cohort's numbers ``d`` apart
    within the heat window sees its controls too, and ``sequence`` stays silent; such a
    walk is what ``hot_cohort`` sees (its own tests)."""
    engine = MemoryEngine(lambda: T0, prefix="dense")
    refused, got, _ = shared_walk(engine, "d", ["a0", "a1", "a2"], 1, 120.0, T0)
    assert refused == {} and sum(got.values()) == 60


def test_an_account_that_walked_breaches_again_at_its_next_neighbour(engine: Engine) -> None:
    """Back from its lockouts, a day later, the walker's evidence has aged out of the
    windows and its neighbours out of the heat; its next new patient with a neighbour
    only breaches at once (limit 0), where an account with no history is let through."""
    run = uuid.uuid4().hex[:8]
    refused, _, now = shared_walk(engine, run, ["w1", "w2"], 16, 120.0, T0)
    assert set(refused) == {"w1", "w2"}
    now += 2 * DAY  # past the lockout, the day window and the heat window
    engine.decide(sequence_request(run, "x", 20, 10, now))  # somebody else's patients: 10 and 20
    engine.decide(sequence_request(run, "x", 20, 20, now))
    fresh = engine.decide(sequence_request(run, "y", 20, 11, now + 60.0))
    assert (fresh.outcome, fresh.quota) == ("allowed", None)  # no history: under the quota
    walker = engine.decide(sequence_request(run, "w1", 20, 21, now + 60.0))
    assert (walker.outcome, walker.quota, walker.limit) == ("suspected", "sequence", 0)
    assert walker.lockout_started  # its week's evidence, or its history
    now += 8 * DAY  # "w2"'s history ended 7 days after its breach: treated as anyone's
    engine.decide(sequence_request(run, "x", 21, 10, now))
    late = engine.decide(sequence_request(run, "w2", 21, 11, now + 60.0))
    assert (late.outcome, late.quota) == ("allowed", None)


def test_a_question_answered_with_a_reason_is_not_remembered(engine: Engine) -> None:
    """Only a lockout by ``sequence`` is remembered: an account that answers the question
    with a reason (break-glass) is judged on the quota, the test and the share again
    later, where one that moved on to another patient was locked and breaches at its
    next neighbour."""
    policy = sequence_policy(
        f"{LIMIT}/day;{10 * LIMIT}/7 days", heat=None, break_glass="5/day;10/7 days"
    )._compiled
    run, now = uuid.uuid4().hex[:8], T0

    def ask(who: str, cohort: int, order: int, at: float, reason: bool = False) -> Decision:
        return engine.decide(
            Request(f"{run}-{who}", policy, label(run, cohort, order), f"{run}-c{cohort}",
                    reason=reason, now=at, neighbours=probes(run, cohort, order))
        )  # fmt: skip

    last = {}
    for who, base in (("gp", 100), ("bot", 200)):  # each next to "x"'s patients until asked
        for step in range(1, 40):  # a fresh cohort each time: 10 seen, the controls not
            ask(f"x{step}", base + step, 10, now)
            first = ask(who, base + step, 11, now + 1.0)
            now += 60.0
            if first.outcome != "allowed":
                break
        assert (first.outcome, first.quota) == ("reason_required", "sequence")
        assert (first.count, first.limit) == (Z2, 0)
        last[who] = base + step
    assert ask("gp", last["gp"], 11, now, reason=True).outcome == "break_glass"
    moved = ask("bot", 1, 99, now)  # another patient, the question unanswered
    assert (moved.outcome, moved.quota, moved.lockout_started) == ("suspected", "sequence", True)
    now += 2 * DAY  # past the lockout and the day window
    ask("y", 2, 10, now)
    ask("y", 3, 10, now)
    assert ask("gp", 2, 11, now + 1.0).quota is None  # under the quota again
    again = ask("bot", 3, 11, now + 1.0)
    assert (again.outcome, again.quota, again.limit) == ("reason_required", "sequence", 0)


def test_unlock_forgets_that_an_account_walked(engine: Engine) -> None:
    run, now = uuid.uuid4().hex[:8], T0
    for step in range(1, 40):  # "a" alone next to "x"'s patients, a fresh cohort each time
        engine.decide(sequence_request(run, "x", 100 + step, 10, now))
        decision = engine.decide(sequence_request(run, "a", 100 + step, 11, now + 1.0))
        now += 60.0
        if decision.quota == "sequence":
            break
    assert decision.quota == "sequence"
    engine.unlock(f"{run}-a", POLICY._compiled)
    now += 2 * DAY  # past the day window: the week's holds Z2 - 1, under the test
    engine.decide(sequence_request(run, "x", 1, 5, now))
    after = engine.decide(sequence_request(run, "a", 1, 6, now + 1.0))
    assert (after.outcome, after.quota) == ("allowed", None)


def test_twins_and_a_practice_s_own_neighbours_are_no_evidence(engine: Engine) -> None:
    run, now = uuid.uuid4().hex[:8], T0
    for order in range(1, 41):  # one account looks up a whole run of one cohort
        decision = engine.decide(sequence_request(run, "gp", 0, order, now))
        assert decision.outcome == "allowed"
        now += 60.0
    # another account next to them: the portal saw them, they are not its own
    outcomes = [
        engine.decide(sequence_request(run, "other", 0, order, now)).quota for order in (41, 43)
    ]
    assert outcomes == [None, None]  # counted, under the quota


def test_the_neighbours_are_forgotten_after_the_heat_window(engine: Engine) -> None:
    run, now = uuid.uuid4().hex[:8], T0
    for order in range(1, 30, 2):  # account "a" takes the odd numbers
        assert engine.decide(sequence_request(run, "a", 0, order, now)).outcome == "allowed"
    now += HOT + 1.0  # the heat window later nobody remembers them: "b" walks the even ones
    for order in range(2, 30, 2):
        assert engine.decide(sequence_request(run, "b", 0, order, now)).outcome == "allowed"
        now += 1.0


# -- the properties the signal is for ----------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    accounts=st.integers(2, 19),
    cohorts=st.integers(2, 16),
    step=st.sampled_from([120.0, 300.0, 900.0, 1800.0]),
)
def test_a_walk_shared_over_n_accounts_always_trips_each_account(
    accounts: int, cohorts: int, step: float
) -> None:
    """A walk of ``cohorts`` cohorts at once (round robin, one number every ``step``
    seconds), each account taking the next number in turn: every account is refused
    within K new patients of its own, K = twice its share of the first round (nobody
    next to anyone yet) plus the sign test's least evidence (:data:`Z2`). The walk's
    round takes a quarter of the heat window to all of it: a cohort's previous number
    is still remembered, the controls (``d`` >= 4 numbers back) are not. Excluded: each
    account walking its own cohorts faster than twins (the ``cohort`` quota's case)."""
    round_ = cohorts * step
    assume(HOT / SPACING[0] < round_ < HOT)
    assume(cohorts % accounts != 0 or round_ >= TWINS)
    engine = MemoryEngine(lambda: T0, prefix="seq")
    names = [f"a{i}" for i in range(accounts)]
    refused, got, _ = shared_walk(engine, "w", names, cohorts, step, T0, orders=999)
    assert len(refused) == accounts
    assert max(got.values()) <= 2 * -(-cohorts // accounts) + Z2


def _random_week(seed: int, per_day: int, accounts: int = 40, cohorts: int = 40) -> int:
    """A week of ``accounts`` accounts, ``per_day`` new patients a day each, at random over
    ``cohorts`` full cohorts (999 people each), in office hours, under the default's
    values: how many lookups ``sequence`` refused."""
    policy = sequence_policy("6/day;8/7 days", share=0.3, heat=None)
    engine = MemoryEngine(lambda: T0, prefix="legit")
    rng = random.Random(seed)
    now, refused, daily = T0, 0, accounts * per_day
    for _ in range(7):
        for _ in range(daily):
            who, cohort, order = (
                rng.randrange(accounts),
                rng.randrange(cohorts),
                rng.randint(1, 999),
            )
            request = Request(
                f"gp{who}", policy._compiled, label("p", cohort, order), f"c{cohort}",
                now=now, neighbours=probes("p", cohort, order),
            )  # fmt: skip
            refused += engine.decide(request).quota == "sequence"
            now += DAY / daily / 2  # the day's lookups in half of it
        now += DAY / 2
    return refused


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_lookups_of_a_practice_never_trip(seed: int) -> None:
    """40 accounts, 10 new patients a day each (a GP's usual), over 40,000 people: 1% of
    them a day."""
    assert _random_week(seed, 10) == 0


def test_random_lookups_on_a_portal_as_dense_as_a_national_one_do_not_trip() -> None:
    """40 busy accounts, 30 new patients a day each, over 4,000 people: 30% of them a day,
    twice a national portal's share, so that a new patient's neighbour was seen within
    the day about half the time. The neighbour alone (the rule before the control)
    refused most of these accounts; against the control, none in 10 weeks (400
    account-weeks)."""
    assert sum(_random_week(seed, 30, cohorts=4) for seed in range(10)) == 0
