"""Refusals are strikes; an account's incident; on every engine (issue 17, items 1 and 4).

Every refusal of an account counts against ``lookups``; a refusal that is not a
lockout is a strike, and the strike past ``strikes`` is a lockout. While locked,
only a retry (a patient refused during this lockout) is a strike. A 428 is
offered only while a reason can help. An incident opens at the first lockout or
signal and carries one alert.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from nirguard import (
    Alert,
    AuditEvent,
    LookupGuard,
    Pseudonymiser,
    QuotaPolicy,
    ReasonRequired,
    SecretKey,
    nir,
)
from nirguard._engine import Decision, Engine
from nirguard.errors import LookupDenied
from tests.engine_helpers import DAY, ENGINES, HOUR, T0, Driver, engines, gp_policy


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from engines(request)


# -- a refused patient asked for again ------------------------------------------------------------


def test_a_burst_for_one_refused_patient_gets_three_428_then_a_lockout(engine: Engine) -> None:
    d = Driver(engine, gp_policy())
    d.look("bot", "a")
    d.look("bot", "b")
    burst = [d.look("bot", "x") for _ in range(200)]
    outcomes = Counter(x.outcome for x in burst)
    assert [x.outcome for x in burst[:3]] == ["reason_required"] * 3
    lockout = burst[3]
    assert (lockout.outcome, lockout.quota, lockout.lockout_started) == ("denied", "strikes", True)
    assert lockout.evidence == {"strikes": 4, "limit": 3, "lockout_level": 1}
    # asking on while locked: the 4th attempt escalates (1 day), 4 more: until unlock()
    started = [(i, x.level) for i, x in enumerate(burst) if x.lockout_started]
    assert started == [(3, 1), (7, 2), (11, 3)]
    assert burst[7].retry_after == pytest.approx(DAY) and burst[11].retry_after is None
    assert outcomes == {"reason_required": 3, "denied": 3, "locked": 194}
    assert [x.alert for x in burst].count(True) == 1 and lockout.alert
    assert {x.incident for x in burst[3:]} == {T0}
    assert all(x.incident is None for x in burst[:3])  # a question is not an incident
    d.wait(30 * DAY)
    assert d.look("bot", "a").outcome == "locked"  # until an administrator unlocks it


def test_a_bot_that_moves_on_is_locked_at_its_first_move(engine: Engine) -> None:
    retrying, moving = Driver(engine, gp_policy()), Driver(engine, gp_policy())
    for d, who in ((retrying, "retry"), (moving, "move")):
        d.look(who, "a")
        d.look(who, "b")
        assert d.look(who, "x").outcome == "reason_required"
    moved = moving.look("move", "y")
    assert (moved.quota, moved.lockout_started) == ("distinct_patients", True)
    retried = [retrying.look("retry", "x") for _ in range(3)]
    assert [x.outcome for x in retried] == ["reason_required", "reason_required", "denied"]
    assert (retried[-1].quota, retried[-1].lockout_started) == ("strikes", True)
    for d, who in ((retrying, "retry"), (moving, "move")):  # neither got a new patient
        assert d.status(who).remaining["distinct_patients"] == 0
        assert d.look(who, "a").outcome == "locked"


def _harvest(d: Driver, who: str, *, retry: bool, pace: float, asks: int) -> int:
    """New patients a bot gets in ``asks`` asks ``pace`` seconds apart: after a refusal it
    asks for the refused patient again (``retry``), or for the next one."""
    got, k = 0, 0
    for _ in range(asks):
        decision = d.look(who, f"p{k}")
        if decision.outcome == "allowed":
            got += 1
        if decision.outcome == "allowed" or not retry:
            k += 1
        d.wait(pace)
    return got


@pytest.mark.parametrize("pace", [1.0, 60.0, 300.0])
def test_a_bot_that_retries_never_gets_more_than_one_that_moves_on(
    engine: Engine, pace: float
) -> None:
    policy = gp_policy(distinct_patients="8/10 minutes;120/day", lookups="30/minute")
    retried = _harvest(Driver(engine, policy), "retry", retry=True, pace=pace, asks=150)
    moved = _harvest(Driver(engine, policy), "move", retry=False, pace=pace, asks=150)
    assert retried <= moved


def test_the_question_stays_asked_after_its_window_ends(engine: Engine) -> None:
    d = Driver(engine, gp_policy(distinct_patients="2/10 minutes"))
    d.look("bot", "a")
    d.look("bot", "b")
    assert d.look("bot", "x").outcome == "reason_required"
    d.wait(601)  # the window that raised the question has ended
    again = d.look("bot", "x")
    assert (again.outcome, again.quota) == ("reason_required", "distinct_patients")
    moved = d.look("bot", "y")  # moving on with the question pending: as within the window
    assert (moved.quota, moved.lockout_started) == ("distinct_patients", True)


def test_an_answered_question_frees_the_next_window(engine: Engine) -> None:
    d = Driver(engine, gp_policy(distinct_patients="2/10 minutes", break_glass="5/day"))
    d.look("gp", "a")
    d.look("gp", "b")
    assert d.look("gp", "x").outcome == "reason_required"
    d.wait(601)
    assert d.look("gp", "x", reason=True).outcome == "break_glass"  # answered
    assert d.look("gp", "y").outcome == "allowed"  # the new window's first new patient
    d.wait(HOUR)  # a question nobody answers expires with the first lockout's length
    d.look("gp", "z")
    d.look("gp", "w")
    assert d.look("gp", "u").outcome == "reason_required"
    d.wait(HOUR)
    assert d.look("gp", "v").outcome == "allowed"


def test_a_bot_that_retries_once_then_moves_on_gets_no_more(engine: Engine) -> None:
    policy = gp_policy(distinct_patients="8/10 minutes;120/day", lookups="30/minute")
    d = Driver(engine, policy)
    got, k, retried = 0, 0, False
    for _ in range(150):  # one ask a minute; after a 428, the same patient once, then on
        decision = d.look("hybrid", f"p{k}")
        if decision.outcome == "allowed":
            got += 1
        if decision.outcome == "allowed" or retried:
            k, retried = k + 1, False
        else:
            retried = True
        d.wait(60)
    moved = _harvest(Driver(engine, policy), "move", retry=False, pace=60, asks=150)
    assert got <= moved


def test_a_clinician_who_states_the_reason_is_not_locked(engine: Engine) -> None:
    d = Driver(engine, gp_policy())
    d.look("gp", "a")
    d.look("gp", "b")
    assert d.look("gp", "x").outcome == "reason_required"
    granted = d.look("gp", "x", reason=True)
    assert (granted.outcome, granted.incident, granted.alert) == ("break_glass", None, False)
    assert d.status("gp").remaining["strikes"] == 2  # one question, one strike
    assert d.look("gp", "x").outcome == "allowed"


# -- lookups denials and locked refusals ----------------------------------------------------------


def test_lookups_denials_are_strikes_and_lock(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy.only(lookups="2/minute", strikes="3/hour"))
    assert [d.look("dr", "a").outcome for _ in range(2)] == ["allowed"] * 2
    denied = [d.look("dr", "a") for _ in range(3)]
    assert [(x.outcome, x.quota, x.lockout_started) for x in denied] == [
        ("denied", "lookups", False)
    ] * 3
    assert denied[0].retry_after == pytest.approx(60)
    assert d.status("dr").remaining["strikes"] == 0
    fourth = d.look("dr", "a")
    assert (fourth.outcome, fourth.quota, fourth.lockout_started) == ("denied", "strikes", True)
    assert fourth.retry_after == pytest.approx(HOUR)
    assert fourth.alert and fourth.incident == T0


def test_without_strikes_a_lookups_denial_never_locks(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy.only(lookups="1/minute"))
    d.look("dr", "a")
    refused = [d.look("dr", "a") for _ in range(20)]
    assert {(x.outcome, x.quota, x.lockout_started) for x in refused} == {
        ("denied", "lookups", False)
    }
    assert d.status("dr").remaining["strikes"] is None


def test_a_clinician_locked_by_accident_may_try_three_times_in_the_hour(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy.only(lookups="5/day", invalid_nirs="1/hour", strikes="3/hour"))
    d.invalid("dr")
    locked = d.invalid("dr")
    assert (locked.lockout_started, locked.retry_after) == (True, pytest.approx(HOUR))
    d.wait(600)
    refused = [d.invalid("dr") for _ in range(3)]  # three retries: no escalation
    assert {(x.outcome, x.lockout_started) for x in refused} == {("locked", False)}
    assert refused[-1].retry_after == pytest.approx(HOUR - 600)  # not extended
    assert d.status("dr").remaining["strikes"] == 0
    moved = [d.look("dr", f"p{i}") for i in range(3)]  # other patients: no strike
    assert {(x.outcome, x.lockout_started) for x in moved} == {("locked", False)}
    status = d.status("dr")
    assert (status.remaining["lookups"], status.remaining["strikes"], status.level) == (2, 0, 1)
    d.wait(HOUR)
    after = d.look("dr", "p0")  # the lockout ended: the account works again
    assert after.outcome == "allowed"


def test_the_attempt_past_strikes_while_locked_escalates(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy.only(invalid_nirs="1/hour", strikes="3/hour"))
    d.invalid("dr")
    first = d.invalid("dr")
    assert (first.level, first.alert) == (1, True)
    tries = [d.invalid("dr") for _ in range(4)]  # invalid numbers: retries of the one refused
    assert [x.outcome for x in tries[:3]] == ["locked"] * 3
    escalated = tries[3]
    assert (escalated.outcome, escalated.quota, escalated.lockout_started) == (
        "denied",
        "strikes",
        True,
    )
    assert (escalated.level, escalated.retry_after) == (2, pytest.approx(DAY))
    assert (escalated.alert, escalated.incident) == (False, T0)  # the same case
    moved = [d.look("dr", f"p{i}") for i in range(10)]  # other patients: not strikes
    assert {(x.outcome, x.lockout_started, x.level) for x in moved} == {("locked", False, 2)}
    again = [d.invalid("dr") for _ in range(4)]
    assert (again[-1].level, again[-1].retry_after) == (3, None)  # until unlock()
    forever = [d.look("dr", f"p{i}") for i in range(20)]
    assert {(x.outcome, x.lockout_started) for x in forever} == {("locked", False)}
    d.unlock("dr")
    assert d.look("dr", "p0").outcome == "allowed"


# -- while locked, only retries are strikes ------------------------------------------------------


def _locked_by_moving_on(d: Driver, who: str) -> Decision:
    """Two new patients, a third asks for a reason, a fourth (moving on) locks: ``y``."""
    d.look(who, "a")
    d.look(who, "b")
    assert d.look(who, "x").outcome == "reason_required"
    d.wait(60)
    lockout = d.look(who, "y")
    assert (lockout.quota, lockout.lockout_started, lockout.level) == ("distinct_patients", True, 1)
    return lockout


def test_a_clinician_who_keeps_working_while_locked_is_not_escalated(engine: Engine) -> None:
    """Locked once, a GP goes on through the hour's consultations: 10 other patients, one
    every 5 minutes, refused ``locked``; no strike, no escalation, one case."""
    d = Driver(engine, gp_policy())
    lockout = _locked_by_moving_on(d, "gp")
    refused = []
    for i in range(10):
        d.wait(300)
        refused.append(d.look("gp", f"c{i}"))
    assert {(x.outcome, x.lockout_started, x.level) for x in refused} == {("locked", False, 1)}
    assert refused[-1].retry_after == pytest.approx(HOUR - 3000)  # not extended
    assert not any(x.alert for x in refused) and {x.incident for x in refused} == {T0 + 60}
    status = d.status("gp")
    assert (status.remaining["strikes"], status.level) == (3, 1)
    assert lockout.alert
    d.wait(HOUR - 3000)  # the lockout ends: the question it left pending is asked again
    assert d.look("gp", "a").outcome == "allowed"
    assert d.look("gp", "z").outcome == "reason_required"
    assert d.look("gp", "z", reason=True).outcome == "break_glass"


def test_a_bot_that_retries_the_refused_patient_while_locked_is_escalated(engine: Engine) -> None:
    d = Driver(engine, gp_policy())
    _locked_by_moving_on(d, "bot")
    tries = []
    for _ in range(8):  # the patient whose refusal started the lockout, every 10 s
        d.wait(10)
        tries.append(d.look("bot", "y"))
    started = [(i, x.level, x.quota) for i, x in enumerate(tries) if x.lockout_started]
    assert started == [(3, 2, "strikes"), (7, 3, "strikes")]
    assert tries[3].retry_after == pytest.approx(DAY) and tries[7].retry_after is None
    assert not any(x.alert for x in tries)  # the same case


def test_a_patient_refused_while_locked_is_retried_at_a_strike(engine: Engine) -> None:
    d = Driver(engine, gp_policy())
    _locked_by_moving_on(d, "bot")
    assert d.look("bot", "c").outcome == "locked"  # moving on: no strike
    assert d.status("bot").remaining["strikes"] == 3
    assert d.look("bot", "c").outcome == "locked"  # refused during this lockout: a strike
    assert d.status("bot").remaining["strikes"] == 2


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_a_bot_cycling_refused_patients_while_locked_is_escalated(engine: Engine, k: int) -> None:
    """A bot cycling ``k`` patients while locked, one ask every 10 s: the patients refused
    during the lockout (the first 4 kept) are retried, and the retries escalate; it is
    locked until ``unlock()`` within a few cycles, and obtains nothing meanwhile."""
    d = Driver(engine, gp_policy())
    _locked_by_moving_on(d, "bot")
    cycle = [f"c{i}" for i in range(k)]
    answers = []
    for i in range(12 * k + 12):
        d.wait(10)
        answers.append(d.look("bot", cycle[i % k]))
    assert {x.outcome for x in answers} <= {"locked", "denied"}
    levels = [x.level for x in answers if x.lockout_started]
    assert levels == [2, 3] and answers[-1].retry_after is None
    first = next(i for i, x in enumerate(answers) if x.lockout_started)
    assert first < k + 3 * min(k, 3) + 1  # a second pass, at most a third one
    assert not any(x.alert for x in answers)


def test_a_bot_asking_new_patients_while_locked_gains_nothing(engine: Engine) -> None:
    """Each ask for a new patient while locked is refused, and spends ``lookups``: such a
    bot is worse off than one that waits the lockout out (which meets the question again
    when it ends); it need not escalate."""
    asking, waiting = Driver(engine, gp_policy()), Driver(engine, gp_policy())
    for d, who in ((asking, "asks"), (waiting, "waits")):
        _locked_by_moving_on(d, who)
    answers = []
    for i in range(359):  # every 10 s, a patient never asked before
        asking.wait(10)
        answers.append(asking.look("asks", f"n{i}"))
    assert {x.outcome for x in answers} == {"locked"}
    asking.wait(11)
    waiting.wait(HOUR + 1)
    waited = waiting.look("waits", "z")
    assert (waited.outcome, waited.quota) == ("reason_required", "distinct_patients")
    asked = asking.look("asks", "z")  # 200 lookups a day, spent while locked
    assert (asked.outcome, asked.quota, asked.lockout_started) == ("denied", "lookups", False)


def test_without_strikes_attempts_while_locked_never_escalate(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy.only(invalid_nirs="1/hour"))
    d.invalid("dr")
    d.invalid("dr")
    tries = [d.look("dr", f"p{i}") for i in range(50)]
    assert {(x.outcome, x.lockout_started) for x in tries} == {("locked", False)}
    assert tries[-1].retry_after == pytest.approx(HOUR)  # never extended


# -- the question outlives the lockout ------------------------------------------------------------


def test_a_lockout_does_not_answer_the_question(engine: Engine) -> None:
    """Moving on with a question pending locks; when the lockout ends the question is asked
    again of the next new patient (whoever it is), and moving on again escalates."""
    d = Driver(engine, gp_policy())
    d.look("bot", "a")
    d.look("bot", "b")
    assert d.look("bot", "x").outcome == "reason_required"
    d.wait(1800)  # the bot slows down: it asks under every rate from now on
    moved = d.look("bot", "y")
    assert (moved.lockout_started, moved.level, moved.alert) == (True, 1, True)
    d.wait(HOUR + 1)  # the lockout ended: a fresh day's window, but the question stands
    asked = d.look("bot", "z")
    assert (asked.outcome, asked.quota) == ("reason_required", "distinct_patients")
    d.wait(1800)
    again = d.look("bot", "w")
    assert (again.lockout_started, again.level, again.alert) == (True, 2, False)
    d.wait(DAY + 1)
    assert d.look("bot", "v").outcome == "reason_required"
    d.wait(1800)
    assert d.look("bot", "u").retry_after is None  # the third lockout: until unlock()


def test_a_clinician_back_from_a_lockout_answers_once_and_goes_on(engine: Engine) -> None:
    d = Driver(engine, gp_policy())
    d.look("gp", "a")
    d.look("gp", "b")
    assert d.look("gp", "x").outcome == "reason_required"
    assert d.look("gp", "y").lockout_started  # moved on without answering
    d.wait(HOUR + 1)
    assert d.look("gp", "a").outcome == "allowed"  # repeats are never asked
    assert d.look("gp", "z").outcome == "reason_required"
    assert d.look("gp", "z", reason=True).outcome == "break_glass"  # answered
    d.wait(DAY)
    assert [d.look("gp", p).outcome for p in ("c", "d")] == ["allowed"] * 2


# -- break-glass spent: no 428 --------------------------------------------------------------------


def test_with_the_budget_spent_a_breach_locks_instead_of_asking(engine: Engine) -> None:
    d = Driver(engine, gp_policy(distinct_patients="1/day", break_glass="1/day"))
    d.look("gp", "a")
    assert d.look("gp", "b", reason=True).outcome == "break_glass"
    refused = d.look("gp", "c")  # no reason asked for: none could help
    assert (refused.outcome, refused.quota, refused.lockout_started) == (
        "denied",
        "distinct_patients",
        True,
    )


def test_a_hot_cohort_question_with_the_budget_spent_is_a_strike(engine: Engine) -> None:
    policy = QuotaPolicy.only(
        hot_cohort=4.0,
        hot_cohort_min=5,
        hot_cohort_action="reason",
        break_glass="1/day",
        strikes="2/hour",
    )
    d = Driver(engine, policy)
    for i in range(8):
        d.look(f"other{i}", f"o{i}", "c1")
    assert d.look("gp", "n1", "c1", reason=True).outcome == "break_glass"
    refused = [d.look("gp", f"n{i}", "c1") for i in range(2, 5)]
    assert [(x.outcome, x.quota) for x in refused] == [
        ("denied", "break_glass"),
        ("denied", "break_glass"),
        ("denied", "strikes"),
    ]
    assert refused[-1].lockout_started


# -- incidents ------------------------------------------------------------------------------------


def test_an_incident_opens_at_a_signal_and_holds_until_unlock(engine: Engine) -> None:
    d = Driver(engine, gp_policy(distinct_patients=None, cohort="2/day"))
    d.look("dr", "a", "c1")
    d.look("dr", "b", "c1")
    d.wait(60)
    asked = d.look("dr", "x", "c1")  # a walk of one cohort: a signal, even when asked
    assert (asked.outcome, asked.quota, asked.alert, asked.incident) == (
        "reason_required",
        "cohort",
        True,
        T0 + 60,
    )
    d.wait(60)
    repeat = d.look("dr", "a", "c1")
    assert (repeat.outcome, repeat.alert, repeat.incident) == ("allowed", False, T0 + 60)
    moved = d.look("dr", "y", "c1")  # moving on: the lockout belongs to the same incident
    assert (moved.lockout_started, moved.alert, moved.incident) == (True, False, T0 + 60)
    d.unlock("dr")
    d.wait(60)
    after = d.look("dr", "a", "c1")
    assert (after.outcome, after.incident) == ("allowed", None)
    again = d.look("dr", "z", "c1")
    assert (again.alert, again.incident) == (True, T0 + 180)


def test_an_incident_closes_a_lockout_memory_after_its_last_lockout(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy.only(invalid_nirs="1/hour", lockout_memory="2 days"))
    d.invalid("dr")
    first = d.invalid("dr")
    assert (first.alert, first.incident) == (True, T0)
    d.wait(DAY)
    d.invalid("dr")
    second = d.invalid("dr")
    assert (second.lockout_started, second.alert, second.incident) == (True, False, T0)
    d.wait(2 * DAY - 1)
    assert d.look("dr", "a").incident == T0
    d.wait(1)
    closed = d.look("dr", "a")
    assert (closed.outcome, closed.incident) == ("allowed", None)


def test_status_shows_the_strikes_left(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy.only(lookups="1/hour", strikes="3/hour;5/day"))
    d.look("dr", "a")
    d.look("dr", "a")
    assert d.status("dr").remaining["strikes"] == 2
    d.unlock("dr")  # an unlock forgets the strikes, not the rate
    status = d.status("dr")
    assert (status.remaining["strikes"], status.remaining["lookups"]) == (3, 0)


# -- a practice under its quotas ------------------------------------------------------------------


def test_a_gp_under_the_shipped_quotas_never_strikes(engine: Engine) -> None:
    d = Driver(engine, QuotaPolicy())
    for day in range(5):
        for i in range(40):  # 25 new patients a day, 15 repeats, two minutes apart
            patient = f"d{day}p{i}" if i < 25 else f"d{max(0, day - 1)}p{i - 25}"
            decision = d.look("gp", patient, f"cohort{day}-{i}")
            assert (decision.outcome, decision.incident) == ("allowed", None)
            d.wait(120)
        d.wait(DAY - 40 * 120)
    assert d.status("gp").remaining["strikes"] == 3


# -- through the guard: one alert, one case -------------------------------------------------------

KEY = SecretKey(bytes(range(100, 132)), "strikes")


def _nirs(n: int) -> list[str]:
    body = [f"1850578006{o:03d}" for o in range(1, n + 1)]
    return [f"{b}{nir.compute_key(b):02d}" for b in body]


def test_a_retrying_client_raises_one_alert_and_one_case() -> None:
    alerts: list[Alert] = []
    events: list[AuditEvent] = []
    guard = LookupGuard(
        gp_policy(),
        clock=lambda: T0,
        alert=alerts.append,
        audit=events.append,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        hooks="inline",
    )
    first, second, refused = _nirs(3)
    for value in (first, second):
        with guard.lookup("bot", value) as lookup:
            lookup.record({"name": "x"})
    answers = []
    for _ in range(50):
        try:
            with guard.lookup("bot", refused):
                pass
        except LookupDenied as exc:
            answers.append(type(exc).__name__ if isinstance(exc, ReasonRequired) else exc.code)
    assert answers[:4] == ["ReasonRequired"] * 3 + ["strikes"]
    assert answers[7] == answers[11] == "strikes"  # asking on while locked escalates
    assert len(alerts) == 1
    assert (alerts[0].signal, alerts[0].lockout) == ("strikes", True)
    outcomes = Counter(e.outcome for e in events)
    assert (outcomes["reason_required"], outcomes["lockout"], outcomes["locked"]) == (3, 3, 44)
    assert {e.case for e in events if e.outcome in ("lockout", "locked")} == {alerts[0].case}
