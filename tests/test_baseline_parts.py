"""The ``baseline`` signal's smaller parts, pinned by known answers on every engine:
what ``status()`` shows of the account's normal, how the profiles count, which places
and hours are usual (found by mutation testing, docs/testing.md).

Each number below is worked out by hand from the rule in ``nirguard._baseline``'s
docstring and docs/guard.md, not read back from the code: a test fails when the
arithmetic changes, on the memory engine and on its Lua twin alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nirguard import QuotaPolicy
from nirguard._engine import Decision, Engine, Request
from tests.engine_helpers import DAY, ENGINES, HOUR, engines
from tests.test_baseline import Practice

MONDAY = 1_770_595_200.0  # a Monday, 00:00 UTC
#: Never refuses (``baseline`` far above any score here); a prior of 10 +- 6 new
#: patients a day that fades out over 4 days of history; local time is UTC.
POLICY = QuotaPolicy.only(
    distinct_patients="1000/day",
    baseline=50.0,
    baseline_prior=(10.0, 6.0),
    baseline_prior_days=4,
    baseline_utc_offset=0.0,
)

#: The same policy with a bar that any new patient passes: a lookup under it reads
#: today's counts back as the evidence of the breach it causes.
PROBE = QuotaPolicy(**{**POLICY.model_dump(), "baseline": 0.01, "baseline_slack": 0.0})


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from engines(request)


def _look(
    engine: Engine, patient: str, place: int, now: float, who: str = "dr", p: QuotaPolicy = POLICY
) -> Decision:
    decision = engine.decide(Request(who, p._compiled, patient, None, False, now, place))
    assert decision.outcome == "allowed"
    return decision


def _probe(engine: Engine, who: str, place: int, now: float) -> dict[str, Any]:
    """The evidence of one more new patient at ``place`` now (under :data:`PROBE`)."""
    request = Request(who, PROBE._compiled, f"{who}-probe", None, False, now, place)
    decision = engine.decide(request)
    assert decision.quota == "baseline"
    return decision.evidence


def _day(engine: Engine, day: int, new: int, repeats: int, usual: int = 1) -> None:
    """``new`` new patients from 09:00 (one a minute) born at place ``usual``, then
    ``repeats`` of them again from 11:00."""
    for i in range(new):
        _look(engine, f"d{day}-{i}", usual, MONDAY + day * DAY + 9 * HOUR + i * 60)
    for i in range(repeats):
        _look(engine, f"d{day}-{i}", usual, MONDAY + day * DAY + 11 * HOUR + i * 60)


def _status(engine: Engine, day: float, who: str = "dr", p: QuotaPolicy = POLICY) -> Any:
    return engine.status(who, p._compiled, MONDAY + day * DAY).baseline


def test_status_shows_the_normal_in_its_units(engine: Engine) -> None:
    """Days of history, the EWMA of new patients a day, the day expected (the account's
    own EWMA blended with its peers' prior over ``baseline_prior_days``) and its sd (at
    least the Poisson noise and 20% of the mean), the EWMA share of repeats, today's
    counts and the CUSUM, rounded as documented. The places profile holds fewer than 60
    lookups throughout: every place is unusual, so both EWMAs are the same here."""
    assert _status(engine, 0) is None  # never seen: no normal
    _day(engine, 0, 5, 1)
    assert _status(engine, 0.9) == {  # the first day: the prior alone, no history
        "days": 0.0,
        "new_per_day": 0.0,
        "expected": 10.0,
        "sd": 6.0,
        "expected_unusual_places": 10.0,
        "repeat_share": 0.0,
        "new_today": 5.0,
        "unusual_places_today": 5.0,
        "cusum": 0.0,
    }
    # Day 0 rolls in with weight a = max(1/21, 1/(0 + 1)) = 1: mean 5, semi-variance
    # 0, repeats 1 of 6; it scores (5 - 10) / 6 < 0: no CUSUM. Blended at 1 day of 4:
    # 5/4 + 10 * 3/4 = 8.75, sd sqrt(max(0/4 + 36 * 3/4, 8.75 + 0.04 * 8.75^2)).
    assert _status(engine, 1) == {
        "days": 1.0,
        "new_per_day": 5.0,
        "expected": 8.75,
        "sd": 5.2,  # sqrt(27)
        "expected_unusual_places": 8.75,
        "repeat_share": 0.167,  # 1/6, to 3 places
        "new_today": 0.0,
        "unusual_places_today": 0.0,
        "cusum": 0.0,
    }
    _day(engine, 1, 25, 2)
    # Day 1 enters the EWMAs clipped at 2 sd above its expected (8.75 + 2 x 5.196 =
    # 19.14) with a = 1/2: mean 5 + 14.14/2 = 12.07, semi-variance (1 - 1/2) (0 + 1/2 x
    # 2 x 14.14^2) = 100.0, repeats 1/6 + (2/27 - 1/6)/2 = 0.1204; it scores
    # (25 - 8.75) / 5.196 = 3.13, less the slack: CUSUM 2.13. Blended at 2 days of 4:
    # 12.07/2 + 10/2 = 11.04, sd sqrt(100.0/2 + 36/2): the spread of its own days now.
    assert _status(engine, 2) == {
        "days": 2.0,
        "new_per_day": 12.07,
        "expected": 11.04,
        "sd": 8.25,
        "expected_unusual_places": 11.04,
        "repeat_share": 0.12,
        "new_today": 0.0,
        "unusual_places_today": 0.0,
        "cusum": 2.13,
    }
    _day(engine, 2, 6, 3)
    # Day 2 (a quiet day: the upper semi-variance ignores it) with a = 1/3: mean
    # 12.07 - 6.07/3 = 10.05, semi-variance 100.0 x 2/3 = 66.7, repeats 0.1204 +
    # (3/9 - 0.1204)/3 = 0.191; it scores (6 - 11.04) / 8.25 = -0.61: CUSUM 2.13 - 0.61
    # - 1 = 0.52. Blended at 3 days of 4: 10.04, sd sqrt(66.7 x 3/4 + 36/4).
    assert _status(engine, 3) == {
        "days": 3.0,
        "new_per_day": 10.05,
        "expected": 10.04,
        "sd": 7.68,
        "expected_unusual_places": 10.04,
        "repeat_share": 0.191,
        "new_today": 0.0,
        "unusual_places_today": 0.0,
        "cusum": 0.52,
    }


class _Places:
    """One account's lookups on Tuesday (day 1), one a minute from 09:00, and how many
    of its new patients so far were born at places it seldom serves."""

    def __init__(self, engine: Engine, who: str) -> None:
        self.engine, self.who, self.made = engine, who, 0

    def look(self, place: int, count: int = 1, *, new: bool = True) -> float:
        for _ in range(count):
            self.made += 1
            patient = f"{self.who}{self.made}" if new else f"{self.who}1"
            _look(self.engine, patient, place, MONDAY + DAY + 9 * HOUR + self.made * 60, self.who)
        return float(_status(self.engine, 1.9, self.who)["unusual_places_today"])


def test_a_place_is_usual_from_4_percent_of_a_profile_of_60_lookups(engine: Engine) -> None:
    """Until the places profile holds 60 lookups every place is unusual; then a place is
    usual from 4% of them. Bucket 0 is a place like the others; a place outside the 64
    buckets (-1: unknown) is always unusual and counts in none of them."""
    exact = _Places(engine, "exact")
    assert exact.look(0, 57) == 57  # a profile of 57, then 58, ...: all unusual
    assert exact.look(9, 2) == 59
    assert exact.look(9) == 60  # 59 lookups, 2 of them at 9: still under 60
    assert exact.look(0) == 60  # 60 lookups, 57 at 0: usual
    assert exact.look(9) == 60  # 3 of 61 (4.9%)
    assert exact.look(33) == 61  # never seen
    share = _Places(engine, "share")
    assert share.look(5, 72) == 60  # usual from the 61st
    assert share.look(7, 3) == 63  # 72 at 5, 3 at 7
    assert share.look(7) == 63  # 3 of 75: exactly 4%, usual
    assert share.look(-1, 20) == 83  # unknown: always unusual...
    assert share.look(63) == 84  # ... and counted in no bucket (not in the last one)
    assert share.look(64, 4) == 88  # past the buckets: unusual, counted nowhere
    assert share.look(5, new=False) == 88  # a repeat counts in the profile, not today
    assert share.look(5) == 88


def test_a_profile_halves_its_counts_when_one_reaches_255(engine: Engine) -> None:
    """The places profile keeps counting past 255 lookups at one place: every count is
    halved, so that the account's recent places weigh twice its older ones (and a byte
    never overflows)."""
    halved = _Places(engine, "halved")
    halved.look(1)
    assert halved.look(1, 255, new=False) == 1.0  # 256 lookups at 1: 255 halved to 127, +1
    # A new place is usual from 4% of 128 + k lookups: its seventh new patient (6 of 134)
    assert halved.look(2, 6) == 7.0
    assert halved.look(2) == 7.0


@pytest.mark.parametrize(
    ("day", "hour", "days", "cusum"),
    [
        (0, 2, 4, 7.33),  # Monday 02:00-04:00
        (5, 0, 4, 7.33),  # Saturday 00:00: the weekend's slots have nights too
        (6, 22, 4, 7.33),  # Sunday 22:00
        (0, 6, 4, 0.67),  # Monday 06:00: the night is over
        (0, 9, 4, 0.67),
        (0, 2, 1, 7.33),  # baseline_prior_days=1: its first day has none of its own yet
    ],
)
def test_a_fresh_accounts_nights_are_off_hours(
    engine: Engine, day: int, hour: int, days: int, cusum: float
) -> None:
    """Until it has ``baseline_prior_days`` days of its own, an account works its peers'
    hours: a new patient between 22:00 and 06:00 weighs ``baseline_off_hours`` (3). Its
    first day, 20 new patients from places it has no profile of yet, scores (20 + 2 x 20
    - 10) / 6 = 8.33 at night, (20 - 10) / 6 = 1.67 in the day, less the slack (1)."""
    policy = QuotaPolicy(**{**POLICY.model_dump(), "baseline_prior_days": days})
    for i in range(20):
        _look(engine, f"n{i}", 1, MONDAY + day * DAY + hour * HOUR + i * 60, p=policy)
    assert _status(engine, day + 1, p=policy)["cusum"] == cusum


def test_an_account_with_days_of_its_own_works_its_own_hours(engine: Engine) -> None:
    """From ``baseline_prior_days`` (4) days of history the peers' nights no longer
    apply: a night shift's nights are its usual hours. An hours slot is usual from 1% of
    the profile's lookups, once it holds 60: the first new patient in a slot the account
    never worked is off-hours, the next ones are not (1 of 61 lookups)."""
    for day in range(4):  # Monday to Thursday, 02:00
        for i in range(15):
            _look(engine, f"c{day}-{i}", 1, MONDAY + day * DAY + 2 * HOUR + i * 60, "night")
    friday = _probe(engine, "night", 1, MONDAY + 4 * DAY + 2 * HOUR)
    assert (friday["days_of_history"], friday["off_hours_new_patients"]) == (4, 0)
    for day in range(5):  # Monday to Friday, 09:00: 60 lookups in one slot
        for i in range(12):
            _look(engine, f"d{day}-{i}", 1, MONDAY + day * DAY + 9 * HOUR + i * 60, "day")
    for i in range(20):  # the next Monday at 14:00
        _look(engine, f"e{i}", 1, MONDAY + 7 * DAY + 14 * HOUR + i * 60, "day")
    monday = _probe(engine, "day", 1, MONDAY + 7 * DAY + 14 * HOUR + 30 * 60)
    assert (monday["new_patients_today"], monday["off_hours_new_patients"]) == (21, 1)


@pytest.mark.parametrize(("hour", "refused"), [(7, 12), (9, 16), (11, 21)])
def test_today_so_far_is_measured_against_the_share_of_the_day_done(
    engine: Engine, hour: int, refused: int
) -> None:
    """Five weekdays of 12 new patients, 3 in each two-hour slot from 09:00 to 17:00 (a
    profile of 60 lookups, from places all unusual until it held 60: 12 of 12 expected).
    The next Monday, new people from places it never serves from ``hour``, one a minute:
    today is measured against the share ``f`` of the weekday that the profile, today's
    lookups included, has done by the end of this slot (at least a third), expected
    ``12 f`` with an sd of ``sqrt(max(17.76 f, 12 f + 0.04 (12 f)^2))``; refused once
    ``z - 1`` passes ``baseline`` (3).

    At 07:00 the profile has done nothing: a third, ``z = (n + 2 - 4) / 2.43`` (the first
    is off-hours, the slot usual after it), refused at the 12th. At 09:00 the 16th sees
    ``f = 30 / 75``, ``z = (16 - 4.8) / 2.67 = 4.2``; at 11:00 the 21st sees
    ``f = 50 / 80``, ``z = (21 - 7.5) / 3.33 = 4.05``."""
    policy = QuotaPolicy(**{**POLICY.model_dump(), "baseline": 3.0})
    for day in range(5):
        for slot, start in enumerate((9, 11, 13, 15)):
            for i in range(3):
                at = MONDAY + day * DAY + start * HOUR + i * 60
                _look(engine, f"{day}-{slot}-{i}", 1, at)
    quotas = []
    for i in range(refused):
        request = Request(
            "dr", policy._compiled, f"x{i}", None, False, MONDAY + 7 * DAY + hour * HOUR + i * 60,
            40 + i % 20,
        )  # fmt: skip
        quotas.append(engine.decide(request).quota)
    assert quotas == [None] * (refused - 1) + ["baseline"]


def test_an_account_that_sees_almost_nobody_new_allows_an_sd_of_one(engine: Engine) -> None:
    """An account that looks up the same patient all week (new once in the
    ``distinct_patients`` window of 7 days: 12 lookups a weekday, 3 in each two-hour
    slot from 09:00) expects almost nobody new, 1/5 a day after five days; its sd, and
    the sd of any share of its day, is at least 1 (a third of the day's variance, an sd
    of 0.58, would refuse the third new patient). At 09:00 (a quarter of its profile
    done: a third counted), expected 1/15 with an sd of 1, the fifth new person scores
    (5 - 1/15) / 1 - 1 = 3.93 > 3."""
    fields = {**POLICY.model_dump(), "distinct_patients": "1000/7 days"}
    quiet = QuotaPolicy(**fields)
    policy = QuotaPolicy(**{**fields, "baseline": 3.0})
    for day in range(5):
        for slot, start in enumerate((9, 11, 13, 15)):
            for i in range(3):
                at = MONDAY + day * DAY + start * HOUR + i * 60
                _look(engine, "same", 1, at, p=quiet)
    normal = _status(engine, 7)
    assert (normal["days"], normal["expected"], normal["sd"]) == (5.0, 0.2, 1.0)
    quotas = []
    for i in range(5):
        at = MONDAY + 7 * DAY + 9 * HOUR + i * 60
        request = Request("dr", policy._compiled, f"x{i}", None, False, at, 40 + i)
        quotas.append(engine.decide(request).quota)
    assert quotas == [None] * 4 + ["baseline"]


def test_a_reason_stated_up_front_vouches_for_the_day_once(engine: Engine) -> None:
    """A clinician who states a reason with every lookup: the first breach is granted
    and vouches for the day; the second (past 1.5 times ``baseline``), granted too while
    the break-glass budget lasts, marks the day breached, so that it rolls in at the
    cap, 2 x ``baseline``, not at 0.8 x ``baseline``, even when the day ends with it.
    (Asked first, a 428, a breach marks the day breached and the reason then vouches
    for it again: docs/testing.md.)"""
    policy = QuotaPolicy.only(
        distinct_patients="1000/day",
        break_glass="2/day;4/7 days",
        baseline=5.0,
        baseline_prior=(25.0, 15.0),
    )
    practice = Practice(engine, policy=policy)
    practice.weeks(3)
    granted = []
    for i in range(60):  # up to the second grant
        now = MONDAY + 21 * DAY + (8 + 10 * (i + 0.5) / 60) * HOUR
        place = practice.rng.choice((1, 2, 3)) if i % 3 == 0 else practice.rng.randrange(64)
        outcome = practice.look(f"v{i}", place, now, reason=True).outcome
        if outcome != "allowed":
            granted.append(outcome)
            if len(granted) == 2:
                break
    assert granted == ["break_glass", "break_glass"]
    assert practice.status(22).baseline["cusum"] == 10.0


@pytest.mark.parametrize("saturday", [False, True])
def test_the_share_of_the_day_counts_from_the_profiles_60th_lookup(
    engine: Engine, saturday: bool
) -> None:
    """Four weekdays of 10 new patients from 09:00 (a profile of 40 lookups, each day 10
    expected with an sd of sqrt(10 + 0.04 x 10^2)). On Friday from 07:00, new people
    from places it never serves: while the profile, today's lookups included, holds
    fewer than 60, today is measured against the whole day, and the 20th new patient
    scores (20 - 10) / 3.74 - 1 = 1.67; the 21st, the profile's 60th lookup, is measured
    against a third of the day (none of its lookups before 09:00): (21 - 3.33) / 2.16
    - 1 = 7.2, refused. The same with 10 new patients the Saturday before between 00:00
    and 01:30: they are the weekend's (10 a day, all of them), not the weekdays'."""
    policy = QuotaPolicy(**{**POLICY.model_dump(), "baseline": 3.0})
    for i in range(10 if saturday else 0):
        _look(engine, f"s{i}", 1, MONDAY - 2 * DAY + i * 600)
    for day in range(4):
        for i in range(10):
            _look(engine, f"{day}-{i}", 1, MONDAY + day * DAY + (9 + i // 3 * 2) * HOUR + i * 60)
    quotas = []
    for i in range(21):
        at = MONDAY + 4 * DAY + 7 * HOUR + i * 60
        request = Request("dr", policy._compiled, f"x{i}", None, False, at, 40 + i % 20)
        quotas.append(engine.decide(request).quota)
    assert quotas == [None] * 20 + ["baseline"]


def test_the_weekend_has_a_profile_of_its_own_from_saturday_midnight(engine: Engine) -> None:
    """A weekend desk: three weekends, each day 10 new patients, 3 between 00:00 and
    02:00, 3 from 09:00, 4 from 13:00 (a weekend profile of 60 lookups, 10 expected a
    day with an sd of sqrt(10 + 0.04 x 10^2) = 3.74). The fourth Saturday from 09:00,
    new people from places it never serves: the share of the weekend day done by 10:00
    counts its midnight lookups and today's, (18 + 12 + 17) / (60 + 17) = 0.61 at the
    18th, expected 6.1 with an sd of sqrt(0.61 x 14) = 2.92: (18 - 6.1) / 2.92 - 1 =
    3.07, refused."""
    policy = QuotaPolicy(**{**POLICY.model_dump(), "baseline": 3.0})
    for day in (5, 6, 12, 13, 19, 20):
        for i, hour in enumerate((0, 0.5, 1, 9, 9.5, 10, 13, 13.5, 14, 14.5)):
            _look(engine, f"{day}-{i}", 1, MONDAY + day * DAY + hour * HOUR)
    normal = _status(engine, 26)
    assert (normal["days"], normal["expected"], normal["sd"]) == (6.0, 10.0, 3.74)
    quotas = []
    for i in range(18):
        at = MONDAY + 26 * DAY + 9 * HOUR + i * 60
        request = Request("dr", policy._compiled, f"x{i}", None, False, at, 40 + i % 20)
        quotas.append(engine.decide(request).quota)
    assert quotas == [None] * 17 + ["baseline"]


def test_a_reason_vouches_for_the_day_it_is_stated_on(engine: Engine) -> None:
    """An account that expects nobody new (a prior of 0 +- 0.5: an sd of 1) breaches
    with its first new patient at night (3 > ``baseline`` 0.9, no slack). A reason
    stated for it on Monday vouches for Monday; on Tuesday the first lookup, at night
    again, breaches again and its reason vouches for Tuesday (the day before's mark is
    not today's): a new patient at 09:00, scoring 1, stays under the vouched bar, 1.5 x
    0.9, where a breached day's bar, 0.9, would refuse it."""
    policy = QuotaPolicy.only(
        distinct_patients="1000/day",
        break_glass="5/day",
        baseline=0.9,
        baseline_slack=0.0,
        baseline_prior=(0.0, 0.5),
        baseline_utc_offset=0.0,
    )
    lookups = [("a", 2 * HOUR, True), ("b", DAY + 2 * HOUR, True), ("c", DAY + 9 * HOUR, False)]
    outcomes = []
    for patient, at, reason in lookups:
        request = Request("dr", policy._compiled, patient, None, reason, MONDAY + at, 1)
        outcomes.append(engine.decide(request).outcome)
    assert outcomes == ["break_glass", "break_glass", "allowed"]


@pytest.mark.parametrize("hour", [0, 2])
def test_an_accounts_first_lookup_is_measured_against_the_whole_day(
    engine: Engine, hour: int
) -> None:
    """A new account has no hours profile: its first new patient is measured against
    its whole day at any hour. Expecting 0.4 new patients a day (a prior of 0.4 +- 0.5:
    an sd of 1), it scores (1 - 0.4) / 1 = 0.6, under ``baseline`` 0.7 (no slack), at
    night too (the volume gates the places' score); measured against a third or half of
    a day (0.13 or 0.2 expected) it would score 0.87 or 0.8."""
    policy = QuotaPolicy.only(
        distinct_patients="1000/day",
        baseline=0.7,
        baseline_slack=0.0,
        baseline_prior=(0.4, 0.5),
        baseline_utc_offset=0.0,
    )
    request = Request("dr", policy._compiled, "a", None, False, MONDAY + hour * HOUR, 1)
    assert engine.decide(request).outcome == "allowed"
