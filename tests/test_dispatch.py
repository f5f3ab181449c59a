"""The async path's dispatcher thread: what it sends, and what it refuses unsent."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from nirguard._redis.thread import Dispatcher


class _Store:
    """A fake batch runner: the first batch takes ``first`` seconds and then answers
    or raises ``error``; later batches answer at once. Records every item sent."""

    def __init__(self, first: float, error: BaseException | None = None) -> None:
        self.first = first
        self.error = error
        self.sent: list[Any] = []
        self.started = threading.Event()
        self._batches = 0

    def __call__(self, client: Any, items: list[Any]) -> list[Any]:
        self._batches += 1
        self.sent.extend(items)
        if self._batches == 1:
            self.started.set()
            time.sleep(self.first)
            if self.error is not None:
                raise self.error
        return [f"answer {item}" for item in items]


async def _run(store: _Store, deadline: float) -> tuple[Any, list[Any]]:
    dispatcher = Dispatcher(lambda: _Client(), store, deadline=deadline)
    try:
        first = asyncio.ensure_future(dispatcher.submit("first"))
        while not store.started.is_set():
            await asyncio.sleep(0.001)
        # queued while the first batch is on the wire
        rest = await asyncio.gather(
            *(dispatcher.submit(f"queued {i}") for i in range(3)), return_exceptions=True
        )
        answer = await asyncio.gather(first, return_exceptions=True)
        return answer[0], rest
    finally:
        dispatcher.close()


class _Client:
    def close(self) -> None:
        pass


def test_a_batch_that_took_long_but_answered_does_not_refuse_the_next() -> None:
    # a busy host: the batch took 0.6 of the deadline (CPU, GIL) and the store answered
    store = _Store(first=0.6)
    first, rest = asyncio.run(_run(store, deadline=1.0))
    assert first == "answer first"
    assert rest == [f"answer queued {i}" for i in range(3)]
    assert store.sent == ["first", "queued 0", "queued 1", "queued 2"]


@pytest.mark.parametrize(
    "error", [TimeoutError("timed out"), ConnectionResetError("cut")], ids=["timeout", "cut"]
)
def test_jobs_behind_a_store_that_did_not_answer_are_refused_unsent(error: Exception) -> None:
    store = _Store(first=0.6, error=error)
    first, rest = asyncio.run(_run(store, deadline=1.0))
    assert first is error
    assert all(isinstance(r, TimeoutError) for r in rest), rest
    assert store.sent == ["first"]  # the queued jobs never reached the store


def test_redis_py_errors_count_as_no_answer() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    for error in (RedisTimeoutError("t"), RedisConnectionError("c")):
        store = _Store(first=0.6, error=error)
        _, rest = asyncio.run(_run(store, deadline=1.0))
        assert all(isinstance(r, TimeoutError) for r in rest), rest
        assert store.sent == ["first"]


def test_a_reply_error_is_not_an_outage() -> None:
    from redis.exceptions import ResponseError

    store = _Store(first=0.6, error=ResponseError("ERR a bug, not an outage"))
    first, rest = asyncio.run(_run(store, deadline=1.0))
    assert isinstance(first, ResponseError)
    assert rest == [f"answer queued {i}" for i in range(3)]


def test_a_job_that_waited_past_the_whole_deadline_is_refused_unsent() -> None:
    store = _Store(first=0.9)
    first, rest = asyncio.run(_run(store, deadline=0.6))
    assert first == "answer first"  # it was sent in time; its answer is kept
    assert all(isinstance(r, TimeoutError) for r in rest), rest
    assert store.sent == ["first"]


def test_a_job_cancelled_while_queued_is_skipped_and_the_rest_are_sent() -> None:
    store = _Store(first=0.3)

    async def main() -> list[Any]:
        dispatcher = Dispatcher(lambda: _Client(), store, deadline=1.0)
        try:
            first = asyncio.ensure_future(dispatcher.submit("first"))
            while not store.started.is_set():
                await asyncio.sleep(0.001)
            queued = [asyncio.ensure_future(dispatcher.submit(f"queued {i}")) for i in range(3)]
            await asyncio.sleep(0.01)
            queued[0].cancel()
            results = await asyncio.gather(first, *queued[1:])
            return list(results)
        finally:
            dispatcher.close()

    assert asyncio.run(main()) == ["answer first", "answer queued 1", "answer queued 2"]
    assert store.sent == ["first", "queued 1", "queued 2"]  # the cancelled one never went out
