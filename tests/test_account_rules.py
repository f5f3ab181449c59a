"""The account step's rules at their edges, on every engine (found by mutation testing).

Each test pins one documented rule that ``mutmut`` showed no other test checked: what
a refusal reports (quota, counts, level), which patients a lockout remembers, how
long a lockout outlives the record's usual keep, the miss ratio's boundary, and what
a break-glass grant leaves behind (docs/guard.md, docs/rules.md; docs/testing.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nirguard import QuotaPolicy
from nirguard._engine import Decision, Engine
from nirguard._memory_account import STRUCK_MAX
from tests.engine_helpers import DAY, ENGINES, HOUR, Driver, engines, gp_policy


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from engines(request)


def _locked_by_moving_on(d: Driver, who: str) -> Decision:
    """Two new patients, a third asks for a reason, a fourth (``y``, moving on) locks."""
    d.look(who, "a")
    d.look(who, "b")
    assert d.look(who, "x").outcome == "reason_required"
    d.wait(60)
    return d.look(who, "y")


# -- what a refusal reports ------------------------------------------------------------------------


def test_a_lockout_on_a_second_patient_reports_its_count(engine: Engine) -> None:
    lockout = _locked_by_moving_on(Driver(engine, gp_policy()), "bot")
    assert (lockout.outcome, lockout.quota, lockout.lockout_started) == (
        "denied",
        "distinct_patients",
        True,
    )
    assert lockout.evidence == {"distinct_patients": 3, "limit": 2, "lockout_level": 1}


def test_a_refusal_while_locked_names_the_lockout(engine: Engine) -> None:
    d = Driver(engine, gp_policy())
    _locked_by_moving_on(d, "gp")
    refused = d.look("gp", "c")
    assert (refused.outcome, refused.quota, refused.level) == ("locked", "locked", 1)
    assert refused.retry_after == pytest.approx(HOUR)


def test_the_escalation_while_locked_reports_the_strikes(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy.only(invalid_nirs="1/hour", strikes="3/hour"))
    d.invalid("dr")
    d.invalid("dr")
    escalated = [d.invalid("dr") for _ in range(4)][-1]
    assert (escalated.quota, escalated.lockout_started) == ("strikes", True)
    assert escalated.evidence == {"strikes": 4, "limit": 3, "lockout_level": 2}


def test_a_misses_lockout_reports_the_misses(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy.only(misses="3/hour"))
    for i in range(3):
        d.look("dr", f"p{i}")
        d.miss("dr")
    lockout = d.look("dr", "p9")
    assert (lockout.outcome, lockout.quota, lockout.lockout_started) == ("denied", "misses", True)
    assert lockout.evidence == {"misses": 3, "limit": 3, "lockout_level": 1}


def test_the_misses_budget_forgets_with_its_window(engine: Engine) -> None:
    """Spent misses refuse until the window's last second and not at its end (issue 20's
    memory pass reads the window inline: no test held its end)."""
    d = Driver(engine, QuotaPolicy.only(misses="2/hour"))
    for who in ("dr", "dr2"):
        for patient in ("a", "b"):
            d.look(who, patient)
            d.miss(who)
    d.wait(HOUR - 1)
    assert d.look("dr", "c").quota == "misses"  # the window's last second: still spent
    d.wait(1)
    assert d.look("dr2", "c").outcome == "allowed"  # the window has ended: whole again


def test_decisions_after_a_lockout_carry_its_level(engine: Engine) -> None:
    """The level (lockouts within ``lockout_memory``) is on every decision, not only on
    the lockout: an allowed lookup and a 428 after the lockout ended say 1."""
    d = Driver(engine, gp_policy())
    _locked_by_moving_on(d, "gp")
    d.wait(HOUR + 1)
    allowed = d.look("gp", "a")
    asked = d.look("gp", "z")
    assert (allowed.outcome, allowed.level) == ("allowed", 1)
    assert (asked.outcome, asked.level) == ("reason_required", 1)


# -- the patients a lockout remembers ---------------------------------------------------------------


def test_a_lockout_remembers_its_first_four_patients_only(engine: Engine) -> None:
    """The patient that started the lockout and the first ones refused during it, up to
    ``STRUCK_MAX``: a retry of one of them is a strike, a retry of a later one is not."""
    assert STRUCK_MAX == 4
    d = Driver(engine, gp_policy())
    _locked_by_moving_on(d, "bot")  # remembers y
    for patient in ("c1", "c2", "c3", "c4", "c5"):  # c1..c3 remembered; c4, c5 not
        assert d.look("bot", patient).outcome == "locked"
    assert d.status("bot").remaining["strikes"] == 3
    assert d.look("bot", "c4").outcome == "locked"
    assert d.status("bot").remaining["strikes"] == 3  # not remembered: no strike
    assert d.look("bot", "c3").outcome == "locked"
    assert d.status("bot").remaining["strikes"] == 2  # remembered: a strike


def test_an_escalated_lockout_outlives_the_records_keep(engine: Engine) -> None:
    """A record is kept ``keep`` after its last write (here about an hour), but a
    lockout longer than that keeps it until the lockout ends: a day's lockout still
    refuses a minute before its end, and ends on time."""
    policy = QuotaPolicy.only(
        invalid_nirs="1/minute",
        strikes="1/hour",
        lockout="1 hour",
        lockout_escalation=("1 day",),
        lockout_memory="10 minutes",
    )
    d = Driver(engine, policy)
    d.invalid("dr")
    d.invalid("dr")  # locked, 1 hour
    d.invalid("dr")  # a retry: a strike
    escalated = d.invalid("dr")
    assert (escalated.level, escalated.retry_after) == (2, pytest.approx(DAY))
    d.wait(DAY - 30)
    still = d.look("dr", "p0")
    assert (still.outcome, still.retry_after) == ("locked", pytest.approx(30))
    d.wait(31)
    assert d.look("dr", "p0").outcome == "allowed"


# -- the miss ratio ---------------------------------------------------------------------------------


def test_the_miss_ratio_locks_only_past_the_ratio(engine: Engine) -> None:
    """``miss_ratio`` fires when misses / lookups *exceeds* it, once the practitioner
    made ``miss_ratio_min_lookups``: exactly half is not past 0.5, 3 of 5 is."""
    d = Driver(engine, QuotaPolicy.only(miss_ratio=0.5, miss_ratio_min_lookups=4))
    for i in range(4):
        assert d.look("dr", f"p{i}").outcome == "allowed"
    d.miss("dr")
    d.miss("dr")
    assert d.look("dr", "p4").outcome == "allowed"  # 2 misses / 4 lookups: not past 0.5
    d.miss("dr")
    lockout = d.look("dr", "p5")  # 3 / 5
    assert (lockout.quota, lockout.lockout_started) == ("miss_ratio", True)
    assert lockout.evidence == {"misses": 3, "lookups": 5, "ratio": 0.6, "lockout_level": 1}


def test_a_break_glass_grant_is_a_lookup_of_the_miss_ratio(engine: Engine) -> None:
    policy = QuotaPolicy.only(
        distinct_patients="1/day", break_glass="5/day", miss_ratio=0.5, miss_ratio_min_lookups=2
    )
    d = Driver(engine, policy)
    assert d.look("dr", "a").outcome == "allowed"
    assert d.look("dr", "b", reason=True).outcome == "break_glass"  # the 2nd lookup
    d.miss("dr")
    d.miss("dr")
    lockout = d.look("dr", "c", reason=True)
    assert (lockout.quota, lockout.lockout_started) == ("miss_ratio", True)
    assert lockout.evidence == {"misses": 2, "lookups": 2, "ratio": 1.0, "lockout_level": 1}


# -- what a break-glass grant leaves behind ---------------------------------------------------------


def test_a_grant_reports_the_breach_and_the_budget_left(engine: Engine) -> None:
    d = Driver(engine, gp_policy())
    d.look("gp", "a")
    d.look("gp", "b")
    granted = d.look("gp", "x", reason=True)
    assert (granted.outcome, granted.quota) == ("break_glass", "distinct_patients")
    assert granted.evidence == {"distinct_patients": 3, "limit": 2, "break_glass_left": 0}


def _hot_cohort(d: Driver) -> None:
    for i in range(8):
        d.look(f"other{i}", f"o{i}", "c1")


def test_a_hot_cohort_grant_opens_the_patient_from_the_first_lookup(engine: Engine) -> None:
    """A practitioner's very first lookup may be a grant (a hot cohort, a reason given):
    the patient stays open afterwards without a reason."""
    policy = QuotaPolicy.only(
        hot_cohort=4.0, hot_cohort_min=5, hot_cohort_action="reason", break_glass="1/day"
    )
    d = Driver(engine, policy)
    _hot_cohort(d)
    assert d.look("gp", "n1", "c1").outcome == "reason_required"
    granted = d.look("gp", "n1", "c1", reason=True)
    assert (granted.outcome, granted.quota, granted.break_glass_left) == (
        "break_glass",
        "hot_cohort",
        0,
    )
    again = d.look("gp", "n1", "c1")
    assert (again.outcome, again.quota) == ("allowed", "break_glass")


# -- portal_cohort: a share of the practitioner's new patients ---------------------------------------


@pytest.mark.parametrize(("cold", "fires_at"), [(3, 3), (4, 4)])
def test_portal_cohort_fires_at_half_of_the_new_patients(
    engine: Engine, cold: int, fires_at: int
) -> None:
    """Past ``portal_cohort`` (2 a day), the new patients of hot cohorts fire only once
    they are at least ``portal_cohort_share`` (half) of the practitioner's new patients,
    this one included: after 3 in cold cohorts the 3rd hot one is 3 of 6 and fires;
    after 4, the 3rd is 3 of 7 and passes, the 4th is 4 of 8 and fires."""
    policy = QuotaPolicy.only(
        hot_cohort=4.0, hot_cohort_min=5, portal_cohort="2/day", portal_cohort_share=0.5
    )
    d = Driver(engine, policy)
    _hot_cohort(d)
    for i in range(cold):
        assert d.look("gp", f"k{i}", f"d{i}").outcome == "allowed"
    hot = [d.look("gp", f"h{i}", "c1") for i in range(fires_at)]
    assert [x.outcome for x in hot[:-1]] == ["allowed"] * (fires_at - 1)
    assert all(x.hot for x in hot)
    fired = hot[-1]
    assert (fired.outcome, fired.quota, fired.lockout_started) == (
        "suspected",
        "portal_cohort",
        True,
    )
    assert (fired.count, fired.limit) == (fires_at, 2)


def test_a_lookup_without_a_cohort_is_outside_every_cohort_quota(engine: Engine) -> None:
    """A lookup whose cohort is unknown (``None``) is counted against no cohort: the
    ``cohort`` quota never refuses it, and it leaves the cohorts' walks as they were."""
    d = Driver(engine, QuotaPolicy.only(cohort="2/day"))
    assert [d.look("dr", f"n{i}", None).outcome for i in range(5)] == ["allowed"] * 5
    assert [d.look("dr", f"c{i}", "c1").outcome for i in range(2)] == ["allowed"] * 2
    refused = d.look("dr", "c9", "c1")
    assert (refused.quota, refused.count, refused.limit) == ("cohort", 3, 2)


def test_the_question_expires_at_its_instant(engine: Engine) -> None:
    """A 428 is pending for the first lockout's length (1 hour), not a moment more: at
    that exact instant another patient is asked anew, not locked out."""
    d = Driver(engine, gp_policy())
    d.look("gp", "a")
    d.look("gp", "b")
    assert d.look("gp", "x").outcome == "reason_required"
    d.wait(HOUR)
    asked = d.look("gp", "y")
    assert (asked.outcome, asked.quota, asked.lockout_started) == (
        "reason_required",
        "distinct_patients",
        False,
    )
