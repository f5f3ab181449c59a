"""The two transports behind their protocols, and the drivers that run routed work on them.

A transport runs one write of commands on one server and returns the replies
(error replies as values), or raises an outage
(:class:`~nirguard._redis.outage.StoreUnavailable`) or a
:class:`~nirguard.ConfigurationError`. It knows nothing of the guard: the engine's
work arrives as a generator of hops (:mod:`nirguard._redis.route`), and nothing
in a transport calls back into the engine.

* :class:`SyncTransport` (:class:`~nirguard._redis.pool.SyncNodes`): the caller's
  thread, every hop bounded by one absolute deadline for the whole operation.
* :class:`AsyncTransport` (:class:`~nirguard._redis.loop.LoopNodes`): the running
  event loop, every hop given a *budget* of store silence (the loop's own lag is
  never counted against the store): what is left of the deadline, and at least
  half of it, so that a loop that lagged between two hops does not refuse the second.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from typing import Final, Protocol, TypeVar

from nirguard._redis.connect import Endpoint
from nirguard._redis.outage import StoreUnavailable
from nirguard._redis.route import Hop
from nirguard._redis.wire import Command, Reply

__all__ = ["AsyncTransport", "SyncTransport", "arun", "run"]

T = TypeVar("T")
#: Work to run: yields hops, receives their replies, returns its result.
Work = Generator[Hop, list[Reply], T]
#: A hop on the async path always gets at least this share of the deadline.
MIN_SHARE: Final = 0.5


class SyncTransport(Protocol):
    """Runs one write on one server from the caller's thread."""

    def run(self, node: Endpoint, commands: Sequence[Command], deadline: float) -> list[Reply]:
        """Replies before ``deadline`` (``time.monotonic()``), or an outage."""
        ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """Runs one write on one server from the running event loop."""

    async def arun(self, node: Endpoint, commands: Sequence[Command], budget: float) -> list[Reply]:
        """Replies unless the server stays silent past ``budget`` seconds, or an outage."""
        ...

    def close(self) -> None: ...


def run(work: Work[T], transport: SyncTransport, deadline: float) -> T:
    """Run ``work`` on ``transport``, all of it before ``deadline``."""
    try:
        node, commands = next(work)
        while True:
            try:
                replies = transport.run(node, commands, deadline)
            except StoreUnavailable as exc:
                node, commands = work.throw(exc)
                continue
            node, commands = work.send(replies)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        work.close()


async def arun(
    work: Work[T], transport: AsyncTransport, deadline: float, start: float | None = None
) -> T:
    """Run ``work`` on ``transport`` from the running loop, within about ``deadline``
    counted from ``start`` (``time.monotonic()``; default: now)."""
    if start is None:
        start = time.monotonic()
    try:
        node, commands = next(work)
        while True:
            budget = max(deadline - (time.monotonic() - start), deadline * MIN_SHARE)
            try:
                replies = await transport.arun(node, commands, budget)
            except StoreUnavailable as exc:
                node, commands = work.throw(exc)
                continue
            node, commands = work.send(replies)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        work.close()
