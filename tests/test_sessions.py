"""The ``session_overlap`` signal on every engine: one account, one session at a time.

Each scenario runs on the memory engine, Redis and a real Cluster; a hypothesis
property checks that the memory engine and Redis agree on any sequence of lookups
from several sessions. The rule: nirguard/_sessions.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nirguard import QuotaPolicy
from nirguard._engine import Engine
from nirguard._memory import MemoryEngine
from nirguard._sessions import ENTRY, KEPT, LIST, MEMORY
from tests.engine_helpers import (
    DAY,
    ENGINES,
    T0,
    Driver,
    engines,
)
from tests.test_engines import PARITY, _key, play_twice

MINUTE = 60.0
#: Patients are remembered a day (a repeat is one within it: distinct_patients' window).
_SEEN = "1000/day"
#: Nothing on but the signal and what a refusal costs (strikes, break-glass).
SESSIONS = QuotaPolicy.only(
    session_overlap="30 minutes",
    distinct_patients=_SEEN,
    break_glass="1/day;2/7 days",
    strikes="3/hour;6/day",
)
#: The signal alone: its breach is a lockout at once.
STRICT = QuotaPolicy.only(session_overlap="30 minutes", distinct_patients=_SEEN)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from engines(request)


def _drive(engine: Engine, policy: QuotaPolicy = STRICT) -> Driver:
    return Driver(engine, policy)


def _refused(decision: Any) -> bool:
    return decision.outcome not in ("allowed", "break_glass")


def _a_then_b(d: Driver) -> None:
    """Session A looks up p1, then a minute later session B p2 (a hand-over), then a minute."""
    d.look("dr", "p1", session="A")
    d.wait(MINUTE)
    d.look("dr", "p2", session="B")
    d.wait(MINUTE)


def test_one_session_all_day_is_never_refused(engine: Engine) -> None:
    d = _drive(engine)
    for i in range(40):
        assert d.look("dr", f"p{i}", session="A").outcome == "allowed"
        d.wait(7 * MINUTE)


def test_a_new_login_takes_over_from_the_last(engine: Engine) -> None:
    d = _drive(engine)
    # seven logins, each the only one used since the last; two logins within the window
    # (a third would be one too many: test_a_third_session_while_two_are_active...)
    for i, session in enumerate("ABCDEFG"):
        assert d.look("dr", f"p{i}a", session=session).outcome == "allowed"
        d.wait(2 * MINUTE)
        assert d.look("dr", f"p{i}b", session=session).outcome == "allowed"
        d.wait(20 * MINUTE)


def test_a_return_while_the_other_session_is_active_is_the_signal(engine: Engine) -> None:
    d = _drive(engine)
    d.look("dr", "p1", session="A")
    d.wait(5 * MINUTE)
    d.look("dr", "p2", session="B")
    d.wait(5 * MINUTE)
    decision = d.look("dr", "p3", session="A")
    assert (decision.outcome, decision.quota) == ("suspected", "session")
    assert decision.lockout_started and decision.alert
    assert decision.evidence["sessions"] == 2
    assert decision.evidence["limit"] == 1


def test_a_return_is_seen_however_long_the_returning_session_was_idle(engine: Engine) -> None:
    # a bot that paces itself between the owner's lookups: the owner's next lookup sees it
    d = _drive(engine)
    d.look("dr", "p1", session="owner")
    d.wait(3 * 3600.0)
    d.look("dr", "p2", session="bot")
    d.wait(29 * MINUTE)
    assert d.look("dr", "p3", session="owner").quota == "session"


def test_a_return_once_the_other_session_is_idle_is_a_hand_over(engine: Engine) -> None:
    d = _drive(engine)
    d.look("dr", "p1", session="desk")
    d.wait(5 * MINUTE)
    d.look("dr", "p2", session="laptop")
    d.wait(31 * MINUTE)  # the laptop is no longer active
    assert d.look("dr", "p3", session="desk").outcome == "allowed"
    d.wait(MINUTE)
    assert d.look("dr", "p4", session="desk").outcome == "allowed"


def test_a_return_is_forgotten_after_a_day(engine: Engine) -> None:
    d = _drive(engine)
    d.look("dr", "p1", session="A")
    d.wait(MEMORY + MINUTE)
    d.look("dr", "p2", session="B")
    d.wait(MINUTE)
    # A is no longer remembered: it is a new login taking over from B
    assert d.look("dr", "p3", session="A").outcome == "allowed"


def test_a_third_session_while_two_are_active_is_the_signal(engine: Engine) -> None:
    d = _drive(engine)
    _a_then_b(d)
    decision = d.look("dr", "p3", session="C")
    assert decision.quota == "session"
    assert decision.evidence["sessions"] == 3


def test_a_third_session_after_one_went_idle_is_a_hand_over(engine: Engine) -> None:
    d = _drive(engine)
    d.look("dr", "p1", session="A")
    d.wait(20 * MINUTE)
    d.look("dr", "p2", session="B")
    d.wait(11 * MINUTE)  # A idle for 31 minutes: only B is active
    assert d.look("dr", "p3", session="C").outcome == "allowed"


def test_a_repeat_is_never_refused_but_a_return_marks_the_account(engine: Engine) -> None:
    d = _drive(engine)
    d.look("dr", "p1", session="owner")
    d.wait(MINUTE)
    d.look("dr", "p2", session="bot")
    d.wait(MINUTE)
    # the bot re-reads a patient it holds, then asks for a new one: refused all the same
    assert d.look("dr", "p1", session="owner").outcome == "allowed"
    d.wait(MINUTE)
    assert d.look("dr", "p2", session="bot").outcome == "allowed"
    d.wait(MINUTE)
    assert d.look("dr", "p9", session="bot").quota == "session"


def test_the_mark_of_a_return_refuses_with_two_sessions_as_evidence(engine: Engine) -> None:
    d = _drive(engine)
    _a_then_b(d)
    d.look("dr", "p1", session="A")  # a repeat that is a return: the mark
    d.wait(MINUTE)
    marked = d.look("dr", "p3", session="A")  # A used it last: only the mark refuses
    assert (marked.quota, marked.evidence["sessions"], marked.evidence["limit"]) == (
        "session",
        2,
        1,
    )


def test_the_window_edges_are_exact(engine: Engine) -> None:
    # a session is active while less than session_overlap has passed since its last lookup
    d = _drive(engine)
    d.look("dr", "p1", session="A")
    d.wait(MINUTE)
    d.look("dr", "p2", session="B")
    d.wait(30 * MINUTE)  # B idle for exactly the window: no longer active
    assert d.look("dr", "p3", session="A").outcome == "allowed"
    d.wait(MINUTE)
    d.look("dr", "p4", session="B")  # B returns while A is active: refused
    d.unlock("dr")
    d.look("dr", "q1", session="C")
    d.wait(MEMORY - MINUTE)
    d.look("dr", "q2", session="D")
    d.wait(MINUTE)  # C unused for exactly a day: forgotten, so a new login, not a return
    assert d.look("dr", "q3", session="C").outcome == "allowed"
    d.wait(DAY)
    d.look("dr", "r1", session="E")
    d.wait(MINUTE)
    d.look("dr", "r2", session="F")
    d.wait(29 * MINUTE)  # E idle for exactly the window: only F is active
    assert d.look("dr", "r3", session="G").outcome == "allowed"  # a hand-over, not a third


def test_the_mark_ends_exactly_with_the_window(engine: Engine) -> None:
    d = _drive(engine)
    _a_then_b(d)
    d.look("dr", "p1", session="A")  # marks the account for 30 minutes
    d.wait(30 * MINUTE)
    assert d.look("dr", "p3", session="A").outcome == "allowed"


def test_the_mark_of_a_return_ends_with_the_window(engine: Engine) -> None:
    d = _drive(engine)
    _a_then_b(d)
    d.look("dr", "p1", session="A")  # a repeat: marks the account for 30 minutes
    d.wait(31 * MINUTE)
    assert d.look("dr", "p3", session="A").outcome == "allowed"


def test_lookups_without_a_session_are_not_checked(engine: Engine) -> None:
    d = _drive(engine)
    d.look("dr", "p1", session="A")
    d.look("dr", "p2", session="B")
    assert d.look("dr", "p3").outcome == "allowed"
    d.wait(MINUTE)
    assert d.look("dr", "p4", session="B").outcome == "allowed"  # B used it last


def test_switched_off_nothing_is_checked(engine: Engine) -> None:
    d = _drive(engine, QuotaPolicy.only(lookups="100/hour"))
    for i in range(6):
        assert d.look("dr", f"p{i}", session="AB"[i % 2]).outcome == "allowed"


def test_a_question_first_and_a_reason_moves_the_session(engine: Engine) -> None:
    d = _drive(engine, SESSIONS)
    d.look("dr", "p1", session="owner")
    d.wait(MINUTE)
    d.look("dr", "p2", session="bot")
    d.wait(MINUTE)
    asked = d.look("dr", "p3", session="owner")
    assert (asked.outcome, asked.quota) == ("reason_required", "session")
    assert asked.alert  # the case opens at the first signal
    granted = d.look("dr", "p3", session="owner", reason=True)
    assert (granted.outcome, granted.quota) == ("break_glass", "session")
    d.wait(MINUTE)
    # the owner used the account last: the bot's next new patient is a return, and the
    # day's break-glass budget is spent: a lockout
    locked = d.look("dr", "p4", session="bot")
    assert (locked.outcome, locked.quota, locked.lockout_started) == ("suspected", "session", True)


def test_a_refused_lookup_does_not_move_its_session(engine: Engine) -> None:
    d = _drive(engine, SESSIONS)
    _a_then_b(d)
    assert d.look("dr", "p3", session="A").outcome == "reason_required"
    d.wait(MINUTE)
    # B still used it last: its repeat is fine, and nothing it does makes A the last
    assert d.look("dr", "p2", session="B").outcome == "allowed"


def test_unlock_forgets_the_sessions(engine: Engine) -> None:
    d = _drive(engine)
    d.look("dr", "p1", session="A")
    d.look("dr", "p2", session="B")
    assert d.look("dr", "p3", session="A").lockout_started
    d.unlock("dr")
    d.wait(MINUTE)
    assert d.look("dr", "p4", session="A").outcome == "allowed"
    assert d.look("dr", "p5", session="C").outcome == "allowed"  # a hand-over


def test_accounts_are_apart(engine: Engine) -> None:
    d = _drive(engine)
    d.look("dr1", "p1", session="A")
    d.look("dr2", "p2", session="B")
    assert d.look("dr1", "p3", session="A").outcome == "allowed"


def test_only_the_last_four_sessions_are_remembered(engine: Engine) -> None:
    d = _drive(engine)
    for i, session in enumerate("ABCDE"):  # hand-overs, 31 minutes apart
        assert d.look("dr", f"p{i}", session=session).outcome == "allowed"
        d.wait(31 * MINUTE)
    d.look("dr", "p5", session="E")  # E active again
    d.wait(MINUTE)
    assert d.look("dr", "p6", session="B").quota == "session"  # B is remembered: a return
    d.unlock("dr")
    for i, session in enumerate("ABCDE"):
        d.look("dr", f"q{i}", session=session)
        d.wait(31 * MINUTE)
    d.look("dr", "q5", session="E")
    d.wait(MINUTE)
    assert d.look("dr", "q6", session="A").outcome == "allowed"  # A, the fifth back: forgotten


def test_the_record_keeps_at_most_four_sessions() -> None:
    engine = MemoryEngine(lambda: T0, prefix="t")
    d = _drive(engine, QuotaPolicy.only(session_overlap="1 minute"))
    for i in range(12):
        d.look("dr", f"p{i}", session=f"s{i}")
        d.wait(2 * MINUTE)
    record = next(r for k, r in engine._store._data.items() if "dr" in k and LIST in r)
    assert len(record[LIST]) == KEPT * ENTRY


# -- the engines agree ----------------------------------------------------------------------------

SESSION_OPS = st.lists(
    st.tuples(
        st.sampled_from(["look", "look", "look", "reason", "wait", "unlock"]),
        st.sampled_from(["dr1", "dr2"]),
        st.integers(0, 6),
        st.sampled_from(["", "A", "A", "B", "B", "C", "D", "E"]),
        st.sampled_from([1.0, 60.0, 600.0, 1700.0, 1900.0, 90000.0]),
    ),
    max_size=40,
)
SESSION_POLICY = QuotaPolicy.only(**PARITY, session_overlap="30 minutes")


def _play(engine: Engine, ops: list[tuple[str, str, int, str, float]]) -> list[Any]:
    d = Driver(engine, SESSION_POLICY)
    out: list[Any] = []
    for op, who, patient, session, seconds in ops:
        if op in ("look", "reason"):
            decision = d.look(who, f"p{patient}", reason=op == "reason", session=session)
            out.append(_key(decision))
        elif op == "unlock":
            d.unlock(who)
        else:
            d.wait(seconds)
    return out


def _agree(url: str, ops: Any) -> None:
    expected, got = play_twice(url, ops, _play)
    assert got == expected


@pytest.mark.redis
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=SESSION_OPS)
def test_memory_and_redis_agree_on_sessions(redis_url: str, ops: Any) -> None:
    _agree(redis_url, ops)


@pytest.mark.redis
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=SESSION_OPS)
def test_memory_and_a_cluster_agree_on_sessions(redis_cluster_url: str, ops: Any) -> None:
    _agree(redis_cluster_url, ops)
