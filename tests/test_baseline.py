"""Each account against its own normal: the ``baseline`` signal, on every engine.

A practice is simulated day by day with explicit times (``Request.now``), so that
the memory engine, Redis and a Cluster follow one clock. Days start at midnight
local time (``baseline_utc_offset`` 1 hour): the practice works 08:00-18:00 UTC
on weekdays, mostly at a few places (buckets 1-3), sometimes anywhere.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from nirguard import LookupGuard, QuotaPolicy
from nirguard._baseline import clock
from nirguard._engine import Decision, Engine, Request
from nirguard._memory import MemoryEngine
from nirguard.errors import PolicyError
from nirguard.testing import NIRGenerator
from tests.engine_helpers import cleanup as _cleanup
from tests.engine_helpers import redis_engine as _redis_engine
from tests.guard_helpers import Clock
from tests.redis_helpers import WORKER_PREFIX

MONDAY = 1_770_595_200.0  # a Monday, 00:00 UTC
HOUR = 3600.0
DAY = 86400.0
POLICY = QuotaPolicy.only(
    distinct_patients="1000/day",
    break_glass="1/day;2/7 days",
    baseline=5.0,
    baseline_prior=(25.0, 15.0),
)


@pytest.fixture(params=["memory", "redis", "cluster"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """Every engine, each with a key namespace of its own (deleted afterwards)."""
    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    if request.param == "memory":
        yield MemoryEngine(lambda: MONDAY, prefix=prefix)
        return
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    url = request.getfixturevalue(fixture)
    made = _redis_engine(url, prefix)
    try:
        yield made
    finally:
        made.close()
        _cleanup(url, prefix)


@dataclass
class Practice:
    """One account's days: each a list of lookups at office hours."""

    engine: Engine
    policy: QuotaPolicy = POLICY
    who: str = "dr"
    seed: int = 1
    refused: list[Decision] = field(default_factory=list)
    made: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def look(self, patient: str, place: int, now: float, *, reason: bool = False) -> Decision:
        request = Request(self.who, self.policy._compiled, patient, None, reason, now, place)
        decision = self.engine.decide(request)
        if decision.outcome not in ("allowed", "break_glass"):
            self.refused.append(decision)
        return decision

    def day(
        self, day: int, new: int, *, harvest: int = 0, start: float = 8.0, local: bool = False
    ) -> list[Decision]:
        """``new`` new patients of the practice, a few repeats, and ``harvest`` new people
        from anywhere (``local``: born at the practice's usual places), spread over 10
        hours from ``start`` (UTC) of day ``day``."""
        rng = self.rng
        kinds = ["new"] * new + ["repeat"] * (new // 5) + ["harvest"] * harvest
        rng.shuffle(kinds)
        out = []
        for i, kind in enumerate(kinds):
            now = MONDAY + day * DAY + (start + 10 * (i + 0.5) / len(kinds)) * HOUR
            self.made += 1
            if kind == "repeat" and self.made > 10:
                patient, place = f"p{self.made - rng.randint(1, 10)}", 1
            elif kind == "new":
                patient = f"p{self.made}"
                place = rng.choice((1, 2, 3)) if rng.random() < 0.8 else rng.randrange(64)
            else:
                place = rng.choice((1, 2, 3)) if local else rng.randrange(64)
                patient = f"h{self.made}"
            out.append(self.look(patient, place, now))
        return out

    def weeks(self, count: int, new: int = 15) -> None:
        for day in range(7 * count):
            if day % 7 < 5:
                self.day(day, new)

    def status(self, day: float) -> Any:
        return self.engine.status(self.who, self.policy._compiled, MONDAY + day * DAY)


def _signals(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.quota == "baseline"]


def test_a_practice_is_never_suspected_over_weeks(engine: Engine) -> None:
    practice = Practice(engine)
    practice.weeks(4)
    assert practice.refused == []
    normal = practice.status(28).baseline
    assert normal["days"] == 20
    assert 14 <= normal["new_per_day"] <= 16
    assert normal["expected_unusual_places"] < normal["expected"]  # most places are usual


def test_a_harvest_born_at_the_owners_places_is_suspected_by_its_volume(engine: Engine) -> None:
    """The owner keeps working and the harvest is born where the owner's patients are:
    the places' score sees nothing, the day's volume does (``baseline_volume``)."""
    practice = Practice(engine)
    practice.weeks(3)
    day = practice.day(21, 15, harvest=40, local=True)
    first = _signals(day)[0]
    assert (first.outcome, first.quota) == ("reason_required", "baseline")
    assert first.evidence["new_patients_today"] < 55  # refused before the day's end


def test_without_the_volume_the_same_harvest_goes_unseen(engine: Engine) -> None:
    policy = POLICY.model_copy(update={"baseline_volume": None})
    practice = Practice(engine, QuotaPolicy(**policy.model_dump()))
    practice.weeks(3)
    assert _signals(practice.day(21, 15, harvest=40, local=True)) == []


def test_a_practice_whose_patients_come_from_new_places_is_not_suspected(
    engine: Engine,
) -> None:
    """Its usual volume, every new patient from a place it never served: places alone
    are not a harvest (the volume gates them: a locum's new practice)."""
    practice = Practice(engine)
    practice.weeks(3)
    normal = practice.status(21).baseline
    new = int(normal["expected"] + normal["sd"])  # as many as a day can be, no more
    practice.policy = QuotaPolicy(**{**POLICY.model_dump(), "baseline": 3.0})  # and a low bar
    for i in range(new):
        now = MONDAY + 21 * DAY + (8 + 10 * (i + 0.5) / new) * HOUR
        practice.look(f"moved{i}", 40 + i % 20, now)
    assert practice.refused == []
    assert practice.status(21.9).baseline["unusual_places_today"] == new


def test_a_busy_day_of_the_practice_itself_is_not_suspected(engine: Engine) -> None:
    """Half as many new patients again as usual, from its usual places: not a harvest."""
    practice = Practice(engine)
    practice.weeks(3)
    assert _signals(practice.day(21, 22)) == []


def test_a_harvest_on_an_established_account_is_suspected(engine: Engine) -> None:
    practice = Practice(engine)
    practice.weeks(3)
    day = practice.day(21, 15, harvest=40)
    first = _signals(day)[0]
    assert (first.outcome, first.quota) == ("reason_required", "baseline")
    evidence = first.evidence
    assert evidence["days_of_history"] == 15
    assert evidence["new_patients_today"] < 55  # refused before the day's end
    assert evidence["unusual_places_today"] > evidence["expected_unusual"]
    assert not any(isinstance(v, str) for v in evidence.values())  # counts, no pseudonym
    assert any(d.outcome == "suspected" and d.lockout_started for d in day)


def test_a_busy_day_at_the_usual_places_is_not_suspected(engine: Engine) -> None:
    practice = Practice(engine)
    practice.weeks(3)
    assert _signals(practice.day(21, 35)) == []  # covering for a colleague: 2.3 times the usual


def test_a_day_that_breached_refuses_the_next_days_first_new_patient(engine: Engine) -> None:
    short = QuotaPolicy.only(
        distinct_patients="1000/day",
        break_glass="1/day;2/7 days",
        baseline=5.0,
        baseline_prior=(25.0, 15.0),
        lockout="1 minute",
        lockout_escalation=("1 minute",),
    )
    practice = Practice(engine, policy=short)
    practice.weeks(3)
    practice.day(21, 15, harvest=40)
    assert practice.status(22).baseline["cusum"] == 10.0  # rolled in at the cap (2 x 5)
    nxt = practice.look("fresh", 1, MONDAY + 22 * DAY + 9 * HOUR)
    assert (nxt.outcome, nxt.quota) == ("reason_required", "baseline")


def test_unlock_forgets_the_cusum_and_keeps_the_history(engine: Engine) -> None:
    practice = Practice(engine)
    practice.weeks(3)
    practice.day(21, 15, harvest=40)
    practice.engine.unlock(practice.who, practice.policy._compiled)
    for i in range(30):  # the rest of the day is forgiven, however far it goes
        later = MONDAY + 21 * DAY + (19 + i / 30) * HOUR
        assert practice.look(f"fresh{i}", 30 + i, later).outcome == "allowed"
    assert practice.status(21.9).baseline["unusual_places_today"] > 30
    after = practice.status(22).baseline  # and it rolls in at zero
    assert (after["cusum"], after["days"]) == (0.0, 16)
    assert practice.look("fresh2", 1, MONDAY + 22 * DAY + 9 * HOUR).outcome == "allowed"


def test_a_day_with_a_single_lookup_is_a_day_of_history(engine: Engine) -> None:
    """Days without lookups are not history; a day with one is."""
    practice = Practice(engine, who="quiet")
    practice.look("only", 1, MONDAY + 9 * HOUR)
    assert practice.status(2).baseline["days"] == 1
    practice.look("next", 1, MONDAY + 2 * DAY + 9 * HOUR)
    assert practice.status(5).baseline["days"] == 2


def test_a_day_that_does_not_breach_carries_its_whole_cusum(engine: Engine) -> None:
    """Only a vouched day rolls in at most at 0.8 times ``baseline``: a day short of a
    breach carries all of its score, so that the next one starts close to the bar."""
    practice = Practice(engine)
    practice.weeks(3)
    assert practice.day(21, 15, harvest=19) and practice.refused == []
    assert 0.8 * 5.0 < practice.status(22).baseline["cusum"] <= 5.0


def test_a_new_practice_is_compared_with_its_peers(engine: Engine) -> None:
    locum = Practice(engine, who="locum")  # every patient new, every place unusual
    for day in range(5):
        assert _signals(locum.day(day, 45)) == []
    opened = Practice(engine, who="bot", seed=2)  # no history: the peers' prior bounds it
    signals = _signals(opened.day(0, 0, harvest=200))
    assert signals
    assert signals[0].evidence["days_of_history"] == 0
    assert signals[0].evidence["new_patients_today"] <= 25 + 6 * 15 + 1


def test_a_fresh_account_paced_around_the_clock_is_suspected(engine: Engine) -> None:
    """No practice works at night: until an account has history of its own, its peers'
    hours apply (a bot at 50 new people a day, one every 29 minutes, 24/7)."""
    bot = Practice(engine, who="fresh-bot")
    signals: list[Decision] = []
    for i in range(3 * 50):
        now = MONDAY + i * DAY / 50
        signals += _signals([bot.look(f"b{i}", bot.rng.randrange(64), now)])
    assert signals
    assert signals[0].evidence["days_of_history"] <= 2
    assert signals[0].evidence["off_hours_new_patients"] > 0


def test_new_patients_at_unusual_hours_weigh_more(engine: Engine) -> None:
    office = Practice(engine, who="office")
    office.weeks(3)
    night = Practice(engine, who="night")
    night.weeks(3)
    by_day = _signals(office.day(21, 15, harvest=10))
    by_night = _signals(night.day(21, 15, harvest=10, start=21.0))  # 22:00-08:00 local
    assert by_day == []
    assert by_night and by_night[0].evidence["off_hours_new_patients"] > 0


def _mixed_day(practice: Practice, day: int, count: int, hours: float) -> list[Decision]:
    """``count`` new people over ``hours`` from 08:00 UTC: a third the practice's own, the
    rest from anywhere; a refusal that asks for a reason gets one (a clinician)."""
    out = []
    for i in range(count):
        now = MONDAY + day * DAY + (8 + hours * (i + 0.5) / count) * HOUR
        own = i % 3 == 0
        patient = f"d{day}-{i}"
        place = practice.rng.choice((1, 2, 3)) if own else practice.rng.randrange(64)
        decision = practice.look(patient, place, now)
        if decision.outcome == "reason_required":
            decision = practice.look(patient, place, now, reason=True)
        out.append(decision)
    return out


def test_a_day_ahead_of_its_hours_is_suspected_before_it_ends(engine: Engine) -> None:
    """Today so far against what the account's hours profile expects by now: 30 new
    people by 11:00 is suspected at once, the same 30 over the working day is not."""
    early, spread = Practice(engine, who="early"), Practice(engine, who="spread")
    for practice in (early, spread):
        practice.weeks(3)
    first = _signals(_mixed_day(early, 21, 30, 3.0))
    assert first and first[0].evidence["new_patients_today"] < 30
    assert _signals(_mixed_day(spread, 21, 30, 10.0)) == []


def test_a_stated_reason_vouches_for_the_day(engine: Engine) -> None:
    """A clinician who states a reason on a busy day is not locked by it: the reason is
    granted (break-glass), the rest of the day goes through up to 1.5 times
    ``baseline``, and the day rolls in under ``baseline`` (at most 0.8 times it)."""
    practice = Practice(engine)
    practice.weeks(3)
    day = _mixed_day(practice, 21, 36, 10.0)
    assert [d.outcome for d in _signals(day)] == ["break_glass"]
    assert [(d.outcome, d.quota) for d in practice.refused] == [("reason_required", "baseline")]
    assert 0.0 < practice.status(22).baseline["cusum"] <= 0.8 * 5.0
    assert practice.look("monday", 1, MONDAY + 22 * DAY + 9 * HOUR).outcome == "allowed"


@pytest.mark.parametrize("new", [12, 26])
def test_a_reason_the_day_after_a_breach_vouches_for_the_days_before(
    engine: Engine, new: int
) -> None:
    """A day that breached rolls in at the cap; the clinician who states a reason the next
    morning vouches for it too (the CUSUM carried counts at most 0.8 times ``baseline``
    for the rest of that day): their ordinary day goes on, and is not locked; nor is a
    busy one (26 new patients: carried at 1.25 times ``baseline`` it would be)."""
    short = QuotaPolicy.only(
        distinct_patients="1000/day",
        break_glass="1/day;2/7 days",
        baseline=5.0,
        baseline_prior=(25.0, 15.0),
        lockout="1 minute",
        lockout_escalation=("1 minute",),
    )
    practice = Practice(engine, policy=short)
    practice.weeks(3)
    practice.day(21, 15, harvest=40)
    assert practice.status(22).baseline["cusum"] == 10.0
    practice.refused.clear()
    day = _mixed_day(practice, 22, new, 10.0)
    assert [(d.outcome, d.quota) for d in practice.refused] == [("reason_required", "baseline")]
    assert [d.outcome for d in _signals(day)] == ["break_glass"]


def test_a_bot_stating_a_reason_each_time_is_bounded_by_break_glass(engine: Engine) -> None:
    """1.5 times ``baseline`` the same day, or a vouch past the budget, locks: a harvest
    that states reasons gets at most ``break_glass`` grants and is locked."""
    practice = Practice(engine)
    practice.weeks(3)
    week = [d for day in range(21, 26) for d in _mixed_day(practice, day, 60, 10.0)]
    grants = [d for d in week if d.outcome == "break_glass"]
    assert 1 <= len(grants) <= 2  # break_glass="1/day;2/7 days"
    assert any(d.outcome == "suspected" and d.lockout_started for d in week)


def test_a_harvested_day_does_not_widen_the_normal(engine: Engine) -> None:
    """A day enters the EWMAs at most two sd above its expected: the next day is measured
    against the practice's normal, not one that the harvest widened."""
    practice = Practice(engine)
    practice.weeks(3)
    before = practice.status(21).baseline
    practice.policy = QuotaPolicy.only(distinct_patients="1000/day", baseline=1000.0)
    practice.day(21, 15, harvest=80)  # nothing refuses it: the whole day rolls in
    practice.policy = POLICY
    assert practice.refused == []
    after = practice.status(22).baseline
    assert after["sd"] <= before["sd"] + 2
    assert after["expected"] <= before["expected"] + 2 * before["sd"] / 21 + 0.5


@pytest.mark.parametrize("volume", [1.0, 0.0, None])
def test_the_engines_agree_on_a_month_of_random_traffic(
    redis_url: str, volume: float | None
) -> None:
    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    redis_engine = _redis_engine(redis_url, prefix)
    memory = MemoryEngine(lambda: MONDAY, prefix=prefix)
    policy = QuotaPolicy.only(
        distinct_patients="1000/day", break_glass="2/day", baseline=2.0, baseline_prior=(8, 4),
        baseline_volume=volume,
    )  # fmt: skip
    rng = random.Random(5)
    try:
        for day in range(35):
            per = rng.choice((0, 5, 10, 20, 40))
            times = sorted(MONDAY + day * DAY + rng.uniform(0, DAY) for _ in range(per))
            for i, now in enumerate(times):
                patient = f"p{rng.randrange(150)}" if rng.random() < 0.4 else f"n{day}-{i}"
                request = Request(
                    "dr", policy._compiled, patient, None, rng.random() < 0.2, now,
                    rng.randrange(-1, 70),
                )  # fmt: skip
                a, b = memory.decide(request), redis_engine.decide(request)
                assert (a.outcome, a.quota, a.count, a.limit, a.history, a.off_hours) == (
                    b.outcome, b.quota, b.count, b.limit, b.history, b.off_hours,
                )  # fmt: skip
                assert a.usual == pytest.approx(b.usual, abs=1e-3)
            if rng.random() < 0.1:
                memory.unlock("dr", policy._compiled)
                redis_engine.unlock("dr", policy._compiled)
            at = MONDAY + (day + 1) * DAY - 1
            assert memory.status("dr", policy._compiled, at).baseline == (
                redis_engine.status("dr", policy._compiled, at).baseline
            )
    finally:
        redis_engine.close()
        _cleanup(redis_url, prefix)


@pytest.mark.redis
def test_an_account_takes_at_most_8_kb_on_redis_after_weeks_of_a_busy_gp(redis_url: str) -> None:
    import redis

    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    engine = _redis_engine(redis_url, prefix)
    policy = QuotaPolicy(baseline=5.0)  # the shipped quotas and signals, and the baseline
    practice = Practice(engine, policy=policy)
    client = redis.Redis.from_url(redis_url)
    try:
        for day in range(8 * 7):  # eight weeks of a GP at 30 new patients a day
            if day % 7 < 5:
                practice.day(day, 30)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        assert len(keys) == 2  # the account and its recent patients
        used = sum(client.memory_usage(k, samples=0) or 0 for k in keys)
        assert used <= 8192, used
        assert practice.status(56).baseline["days"] == 40
    finally:
        client.close()
        engine.close()
        _cleanup(redis_url, prefix)


# -- the policy fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"baseline": 0},
        {"baseline": -1.0},
        {"baseline_slack": -0.5},
        {"baseline_prior": (10.0, 0.0)},
        {"baseline_prior": (-1.0, 3.0)},
        {"baseline_prior_days": 0},
        {"baseline_off_hours": 0.5},
        {"baseline_utc_offset": 15},
        {"baseline_volume": -0.5},
    ],
)
def test_baseline_fields_are_checked(fields: dict[str, Any]) -> None:
    with pytest.raises(PolicyError, match="baseline"):
        QuotaPolicy(**fields)


def test_baseline_is_off_by_default_and_loads_from_env_and_json() -> None:
    assert QuotaPolicy().baseline is None
    assert QuotaPolicy()._compiled.lua_policy.split("|")[23] == ""  # after strikes
    parts = QuotaPolicy(baseline=5.0, baseline_volume=None)._compiled.lua_policy.split("|")
    assert (len(parts), parts[32]) == (34, "")  # the volume, then session_overlap: "" is off
    assert QuotaPolicy(baseline=5.0)._compiled.lua_policy.split("|")[32] == "1.0"
    env = {"NIRGUARD_POLICY_BASELINE": "5", "NIRGUARD_POLICY_BASELINE_PRIOR": "20, 12.5"}
    loaded = QuotaPolicy.from_env(environ=env)
    assert (loaded.baseline, loaded.baseline_prior) == (5, (20, 12.5))
    volume = {"NIRGUARD_POLICY_BASELINE_VOLUME": "off"}
    assert QuotaPolicy.from_env(environ=volume).baseline_volume is None
    volume = {"NIRGUARD_POLICY_BASELINE_VOLUME": "0.5"}
    assert QuotaPolicy.from_env(environ=volume).baseline_volume == 0.5
    assert QuotaPolicy.from_json('{"baseline_prior": [30, 10]}').baseline_prior == (30, 10)
    assert QuotaPolicy.from_env(environ={"NIRGUARD_POLICY_BASELINE": "off"}).baseline is None
    compiled = loaded._compiled
    assert compiled.keep >= 35 * DAY  # the history outlives a holiday


# -- through the guard ----------------------------------------------------------------------------


def test_the_guard_passes_places_and_refuses_with_the_signal() -> None:
    clock = Clock(MONDAY)
    policy = QuotaPolicy.only(distinct_patients="1000/day", baseline=3.0, baseline_prior=(5, 2))
    guard = LookupGuard(policy=policy, clock=clock)
    generator = NIRGenerator(seed=3)
    refused: list[Any] = []
    clock.now = MONDAY + 9 * HOUR
    for value in generator.many(60):
        clock.now += 60
        try:
            with guard.lookup("dr", value):
                pass
        except Exception as exc:  # the guard refuses with its own exceptions
            refused.append(exc)
    assert refused
    assert {exc.code for exc in refused} <= {"suspected", "reason_required", "locked"}
    status = guard.status("dr").baseline
    assert status is not None and status["new_today"] < 60
    assert status["unusual_places_today"] == status["new_today"]  # no history: all unusual
    guard.close()


@pytest.mark.parametrize(
    ("offset", "slot"),
    [
        (0.0, 0),  # Monday 00:00
        (2 * HOUR - 1, 0),
        (2 * HOUR, 1),  # each slot is two hours
        (DAY - 1, 11),  # Monday 23:59:59
        (5 * DAY, 12),  # Saturday 00:00: the weekend slots
        (6 * DAY + 23 * HOUR, 23),  # Sunday 23:00
        (7 * DAY, 0),  # Monday again
    ],
)
def test_the_clock_slots_two_hours_weekdays_then_weekends(offset: float, slot: int) -> None:
    """``clock`` gives the local day and the two-hour slot of the week's profile: 0-11 on
    weekdays, 12-23 at weekends (here at UTC, ``baseline_utc_offset=0``)."""
    p = QuotaPolicy.only(baseline=5.0, baseline_utc_offset=0.0)._compiled
    day, got = clock(p, MONDAY + offset)
    assert (day, got) == (int((MONDAY + offset) // DAY), slot)
