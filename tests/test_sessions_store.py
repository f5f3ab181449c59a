"""The session signal on a shared store, and against a bot that adapts to it.

* twins: the same request, or one per session, sent at once from threads, on memory,
  Redis and a real Cluster: the decision is the serial one (one atomic call);
* connections cut mid-decision (before the server sees the call, or after it ran and
  before the reply), with a client that retries: a return never gets through;
* the refusal costs: a bot that asks again for the refused patient, or moves on, or
  states a reason, is locked within a few attempts, and one case is opened.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nirguard import GuardUnavailable, LookupDenied, LookupGuard, Pseudonymiser, QuotaPolicy
from nirguard.testing import NIRGenerator
from tests.engine_helpers import ENGINES, Driver, engines
from tests.guard_helpers import KEY
from tests.redis_helpers import WORKER_PREFIX
from tests.redis_tools import RedisServer, TcpProxy

NIRS = NIRGenerator(seed=1717).many(60)
MINUTE = 60.0
#: The signal, what a refusal costs, and patients remembered a day.
POLICY = QuotaPolicy.only(
    session_overlap="30 minutes",
    distinct_patients="1000/day",
    break_glass="1/day;2/7 days",
    strikes="3/hour;6/day",
)
#: The signal alone: its breach is a lockout at once.
STRICT = QuotaPolicy.only(session_overlap="30 minutes", distinct_patients="1000/day")


@pytest.fixture(params=ENGINES)
def storage(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A storage URI and a key prefix of its own (its keys are deleted afterwards)."""
    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    if request.param == "memory":
        yield "memory://", prefix
        return
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    yield url, prefix
    from tests.engine_helpers import cleanup

    cleanup(url, prefix)


def _guard(url: str, prefix: str, policy: QuotaPolicy, **kwargs: Any) -> LookupGuard:
    return LookupGuard(
        policy,
        storage=url,
        key_prefix=prefix,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        alert=False,
        **kwargs,
    )


def _at_once(guard: LookupGuard, asks: list[tuple[str, str]]) -> list[str]:
    """``asks`` ((session, NIR) each) sent at once from threads: the patients let through."""
    through: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(asks))

    def ask(session: str, value: str) -> None:
        barrier.wait()
        try:
            with guard.lookup("dr", value, session=session), lock:
                through.append(value)
        except LookupDenied:
            pass

    threads = [threading.Thread(target=ask, args=a) for a in asks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return through


def test_sessions_at_once_get_two_through_whatever_the_order(storage: tuple[str, str]) -> None:
    # serially: the first session, then a hand-over; the third is the signal (a lockout
    # under STRICT), and the rest meet the lock: exactly two, in any order
    guard = _guard(*storage, STRICT)
    through = _at_once(guard, [(f"s{i}", NIRS[i]) for i in range(6)])
    assert len(through) == 2
    assert guard.status("dr").locked_until is not None
    guard.close()


def test_twins_of_a_return_never_get_through(storage: tuple[str, str]) -> None:
    guard = _guard(*storage, POLICY)
    for session, value in (("owner", NIRS[0]), ("bot", NIRS[1])):
        with guard.lookup("dr", value, session=session):
            pass
    # three copies of the owner's return at once: each is a 428 (a strike) or the lockout
    assert _at_once(guard, [("owner", NIRS[2])] * 3) == []
    assert _at_once(guard, [("bot", NIRS[3])] * 3) == []  # the bot is no better off
    guard.close()


@pytest.mark.parametrize("when", ["request", "reply", "either"])
def test_cut_connections_never_let_a_return_through(
    private_redis: RedisServer, redis_proxy: TcpProxy, when: str
) -> None:
    guard = _guard(redis_proxy.url(private_redis.url()), "cut", STRICT, deadline=0.5)
    redis_proxy.cut_randomly(0.4, when=when)  # type: ignore[arg-type]
    failures, answers = 0, []
    # owner, bot (a hand-over), owner again: a return, whatever was cut and retried
    for session, value in (("owner", NIRS[0]), ("bot", NIRS[1]), ("owner", NIRS[2])):
        for _ in range(30):
            try:
                with guard.lookup("dr", value, session=session):
                    answers.append("through")
                break
            except GuardUnavailable:
                failures += 1
            except LookupDenied as exc:
                answers.append(exc.code)
                break
    redis_proxy.stop_cutting()
    assert failures > 0  # the cuts happened, mid-decision
    # the return is refused; if the reply of its lockout was cut, the retry meets the lock
    assert answers[:2] == ["through", "through"] and answers[2] in ("suspected", "locked")
    assert guard.status("dr").locked_until is not None  # the record is whole
    guard.close()


# -- a bot that adapts ------------------------------------------------------------------------


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from engines(request)


def _caught(engine: Any) -> Driver:
    """An owner and a bot on one account; the owner's return is refused with a 428."""
    d = Driver(engine, POLICY)
    d.look("dr", "o1", session="owner")
    d.wait(MINUTE)
    d.look("dr", "b1", session="bot")
    d.wait(MINUTE)
    assert d.look("dr", "b2", session="owner").outcome == "reason_required"
    return d


def test_a_bot_asking_again_for_the_refused_patient_is_locked(engine: Any) -> None:
    d = _caught(engine)
    decisions = []
    for _ in range(200):  # the same refused patient, as fast as it can, from its own session
        decisions.append(d.look("dr", "b2", session="bot"))
        d.wait(1.0)
    outcomes = [x.outcome for x in decisions]
    first = next(i for i, x in enumerate(decisions) if x.lockout_started)
    assert outcomes[:first] == ["reason_required"] * 2  # with the owner's: 3 answers of 428
    assert "reason_required" not in outcomes[first:]
    assert not {"allowed", "break_glass"} & set(outcomes)


def test_a_bot_moving_on_is_locked_at_once(engine: Any) -> None:
    d = _caught(engine)
    moved = d.look("dr", "b3", session="bot")  # another patient while the question is pending
    assert (moved.outcome, moved.lockout_started) == ("suspected", True)


def test_a_bot_stating_reasons_gets_one_grant_then_the_lockout(engine: Any) -> None:
    # the owner was asked; the bot, which used the account last, answers with reasons of
    # its own: one grant (the day's budget), then the window's mark locks the account
    d = _caught(engine)
    got = [d.look("dr", f"r{i}", session="bot", reason=True) for i in range(5)]
    assert [g.outcome for g in got] == ["break_glass", "suspected"] + ["locked"] * 3
    assert got[1].lockout_started and got[1].quota == "session"


def test_a_practitioner_refused_on_going_back_answers_and_goes_on_there(engine: Any) -> None:
    # a desk PC, then a laptop, then the desk PC again: the return is asked a reason, and
    # once answered the practitioner goes on at the desk; the laptop's next new patient
    # within the window is refused (the mark spares only the session that was asked)
    d = _caught(engine)  # "owner" went back to its first session and was asked
    assert d.look("dr", "b2", session="owner", reason=True).outcome == "break_glass"
    d.wait(MINUTE)
    assert d.look("dr", "o3", session="owner").outcome == "allowed"
    d.wait(MINUTE)
    assert d.look("dr", "b9", session="bot").quota == "session"
