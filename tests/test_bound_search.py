"""The worst case per profile: an adversarial search through the real guard never beats
the documented bound (:func:`nirguard.profiles.worst_case`), and gets close to it.

The search (:mod:`nirguard.replay.search`) plays bots (:mod:`nirguard.replay.adversary`)
against a ``LookupGuard`` on ``memory://`` with a simulated clock: retrying the
refused patient, moving on, stating reasons, repeating patients already obtained,
pausing, pacing under every window, working office hours or around the clock. It is
seeded and deterministic; each search here takes a few seconds.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from nirguard import LookupDenied, LookupGuard, QuotaPolicy, profiles
from nirguard.errors import ConfigurationError, PractitionerLocked, ReasonRequired
from nirguard.replay.adversary import FAST_GAP, Bot, play
from nirguard.replay.adversary import people as adversary_people
from nirguard.replay.policies import DESK_POLICY, desk_policy, profile
from nirguard.replay.search import attackers, search
from tests.guard_helpers import Clock

NAMES = sorted(profiles.PROFILES)


# -- the profiles -------------------------------------------------------------------------------


def test_the_gp_profile_is_the_default_policy_named_gp() -> None:
    gp = profiles.gp()
    assert gp.name == "gp"
    assert gp.model_dump(exclude={"name"}) == QuotaPolicy().model_dump(exclude={"name"})


def test_the_desk_profile_is_the_replays_desk_policy() -> None:
    desk = profiles.desk()
    assert desk.name == "desk"
    assert (desk.distinct_patients, desk.lookups) == ("1000/day", "60/minute;1500/day")
    assert desk_policy() == desk
    assert DESK_POLICY["distinct_patients"] == "1000/day"
    assert QuotaPolicy(**DESK_POLICY) == desk


def test_each_kind_of_account_gets_a_profile() -> None:
    assert {profiles.for_kind(kind).name for kind in ("gp", "new_gp")} == {"gp"}
    assert {profiles.for_kind(kind).name for kind in ("hospital", "pharmacy")} == {"desk"}
    assert profile("hospital") == profiles.desk()
    assert profile("submarine") is None
    with pytest.raises(ConfigurationError):
        profiles.for_kind("submarine")


# -- the analytic bound -------------------------------------------------------------------------


def test_the_paced_bound_is_the_quota_arithmetic() -> None:
    gp = profiles.worst_case(profiles.gp())
    assert (gp.paced, gp.grants, gp.any_week) == (350 + 2, 2, 700 + 4)
    assert profiles.worst_case(profiles.desk()).paced == 7 * 1000 + 2
    assert profiles.worst_case(profiles.gp(), days=1).paced == 120 + 1


def test_the_fast_bound_counts_windows_per_lockout_episode() -> None:
    policy = QuotaPolicy.only(distinct_patients="8/10 minutes;120/day;350/7 days")
    bound = profiles.worst_case(policy)
    assert (bound.episodes, bound.per_episode, bound.fast) == (3, 8, 24)
    endless = QuotaPolicy.only(distinct_patients="8/10 minutes", lockout_escalation=())
    assert profiles.worst_case(endless, days=1).episodes == 24  # 1-hour lockouts, all day
    with pytest.raises(ValueError):
        profiles.worst_case(policy, days=0)


def test_with_strikes_the_fast_bound_is_three_windows_and_the_grants() -> None:
    assert profiles.worst_case(profiles.gp()).fast == 3 * 8 + 2
    assert profiles.worst_case(profiles.desk()).fast == 2 * 1000 + 2


def test_without_strikes_a_refusal_is_free_and_the_fast_bound_is_the_paced_one() -> None:
    policy = QuotaPolicy(strikes=None)
    bound = profiles.worst_case(policy)
    assert not bound.strikes
    assert bound.fast == bound.paced == 352


# -- the search never beats the bound ----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_no_schedule_beats_the_paced_bound_and_the_search_reaches_it(name: str) -> None:
    policy = profiles.PROFILES[name]
    bound = profiles.worst_case(policy)
    found = search(policy, space="any", evaluations=10, seed=0, max_asks=20_000)
    assert found.outcome.obtained <= bound.paced, found.bot
    if getattr(policy, "baseline", None) is None:  # detection of paced scripts lowers it
        assert found.outcome.obtained >= bound.paced - 2, "the search should get close"


@pytest.mark.parametrize("name", NAMES)
def test_no_fast_bot_beats_the_fast_bound(name: str) -> None:
    policy = profiles.PROFILES[name]
    bound = profiles.worst_case(policy)
    found = search(policy, space="fast", evaluations=6, seed=0, max_asks=10_000)
    assert found.bot.fast
    assert found.outcome.obtained <= bound.fast, found.bot
    if bound.strikes:
        assert found.outcome.obtained >= bound.fast * 0.9, "the search should get close"


def test_no_bot_asking_once_a_minute_beats_its_fast_bound() -> None:
    policy = profiles.gp()
    bound = profiles.worst_case(policy, gap=60.0)
    found = search(policy, space="fast", gap=60.0, evaluations=6, seed=1, max_asks=10_000)
    assert found.bot.is_fast(60.0)
    assert found.outcome.obtained <= bound.fast, found.bot


def test_the_search_finds_the_fast_bound_of_a_policy_without_break_glass() -> None:
    policy = QuotaPolicy.only(distinct_patients="8/10 minutes;120/day;350/7 days")
    found = search(policy, space="fast", evaluations=8, seed=3, starts=(), max_asks=10_000)
    assert found.outcome.obtained == profiles.worst_case(policy).fast == 24


fast_bots = st.builds(
    Bot,
    gap=st.floats(1.0, FAST_GAP),
    on_reason=st.sampled_from(["move_on", "retry", "reason", "wait"]),
    retries=st.integers(0, 50),
    wait=st.floats(0.0, FAST_GAP),
    waits_out=st.booleans(),
    repeats=st.integers(0, 3),
    same_cohort=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 1000),
).map(
    lambda bot: replace(
        bot, gap=bot.gap / (bot.repeats + 1), wait=min(bot.wait, bot.gap / (bot.repeats + 1))
    )
)


@settings(
    derandomize=True,
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(bot=fast_bots)
def test_hypothesis_targets_the_most_new_patients_of_a_fast_bot(bot: Bot) -> None:
    policy = profiles.gp()
    outcome = play(policy, bot, days=1, max_asks=10_000)
    target(float(outcome.obtained))
    assert bot.fast
    assert outcome.obtained <= profiles.worst_case(policy, days=1).fast


# -- refusals are strikes -----------------------------------------------------------------------


@pytest.mark.parametrize("patience", [1.0, 5.0, FAST_GAP, 60.0, 300.0])
def test_a_bot_that_retries_the_refused_patient_never_gets_more_than_one_that_moves_on(
    patience: float,
) -> None:
    """A bot asking every ``patience`` seconds that asks the refused patient again gets no
    more than one that asks the next patient; nor does a fast bot that waits ``patience``
    seconds before asking the refused patient again (moving on after a wait locks)."""
    policy = profiles.gp()
    moves_on = play(policy, Bot(gap=patience, on_reason="move_on")).obtained
    for retries in (1, 3, 100_000):
        retrying = play(policy, Bot(gap=patience, on_reason="retry", retries=retries))
        assert retrying.obtained <= moves_on, (patience, retries)
    fast = play(policy, Bot(gap=FAST_GAP, on_reason="move_on")).obtained
    waiting = play(policy, Bot(gap=FAST_GAP, on_reason="wait", wait=patience))
    assert waiting.obtained <= fast, patience


def test_a_burst_of_200_asks_for_one_refused_patient_gets_3_answers_428_then_a_lockout() -> None:
    clock = Clock()
    alerts: list[object] = []
    guard = LookupGuard(profiles.gp(), clock=clock, hooks="inline", alert=alerts.append)
    people = adversary_people(9)
    for person in people[:8]:
        with guard.lookup("dr-burst", person) as lookup:
            lookup.record({"found": True})
        clock.advance(1)
    answers: list[str] = []
    for _ in range(200):
        try:
            with guard.lookup("dr-burst", people[8]) as lookup:
                lookup.record({"found": True})
            answers.append("allowed")
        except ReasonRequired:
            answers.append("reason_required")
        except PractitionerLocked:
            answers.append("locked")
        except LookupDenied as error:
            answers.append("lookups" if error.code == "lookups" else "lockout")
        clock.advance(0.005)
    assert answers.count("reason_required") <= 3
    assert "allowed" not in answers
    first_lock = answers.index("lockout")
    assert set(answers[:first_lock]) == {"reason_required"}
    # asking on while locked: each 4th attempt escalates, until unlock() at the third lockout
    assert [i for i, a in enumerate(answers) if a == "lockout"] == [
        first_lock + 4 * k for k in range(3)
    ]
    assert set(answers[first_lock + 1 :]) == {"locked", "lockout"}
    assert len(alerts) == 1


def test_without_strikes_a_retrying_bot_beats_the_strikes_bound() -> None:
    """The check can fail: with strikes off, a bot retrying the refused patient every
    30 s is never locked and takes more than the bound of the shipped policy."""
    retrying = Bot(gap=30.0, on_reason="retry", retries=1_000_000)
    bound = profiles.worst_case(profiles.gp(), gap=30.0).fast
    outcome = play(QuotaPolicy(name="gp", strikes=None), retrying)
    assert not outcome.locked_for_good
    assert outcome.obtained > bound == 26
    assert play(profiles.gp(), retrying).obtained <= bound


@pytest.mark.parametrize("gap", [1.0, FAST_GAP, 60.0, 100.0, 300.0, 600.0])
def test_a_bot_that_keeps_retrying_while_locked_gets_one_episode(gap: float) -> None:
    """A retry while locked (the patient refused) is a strike, and the strike past the
    quota escalates: a bot that never waits a lockout out and retries the refused patient
    every ``gap`` seconds, locked or not, is locked for good within its first lockout,
    never living through one. The check can fail: when attempts while locked cost only
    ``lookups`` (the engine before #17), the lockouts end and it meets them again."""
    policy = profiles.gp()
    bound = profiles.worst_case(policy, gap=gap)
    assert bound.insisting == bound.per_episode + 1 < bound.fast  # one day's grant
    bot = Bot(gap=gap, on_reason="retry", retries=100_000, waits_out=False)
    outcome = play(policy, bot, max_asks=20_000)
    assert outcome.locked_for_good
    assert outcome.obtained <= bound.insisting
    # its first lockout, 2 escalations: no more than 3 lockouts, and no lockout lived through
    lockouts = outcome.answers["strikes"] + outcome.answers["distinct_patients"]
    assert lockouts == 3, dict(outcome.answers)
    first = outcome.first_refusal or 0.0
    assert outcome.stopped - first < 3_600 + 86_400, "it never waits out its first lockout"


@pytest.mark.parametrize("gap", [1.0, FAST_GAP, 60.0, 100.0, 300.0, 600.0])
def test_a_bot_asking_for_others_while_locked_gets_no_more_than_one_that_waits(gap: float) -> None:
    """Asking for other patients while locked is refused and no strike (docs/guard.md,
    "Lockout and escalation"): it gains nothing while locked, and spends ``lookups``. Each
    bot that asks on while locked (moving on, or stating a reason at each question) gets no
    more than the same bot waiting its lockouts out, which the fast bound holds."""
    policy = profiles.gp()
    bound = profiles.worst_case(policy, gap=gap)
    for on_reason in ("move_on", "reason"):
        asking, waiting = (
            play(policy, Bot(gap=gap, on_reason=on_reason, waits_out=w), max_asks=20_000)
            for w in (False, True)
        )
        assert asking.answers["locked"] > 0
        assert asking.obtained <= waiting.obtained <= bound.fast, (on_reason, gap)


def test_the_starting_bots_are_the_replays_kinds_of_attacker() -> None:
    starts = attackers(profiles.gp())
    assert {bot.on_reason for bot in starts} == {"move_on", "retry", "reason", "wait"}
    assert any(not bot.fast for bot in starts) and any(bot.fast for bot in starts)


def test_over_any_7_days_a_window_carried_in_adds_one_more() -> None:
    """Windows start at their first hit: a script that opens the weekly window, waits
    4 days, then takes 120 a day obtains nearly two weekly caps within 7 days (it waits
    out the question when the weekly cap asks for a reason: moving on would lock it)."""
    clock = Clock()
    guard = LookupGuard(profiles.gp(), clock=clock, hooks="inline", alert=False)
    start = clock.now
    obtained: list[float] = []
    for person in adversary_people(1_000):
        if clock.now - start >= 11 * 86_400:
            break
        try:
            with guard.lookup("dr-week", person) as lookup:
                lookup.record({"found": True})
            obtained.append(clock.now - start)
        except ReasonRequired:
            clock.advance(3_600)
            continue
        except LookupDenied:
            pass
        clock.advance(4 * 86_400 if len(obtained) == 1 and clock.now == start else 720)
    within = [t for t in obtained if 4 * 86_400 <= t < 11 * 86_400]
    bound = profiles.worst_case(profiles.gp())
    assert bound.paced < len(within) <= bound.any_week


class RawMoves(RuleBasedStateMachine):
    """Any sequence of moves by one account, within 7 days of its first ask: new
    patients at any pace, the refused one again, with or without a reason, repeats,
    waits of any length. Never more than the quotas' arithmetic allows."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.start = self.clock.now
        self.guard = LookupGuard(profiles.gp(), clock=self.clock, hooks="inline", alert=False)
        self.fresh = iter(adversary_people(5_000))
        self.held: list[str] = []
        self.pending: str | None = None
        self.bound = profiles.worst_case(profiles.gp())

    def _ask(self, person: str, reason: str | None = None) -> None:
        if self.clock.now - self.start >= 7 * 86_400:
            return
        try:
            with self.guard.lookup("dr-moves", person, reason=reason) as lookup:
                lookup.record({"found": True})
        except ReasonRequired:
            self.pending = person
        except LookupDenied:
            pass
        else:
            if person not in self.held:
                self.held.append(person)
            if person == self.pending:
                self.pending = None

    @rule(count=st.integers(1, 40), gap=st.sampled_from([1.0, 10.0, 60.0, 75.0, 720.0, 1728.0]))
    def new_patients(self, count: int, gap: float) -> None:
        for _ in range(count):
            self._ask(next(self.fresh))
            self.clock.advance(gap)

    @rule(reason=st.sampled_from([None, "ETREAT"]))
    def the_refused_one_again(self, reason: str | None) -> None:
        if self.pending is not None:
            self._ask(self.pending, reason)
        self.clock.advance(5)

    @rule()
    def a_repeat(self) -> None:
        if self.held:
            self._ask(self.held[len(self.held) // 2])
        self.clock.advance(5)

    @rule(seconds=st.sampled_from([60.0, 600.0, 3_600.0, 86_400.0, 3 * 86_400.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def never_beyond_the_bound(self) -> None:
        assert len(self.held) <= self.bound.paced

    def teardown(self) -> None:
        target(float(len(self.held)))  # steer towards the schedules that take the most


RawMoves.TestCase.settings = settings(
    derandomize=True,
    max_examples=15,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRawMoves = RawMoves.TestCase
