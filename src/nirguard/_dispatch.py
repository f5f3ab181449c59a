"""The async path's calls to Redis, made on a thread of their own and pipelined.

An asyncio portal under load has thousands of requests in flight: any
deadline measured on the event loop would count the loop's own lag, and a
saturated loop would be mistaken for a slow store (lookups refused with
``GuardUnavailable`` while Redis answers in microseconds). So the async path
never waits on Redis inside the event loop: :meth:`Dispatcher.submit` hands
the call to a dispatcher thread and awaits a future. The thread takes every
call queued while it was busy, sends them as **one pipeline** on one
connection, and resolves the futures; its socket timeouts are the deadline,
so the deadline measures what the store does and nothing else. The event
loop is never blocked.

Jobs older than the deadline when their turn comes are refused with
:class:`TimeoutError` without being sent. A call whose reply is lost (a cut
connection, a timeout) may still have run on the server: it consumed its
counters and returned nothing, which is the only failure shape the guard
accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from nirguard._redis_client import Library

__all__ = ["Dispatcher"]

#: Most calls in one pipeline (a healthy Redis runs them in a few milliseconds).
MAX_BATCH: Final = 256


@dataclass(slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    born: float
    args: list[str] | None = None  # one library call (pipelined)...
    work: Callable[[Any], Any] | None = None  # ... or a function of the client, run alone


def _settle(jobs: list[tuple[_Job, bool, Any]]) -> None:
    """Runs on the event loop: hand each job its result or error."""
    for job, ok, value in jobs:
        if job.future.done():  # the caller was cancelled meanwhile
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


class Dispatcher:
    """One thread per process that runs the async path's calls, pipelined."""

    __slots__ = (
        "_cond",
        "_deadline",
        "_library",
        "_make_client",
        "_pid",
        "_pipeline",
        "_queue",
        "_stopped",
        "_thread",
    )

    def __init__(
        self,
        make_client: Callable[[], Any],
        library: Library,
        *,
        deadline: float,
        pipeline: bool,
    ) -> None:
        self._make_client = make_client
        self._library = library
        self._deadline = deadline
        self._pipeline = pipeline
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopped = False

    # -- the event loop's side ------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._pid = os.getpid()  # a fork (gunicorn --preload) leaves no thread behind
            self._queue = deque()
            self._stopped = False
            self._thread = threading.Thread(target=self._serve, name="nirguard-redis", daemon=True)
            self._thread.start()

    async def _submit(self, job: _Job) -> Any:
        with self._cond:
            self._ensure_thread()
            self._queue.append(job)
            self._cond.notify()
        # The thread resolves every job within the deadline; this bound only guards
        # against a bug in it, never against a slow store.
        return await asyncio.wait_for(job.future, timeout=self._deadline * 20 + 5)

    async def call(self, args: list[str]) -> Any:
        """One library call, pipelined with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        return await self._submit(_Job(loop, loop.create_future(), time.monotonic(), args=args))

    async def run(self, work: Callable[[Any], Any]) -> Any:
        """``work(client)`` on the dispatcher thread (calls that depend on each other)."""
        loop = asyncio.get_running_loop()
        return await self._submit(_Job(loop, loop.create_future(), time.monotonic(), work=work))

    def close(self) -> None:
        """Stop the thread (a later call starts another)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._deadline * 4 + 1)
        self._thread = None

    # -- the thread's side ----------------------------------------------------------------------

    def _serve(self) -> None:
        client = None
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped and not self._queue:
                    break
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            if client is None:
                client = self._make_client()
            self._handle(client, batch)
        if client is not None:
            client.close()

    def _handle(self, client: Any, batch: list[_Job]) -> None:
        now = time.monotonic()
        results: list[tuple[_Job, bool, Any]] = []
        calls: list[_Job] = []
        for job in batch:
            if job.future.done():
                continue  # cancelled while it waited: do not spend the store's time on it
            if now - job.born > self._deadline:
                results.append((job, False, TimeoutError("nirguard: deadline passed in queue")))
            elif job.work is not None:
                results.append(self._alone(client, job))
            else:
                calls.append(job)
        if calls:
            results.extend(self._calls(client, calls))
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, bool, Any]]] = {}
        for item in results:
            by_loop.setdefault(item[0].loop, []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, items)

    def _alone(self, client: Any, job: _Job) -> tuple[_Job, bool, Any]:
        assert job.work is not None
        try:
            return job, True, job.work(client)
        except Exception as exc:
            return job, False, exc

    def _calls(self, client: Any, jobs: list[_Job]) -> list[tuple[_Job, bool, Any]]:
        library = self._library
        try:
            if self._pipeline and len(jobs) > 1:
                replies = library.pipeline(client, [job.args or [] for job in jobs])
            else:
                replies = []
                for job in jobs:
                    try:
                        replies.append(library.call(client, job.args or []))
                    except Exception as exc:
                        replies.append(exc)
        except Exception as exc:  # the connection failed: every call of the batch shares it
            return [(job, False, exc) for job in jobs]
        return [
            (job, not isinstance(reply, Exception), reply)
            for job, reply in zip(jobs, replies, strict=True)
        ]
