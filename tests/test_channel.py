"""The async transport (nirguard._redis.loop): on the event loop, pipelined per turn of
the loop and closed by a fence, a deadline that measures the store and not the loop,
a connection set up as the URL says (a refused set-up is a misconfiguration), and
closed with its loop."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

from nirguard import ConfigurationError, GuardUnavailable, LookupGuard, Pseudonymiser, QuotaPolicy
from nirguard._redis.loop import Channel
from nirguard._redis.outage import StoreUnavailable
from nirguard.testing import NIRGenerator
from tests.guard_helpers import KEY
from tests.redis_tools import RedisServer

NIRS = NIRGenerator(seed=4242).many(60)


def guard_on(url: str, **kwargs: Any) -> LookupGuard:
    kwargs.setdefault("pseudonymiser", Pseudonymiser(KEY, purpose="guard"))
    kwargs.setdefault("key_prefix", "channel")
    kwargs.setdefault("policy", QuotaPolicy.only(lookups="1000/hour"))
    return LookupGuard(storage=url, **kwargs)


def _uvloop_run(main: Any) -> Any:
    uvloop = pytest.importorskip("uvloop")
    return uvloop.run(main)


#: Both event loops a portal runs on: asyncio's (I/O callbacks before timers in a turn)
#: and uvloop's (timers first), which uvicorn picks when it is installed.
RUNNERS = pytest.mark.parametrize("run", [asyncio.run, _uvloop_run], ids=["asyncio", "uvloop"])


def _channels(guard: LookupGuard) -> list[Channel]:
    engine = guard._engine  # type: ignore[attr-defined]
    return engine._loop.channels()  # type: ignore[no-any-return]


@RUNNERS
def test_a_late_loop_is_not_a_slow_store(private_redis: RedisServer, run: Any) -> None:
    """The loop is blocked for three deadlines right after the calls are written: Redis
    answered at once, so every lookup goes through."""
    guard = guard_on(private_redis.url(), deadline=0.2)

    async def main() -> list[str]:
        async with guard.lookup("warm", NIRS[0]):
            pass
        outcomes: list[str] = []

        async def one(i: int) -> None:
            async with guard.lookup(f"dr{i}", NIRS[i]) as lookup:
                outcomes.append(str(lookup.outcome))

        tasks = [asyncio.ensure_future(one(i)) for i in range(1, 11)]
        await asyncio.sleep(0)  # the lookups queue their calls
        await asyncio.sleep(0)  # ... and the channel writes them
        time.sleep(0.6)  # then the loop is stuck: no timer, no read, for 3 deadlines
        await asyncio.gather(*tasks)
        return outcomes

    assert run(main()) == ["allowed"] * 10
    assert all(c.conn is None for c in _channels(guard))
    guard.close()


@RUNNERS
def test_a_paused_store_is_refused_within_about_the_deadline(
    private_redis: RedisServer, run: Any
) -> None:
    guard = guard_on(private_redis.url(), deadline=0.3)

    async def main() -> list[float]:
        async with guard.lookup("warm", NIRS[0]):
            pass
        timings = []
        with private_redis.paused():
            for value in NIRS[1:4]:
                start = time.monotonic()
                with pytest.raises(GuardUnavailable):
                    async with guard.lookup("dr", value):
                        pass
                timings.append(time.monotonic() - start)
        async with guard.lookup("dr", NIRS[5]):
            pass  # answered again, on a new connection
        return timings

    timings = run(main())
    assert max(timings) < 0.3 + 0.25  # the deadline, and scheduling slack on a busy host
    assert min(timings) > 0.3 * 0.8  # not before the store was silent for 0.8 of it
    guard.close()


def test_a_cancelled_caller_never_shifts_the_replies(private_redis: RedisServer) -> None:
    """Cancel callers at random points: every later caller gets its own answer."""
    guard = guard_on(private_redis.url(), policy=QuotaPolicy.only(lookups="1000/hour"))

    async def main() -> None:
        async def one(i: int) -> str:
            async with guard.lookup(f"dr{i % 5}", NIRS[i]) as lookup:
                return str(lookup.outcome)

        for round_ in range(5):
            tasks = [asyncio.ensure_future(one(i)) for i in range(round_, round_ + 20)]
            await asyncio.sleep(0)
            for task in tasks[::3]:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            kept = [r for i, r in enumerate(results) if i % 3]
            assert kept == ["allowed"] * len(kept)
        status = await guard.astatus("dr1")
        assert status.remaining["lookups"] < 1000

    asyncio.run(main())
    guard.close()


def test_the_url_database_is_selected(private_redis: RedisServer) -> None:
    import redis

    guard = guard_on(private_redis.url(db=3))

    async def main() -> None:
        async with guard.lookup("dr", NIRS[1]):
            pass

    asyncio.run(main())
    in_db3 = redis.Redis.from_url(private_redis.url(db=3))
    in_db0 = redis.Redis.from_url(private_redis.url(db=0))
    assert any(in_db3.scan_iter(match="channel:*"))
    assert not any(in_db0.scan_iter(match="channel:*"))
    in_db3.close()
    in_db0.close()
    guard.close()


def test_a_password_is_sent_and_a_wrong_one_is_a_misconfiguration(
    private_redis: RedisServer,
) -> None:
    import redis

    admin = redis.Redis.from_url(private_redis.url())
    admin.config_set("requirepass", "s3cret-for-tests")
    admin.close()
    good = guard_on(f"redis://:s3cret-for-tests@127.0.0.1:{private_redis.port}/0")
    bad = guard_on(f"redis://:wrong-password@127.0.0.1:{private_redis.port}/0", fail_open=True)

    async def main() -> None:
        async with good.lookup("dr", NIRS[1]):
            pass
        with pytest.raises(ConfigurationError) as caught:  # never let through unguarded
            async with bad.lookup("dr", NIRS[2]):
                pass
        assert "wrong-password" not in str(caught.value)
        assert "wrong-password" not in repr(caught.value.__cause__)

    asyncio.run(main())
    good.close()
    bad.close()


@RUNNERS
def test_the_channel_closes_with_its_loop(private_redis: RedisServer, run: Any) -> None:
    """A guard used from several ``asyncio.run`` calls: each loop's socket is closed by
    that loop (the suite turns an unclosed socket's ResourceWarning into an error)."""
    guard = guard_on(private_redis.url())

    async def main(i: int) -> None:
        async with guard.lookup("dr", NIRS[i]):
            pass

    for i in range(3):
        run(main(i))
        assert all(c.conn is None for c in _channels(guard))
    gc.collect()
    guard.close()


def test_options_nirguard_does_not_know_are_refused_when_the_guard_is_made(
    private_redis: RedisServer,
) -> None:
    for options in ({"decode_responses": True}, {"retry": None}, {"protocol": 3}):
        with pytest.raises(ConfigurationError):
            guard_on(private_redis.url(), storage_options=options)
    with pytest.raises(ConfigurationError):
        guard_on(f"redis://127.0.0.1:{private_redis.port}/0?decode_responses=true")


class _Loop:
    """Just enough of an event loop to drive a connection by hand: time stands still
    until a test moves it, and callbacks run when a test says."""

    def __init__(self) -> None:
        self.now = 0.0
        self.later: list[Any] = []
        self._real = asyncio.new_event_loop()

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Any, *args: Any) -> None:
        callback(*args)

    def call_later(self, delay: float, callback: Any) -> None:
        self.later.append(callback)

    def create_future(self) -> asyncio.Future[Any]:
        return self._real.create_future()

    def sweep(self, at: float) -> None:
        """The loop gets round to its due sweep at time ``at`` (timers first, as uvloop)."""
        self.now = at
        due, self.later = self.later, []
        for callback in due:
            callback()

    def close(self) -> None:
        self._real.close()


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def _connection(deadline: float) -> tuple[Any, _Loop, _Transport]:
    from nirguard._redis.loop import _Connection

    loop = _Loop()
    conn = _Connection(loop, deadline)  # type: ignore[arg-type]
    transport = _Transport()
    conn.transport = transport  # type: ignore[assignment]
    return conn, loop, transport


def _fence(n: int) -> bytes:
    """The reply to write number ``n``'s fence (``PING n``)."""
    return b"$%d\r\n%d\r\n" % (len(str(n)), n)


PING = (("PING",),)


def test_a_sweep_run_late_by_the_loop_does_not_fail_a_call_whose_reply_waits() -> None:
    """The loop was stuck for five deadlines and runs its timers before reading the socket
    (uvloop's order): the reply waiting there must still reach the caller."""
    conn, loop, transport = _connection(deadline=0.2)
    future = conn.send(PING, 0.2)
    assert transport.written == [b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nPING\r\n$1\r\n1\r\n"]
    loop.sweep(at=1.0)  # first sweep, 1 s late: the store was never given a chance to be seen
    assert not future.done()
    conn.data_received(b"+PONG\r\n" + _fence(1))  # the reply that had been waiting
    assert future.result() == [b"PONG"]
    assert not transport.closed
    loop.close()


def test_replies_wait_for_their_fence() -> None:
    conn, loop, _ = _connection(deadline=0.2)
    future = conn.send(PING, 0.2)
    conn.data_received(b"+PONG\r\n")
    assert not future.done()  # a reply alone could be somebody else's
    conn.data_received(_fence(1))
    assert future.result() == [b"PONG"]
    loop.close()


def test_a_store_silent_for_most_of_the_deadline_fails_every_pending_call() -> None:
    conn, loop, transport = _connection(deadline=0.2)
    first, second = conn.send(PING, 0.2), conn.send(PING, 0.2)
    at = 0.0
    while not first.done():
        at += 0.02
        assert at < 0.2 + 0.02 + 1e-9, "not failed within the deadline"
        loop.sweep(at)
    assert at > 0.2 * 0.8  # and not before the store was silent for 0.8 of it
    for future in (first, second):
        with pytest.raises(StoreUnavailable, match="did not answer"):
            future.result()
    assert transport.closed
    assert conn.send(PING, 0.2).exception() is not None  # a failed connection takes no call
    loop.close()


def test_a_call_with_a_small_budget_is_failed_sooner() -> None:
    conn, loop, _ = _connection(deadline=0.2)
    future = conn.send(PING, 0.1)  # what was left of the deadline for a second step
    at = 0.0
    while not future.done():
        at += 0.02
        loop.sweep(at)
    assert 0.1 * 0.8 < at <= 0.1 + 0.02 + 1e-9
    loop.close()


def test_replies_that_keep_coming_keep_the_calls_alive() -> None:
    conn, loop, _ = _connection(deadline=0.2)
    futures = [conn.send(PING, 0.2) for _ in range(8)]
    for i in range(8):  # one reply per (late) sweep: the store is slow but answering
        loop.sweep(0.05 * (i + 1))
        conn.data_received(b"+PONG\r\n" + _fence(i + 1))
    assert all(f.result() == [b"PONG"] for f in futures)
    loop.close()


def test_a_store_that_dribbles_is_refused_by_the_connections_clock() -> None:
    """A byte per sweep: never silent, yet the call is refused once its budget has passed
    on the connection's clock (sweeps on time)."""
    conn, loop, transport = _connection(deadline=0.2)
    future = conn.send(PING, 0.2)
    reply = b"$20\r\n" + b"x" * 20
    at, sent = 0.0, 0
    while not future.done():
        at += 0.02
        assert at < 0.2 + 0.05, "not refused within the deadline"
        loop.sweep(at)
        conn.data_received(reply[sent : sent + 1])
        sent += 1
    assert isinstance(future.exception(), StoreUnavailable)
    assert transport.closed
    loop.close()


def test_a_lagging_loop_adds_no_more_than_a_sweep_to_the_clock() -> None:
    conn, loop, _ = _connection(deadline=0.2)
    future = conn.send(PING, 0.2)
    for i in range(1, 9):  # eight sweeps, each a whole second late, a byte arriving each time
        loop.sweep(float(i))
        conn.data_received(b"+PONG"[i - 1 : i] if i <= 5 else b"")
    conn.data_received(b"\r\n" + _fence(1))
    assert future.result() == [b"PONG"]
    loop.close()


@pytest.mark.parametrize("extra", [b"+EXTRA\r\n", _fence(1)], ids=["reply", "fence"])
def test_a_reply_nobody_asked_for_closes_the_connection(extra: bytes) -> None:
    conn, loop, transport = _connection(deadline=0.2)
    future = conn.send(PING, 0.2)
    conn.data_received(b"+PONG\r\n" + _fence(1) + extra)
    assert future.result() == [b"PONG"]  # its fence was in place: the reply is its own
    assert transport.closed and conn.closed is not None
    loop.close()


def test_a_duplicated_reply_never_reaches_the_next_caller() -> None:
    """The store (a proxy) sends one reply twice: the caller after it gets an outage,
    never the duplicate as its own answer."""
    conn, loop, transport = _connection(deadline=0.2)
    first = conn.send((("GET", "a"),), 0.2)
    conn.data_received(b"$6\r\nlocked\r\n" + _fence(1))
    second = conn.send((("GET", "b"),), 0.2)
    conn.data_received(b"$6\r\nlocked\r\n")  # the duplicate, before b's own reply
    conn.data_received(b"$7\r\nallowed\r\n" + _fence(2))
    assert first.result() == [b"locked"]
    assert isinstance(second.exception(), StoreUnavailable)
    assert transport.closed
    loop.close()


def test_an_error_reply_is_the_callers_result_not_the_connections_end() -> None:
    from redis.exceptions import ResponseError

    conn, loop, transport = _connection(deadline=0.2)
    future = conn.send((("FCALL",), ("PING",)), 0.2)
    conn.data_received(b"-ERR no such function\r\n+PONG\r\n" + _fence(1))
    error, pong = future.result()
    assert isinstance(error, ResponseError) and pong == b"PONG"
    assert not transport.closed
    loop.close()


def test_commands_are_packed_as_resp_arrays_of_bulk_strings() -> None:
    from nirguard._redis.wire import pack

    assert pack([("SET", b"k\r\n", "12", "é")]) == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$2\r\n\xc3\xa9\r\n"
    )


def test_calls_of_one_turn_of_the_loop_share_one_write_and_one_fence() -> None:
    conn, loop, transport = _connection(deadline=0.2)
    deferred: list[Any] = []
    loop.call_soon = lambda callback, *args: deferred.append((callback, args))  # type: ignore[method-assign]
    futures = [conn.send(PING, 0.2) for _ in range(3)]
    assert transport.written == []  # nothing before the loop's next turn
    for callback, args in deferred:
        callback(*args)
    assert transport.written == [b"*1\r\n$4\r\nPING\r\n" * 3 + b"*2\r\n$4\r\nPING\r\n$1\r\n1\r\n"]
    conn.data_received(b"+PONG\r\n" * 3 + _fence(1))
    assert [f.result() for f in futures] == [[b"PONG"]] * 3
    loop.close()


def test_a_store_that_falls_silent_after_answering_is_still_caught() -> None:
    """The sweep stops when nothing is pending; the next call must start it again."""
    conn, loop, _ = _connection(deadline=0.2)
    first = conn.send(PING, 0.2)
    conn.data_received(b"+PONG\r\n" + _fence(1))
    assert first.result() == [b"PONG"]
    loop.sweep(at=0.02)  # nothing pending: the sweep stops
    assert loop.later == []
    loop.now = 1.0
    second = conn.send(PING, 0.2)  # ... and the store is silent from now on
    at = 1.0
    while not second.done():
        at += 0.02
        assert at < 1.0 + 0.2 + 0.02 + 1e-9, "not failed within the deadline"
        loop.sweep(at)
    assert isinstance(second.exception(), StoreUnavailable)
    loop.close()


@pytest.mark.parametrize("event", ["lost", "garbage", "unasked"])
def test_a_broken_stream_fails_the_pending_calls_as_an_outage(event: str) -> None:
    conn, loop, transport = _connection(deadline=0.2)
    future = conn.send(PING, 0.2)
    if event == "lost":
        conn.connection_lost(None)
    elif event == "garbage":
        conn.data_received(b"!not a reply\r\n")
    else:
        future.cancel()
        conn.data_received(b"+PONG\r\n" + _fence(1) + b"+PONG\r\n")  # one reply too many
    if event != "unasked":
        assert isinstance(future.exception(), StoreUnavailable)
    assert isinstance(conn.closed, StoreUnavailable)
    assert transport.closed
    later = conn.send(PING, 0.2)
    assert isinstance(later.exception(), StoreUnavailable)  # a broken stream takes no call
    loop.close()


def test_an_acl_user_and_a_client_name_are_set_up(private_redis: RedisServer) -> None:
    import redis

    admin = redis.Redis.from_url(private_redis.url())
    admin.execute_command("ACL", "SETUSER", "portal", "on", ">portal-pass", "~*", "+@all")
    guard = guard_on(
        f"redis://portal:portal-pass@127.0.0.1:{private_redis.port}/0",
        storage_options={"client_name": "nirguard-portal"},
    )
    stranger = guard_on(f"redis://nobody:portal-pass@127.0.0.1:{private_redis.port}/0")

    async def main() -> None:
        async with guard.lookup("dr", NIRS[1]):
            pass
        clients = admin.client_list()  # the loop's connection is open: look at it
        assert ("nirguard-portal", "portal") in {(c.get("name"), c.get("user")) for c in clients}
        with pytest.raises(ConfigurationError) as caught:  # WRONGPASS: not an outage
            async with stranger.lookup("dr", NIRS[2]):
                pass
        assert "portal-pass" not in str(caught.value)

    asyncio.run(main())
    admin.close()
    guard.close()
    stranger.close()


def test_loops_on_several_threads_each_get_their_own_connection(
    private_redis: RedisServer,
) -> None:
    """Threads each running event loops one after the other (channels made and pruned
    concurrently): every lookup is decided, and the quota counts every one of them."""
    import threading

    guard = guard_on(private_redis.url(), policy=QuotaPolicy.only(lookups="1000/hour"))
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        async def main(round_: int) -> None:
            for i in range(5):
                async with guard.lookup("shared", NIRS[(t * 15 + round_ * 5 + i) % len(NIRS)]):
                    pass

        try:
            for round_ in range(3):
                asyncio.run(main(round_))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert guard.status("shared").remaining["lookups"] == 1000 - 4 * 3 * 5
    guard.close()
