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

Jobs that waited more than half the deadline for their turn *behind a store
that did not answer* (the previous batch met an outage: a timeout, a lost
connection, a failover; :func:`~nirguard._redis.script.outages`) are
refused with :class:`TimeoutError` without being sent, and so is any job that
waited longer than the whole deadline; with socket timeouts at 0.9 of the
deadline, no job waits much longer than the deadline, whatever the store does.
A batch that merely took long is not evidence against the store: on a busy
host the thread waits for the CPU and the GIL between a send and a read (the
load benchmark saw batches of a few calls take 0.1-0.3 s of wall time for 1-3 ms
of CPU while Redis answered in microseconds), and refusing the jobs queued
behind it would turn a busy host into an outage. A call whose reply is lost (a
cut connection, a timeout) may still have run on the server: it consumed its
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

from nirguard._redis.script import outages

__all__ = ["Dispatcher"]

#: Most calls in one pipeline (a healthy Redis runs them in a few milliseconds).
MAX_BATCH: Final = 256


#: Runs a batch of items on a client: one result per item, a value or the exception it met.
Batch = Callable[[Any, list[Any]], list[Any]]


@dataclass(slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    born: float
    item: Any


def _settle(jobs: list[tuple[_Job, Any]]) -> None:
    """Runs on the event loop: hand each job its result or error."""
    for job, value in jobs:
        if job.future.done():  # the caller was cancelled meanwhile
            continue
        if isinstance(value, BaseException):
            job.future.set_exception(value)
        else:
            job.future.set_result(value)


class Dispatcher:
    """One thread per process that runs the async path's calls in batches."""

    __slots__ = (
        "_batch",
        "_cond",
        "_deadline",
        "_make_client",
        "_outages",
        "_pid",
        "_queue",
        "_slow",
        "_stopped",
        "_thread",
    )

    def __init__(self, make_client: Callable[[], Any], batch: Batch, *, deadline: float) -> None:
        self._make_client = make_client
        self._batch = batch
        self._deadline = deadline
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopped = False
        self._slow = False  # the last batch met an outage: a timeout, a lost connection
        self._outages = outages()

    # -- the event loop's side ------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._pid = os.getpid()  # a fork (gunicorn --preload) leaves no thread behind
            self._queue = deque()
            self._stopped = False
            self._thread = threading.Thread(target=self._serve, name="nirguard-redis", daemon=True)
            self._thread.start()

    async def submit(self, item: Any) -> Any:
        """Run ``item`` in the next batch; its result, or the exception it met, raised."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), time.monotonic(), item)
        with self._cond:
            self._ensure_thread()
            self._queue.append(job)
            self._cond.notify()
        # The thread settles every job within about the deadline; this bound only guards
        # against a bug in it, never against a slow store.
        return await asyncio.wait_for(job.future, timeout=self._deadline * 20 + 5)

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
        results: list[tuple[_Job, Any]] = []
        jobs: list[_Job] = []
        for job in batch:
            if job.future.done():
                continue  # cancelled while it waited: do not spend the store's time on it
            waited = now - job.born
            if waited > self._deadline or (self._slow and waited > self._deadline / 2):
                results.append((job, TimeoutError("nirguard: the store is slow; deadline passed")))
            else:
                jobs.append(job)
        if jobs:
            try:
                values = self._batch(client, [job.item for job in jobs])
            except Exception as exc:  # the connection failed: every job of the batch shares it
                values = [exc] * len(jobs)
            self._slow = any(isinstance(v, self._outages) for v in values)
            results.extend(zip(jobs, values, strict=True))
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any]]] = {}
        for job, value in results:
            by_loop.setdefault(job.loop, []).append((job, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, items)
