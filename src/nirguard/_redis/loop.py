"""The async transport: each event loop talks to each server on a connection of its own.

One :class:`asyncio.Protocol` per (event loop, server): every call made during one
turn of the loop goes out in **one** ``write``, closed by a fence
(:mod:`nirguard._redis.wire`); replies are parsed by hiredis and handed to their
callers once the fence is in place. Nothing runs on another thread, so a busy
portal pays no GIL hand-off, and on a Cluster a stalled node holds only the calls
routed to it: every other node has its own connection.

**The deadline measures the store, not the loop.** A saturated event loop runs its
callbacks late; a timer that fired before the loop read a reply already waiting
in the socket would call a healthy store unavailable. So a call is refused only
when the store has been *silent*: a sweep runs every tenth of the deadline, and
fails the pending calls when (1) no byte arrived since the previous sweep and (2)
a pending call was already past 0.8 of its budget at that previous sweep. Between
two sweeps the loop polls its sockets at least once, so a reply that had arrived
by the previous sweep has been read by this one, on asyncio's loop and on uvloop
alike. A paused server is thus refused within about the deadline; a loop that is
merely late never is. A server that *dribbles* (a byte now and then, never silent)
is bounded by the connection's own clock: each sweep adds the time since the
previous one, but never more than a sweep's interval (a late sweep is the loop's
lag, not the store's), and a call older than its budget on that clock is refused.

A failed call closes the connection (a reply that comes later must never reach the
next caller); the next call opens another. A cancelled caller's reply is read and
dropped. A call whose reply is lost may have run on the server: it consumed its
counters and returned nothing, the only failure shape the guard accepts.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from typing import Final, cast

from nirguard._hooks import forks
from nirguard._redis.connect import Endpoint
from nirguard._redis.outage import StoreUnavailable, classify, connect_error
from nirguard._redis.wire import (
    Command,
    Reader,
    Reply,
    ReplyError,
    closed_after,
    fence,
    pack,
    reader,
    unfenced,
)

__all__ = ["Channel", "LoopNodes"]

#: A call is refused when the store has been silent for this share of its budget.
SILENCE: Final = 0.8
#: Sweeps per deadline.
SWEEPS: Final = 10


class _Batch:
    """The commands of one caller in one write, and their replies as they come."""

    __slots__ = ("born", "budget", "clock", "future", "replies", "want")

    def __init__(
        self,
        future: asyncio.Future[list[Reply]],
        want: int,
        born: float,
        clock: float,
        budget: float,
    ) -> None:
        self.future = future
        self.want = want
        self.born = born  # the loop's time when it was sent
        self.clock = clock  # the connection's clock then
        self.budget = budget
        self.replies: list[Reply] = []


class _Connection(asyncio.Protocol):
    """One socket: writes closed by fences, replies handed out when their fence is in,
    and the sweep that tells a silent store from a late loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self.loop = loop
        self.deadline = deadline
        self.transport: asyncio.Transport | None = None
        self.expect: deque[_Batch | bytes] = deque()  # batches, and fences (their bytes)
        self.held: list[_Batch] = []  # complete, waiting for their fence
        self.closed: Exception | None = None
        self._reader: Reader = reader()
        self._outbox: list[bytes] = []
        self._writes = 0
        self._flushing = False
        self._sweeping = False
        self._received = 0  # data_received calls so far: the sweep's sign of life
        self._seen = 0  # ... as the previous sweep saw it
        self._swept = 0.0  # when the previous sweep ran
        self._clock = 0.0  # the store's time, as sweeps on time count it

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is not a subclass of asyncio.Transport)
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self._received += 1
        self._reader.feed(data)
        gets, expect = self._reader.gets, self.expect
        while True:
            try:
                reply = gets()
            except Exception:  # hiredis.ProtocolError: the stream cannot be trusted any more
                self.fail(StoreUnavailable("nirguard: the store sent what is not a reply"))
                return
            if reply is False:
                return
            if not expect:
                self.fail(StoreUnavailable("nirguard: the store sent a reply nobody asked for"))
                return
            head = expect[0]
            if isinstance(head, bytes):
                if reply != head:
                    self.fail(unfenced(reply))
                    return
                expect.popleft()
                held, self.held = self.held, []
                for batch in held:
                    if not batch.future.done():  # a cancelled caller's replies are dropped
                        batch.future.set_result(batch.replies)
                continue
            head.replies.append(reply)
            if len(head.replies) == head.want:
                self.held.append(expect.popleft())  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        heard = [r for batch in self._pending() for r in batch.replies]
        self.fail(closed_after(heard))

    # -- calls ----------------------------------------------------------------------------------

    def send(self, commands: Sequence[Command], budget: float) -> asyncio.Future[list[Reply]]:
        """Queue ``commands`` for this turn's write; the future of their replies."""
        future: asyncio.Future[list[Reply]] = self.loop.create_future()
        if self.closed is not None:
            future.set_exception(self.closed)
            return future
        now = self.loop.time()
        self._outbox.append(pack(commands))
        self.expect.append(_Batch(future, len(commands), now, self._clock, budget))
        if not self._flushing:
            self._flushing = True
            self.loop.call_soon(self._flush)
        if not self._sweeping:
            self._sweeping = True
            self._seen, self._swept = self._received, now
            self.loop.call_later(self.deadline / SWEEPS, self._sweep)
        return future

    def _flush(self) -> None:
        self._flushing = False
        data, self._outbox = self._outbox, []
        if self.closed is not None or self.transport is None or not data:
            return
        self._writes += 1
        closing = fence(self._writes)
        data.append(pack([closing]))
        self.expect.append(closing[1])  # type: ignore[arg-type]
        self.transport.write(b"".join(data))

    def _pending(self) -> list[_Batch]:
        return [item for item in self.expect if not isinstance(item, bytes)] + self.held

    def _sweep(self) -> None:
        self._sweeping = False
        if self.closed is not None or not self.expect:
            return
        now = self.loop.time()
        interval = self.deadline / SWEEPS
        self._clock += min(now - self._swept, interval)
        pending = self._pending()
        silent = self._received == self._seen
        if (silent and self._swept > min(b.born + SILENCE * b.budget for b in pending)) or any(
            self._clock - b.clock > b.budget for b in pending
        ):
            self.fail(StoreUnavailable("nirguard: the store did not answer within the deadline"))
            return
        self._seen, self._swept = self._received, now
        self._sweeping = True
        self.loop.call_later(interval, self._sweep)

    def fail(self, error: Exception) -> None:
        """Fail every pending call with ``error`` and close the socket for good."""
        if self.closed is None:
            self.closed = error
        self._outbox = []
        pending, self.held = self._pending(), []
        self.expect.clear()
        for batch in pending:
            if not batch.future.done():
                batch.future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()  # at once: TLS too (no close_notify to wait for)


class Channel:
    """The calls of one event loop to one server, on one connection at a time."""

    __slots__ = ("_connecting", "_deadline", "_watch", "conn", "endpoint", "forks", "loop")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, endpoint: Endpoint, deadline: float
    ) -> None:
        self.loop = loop
        self.endpoint = endpoint
        self._deadline = deadline
        self.conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._watch: AsyncGenerator[None, None] | None = None
        self.forks = forks()  # a channel made before a fork is the parent's

    async def call(self, commands: Sequence[Command], budget: float) -> list[Reply]:
        """The replies of ``commands`` (error replies as values).

        Raises:
            StoreUnavailable: an outage.
            ConfigurationError: the server refused the connection's set-up.
        """
        conn = self.conn
        if conn is None or conn.closed is not None:
            conn = await self.connect(budget)
        return await conn.send(commands, budget)

    async def connect(self, budget: float) -> _Connection:
        """The connection, opened (or being opened by another call) within ``budget``."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open(budget))
        return await asyncio.shield(self._connecting)

    async def _until_loop_ends(self) -> AsyncGenerator[None, None]:
        """Suspended for the loop's lifetime: ``asyncio.run`` (and uvicorn) close the
        loop's async generators before the loop, which runs :meth:`close` on it, so
        the socket is closed by its own loop instead of leaking when the loop goes."""
        try:
            yield
        finally:
            self.close()

    async def _open(self, budget: float) -> _Connection:
        if self._watch is None:
            self._watch = self._until_loop_ends()
            await self._watch.__anext__()
        point = self.endpoint
        timeout = min(point.connect_timeout or budget, budget)

        def protocol() -> _Connection:
            return _Connection(self.loop, self._deadline)

        name = point.host if point.tls is not None and point.tls.check_hostname else None
        try:
            if point.path:
                opened = self.loop.create_unix_connection(protocol, point.path, ssl=point.tls)
            else:
                opened = self.loop.create_connection(
                    protocol, point.host, point.port, ssl=point.tls, server_hostname=name
                )
            _, conn = await asyncio.wait_for(opened, timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise connect_error(exc) from None
            raise StoreUnavailable("nirguard: cannot connect to the store in time") from None
        assert conn.transport is not None
        sock = conn.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if point.keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        setup = point.handshake()
        if setup:
            for reply in await conn.send(setup, budget):
                if isinstance(reply, ReplyError):
                    error = classify(reply)
                    conn.fail(error)
                    raise error
        self.conn = conn
        return conn

    def close(self) -> None:
        """Close the connection (from the loop's thread, or once the loop has stopped)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.fail(StoreUnavailable("nirguard: the guard was closed"))


class LoopNodes:
    """The async transport: a channel per (event loop, server), made on first use."""

    __slots__ = ("_channels", "_last", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._channels: dict[tuple[int, Endpoint], Channel] = {}
        self._last: Channel | None = None  # the channel of the latest call

    def channels(self) -> list[Channel]:
        """The channels open now (for tests and close)."""
        return list(self._channels.values())

    async def arun(self, node: Endpoint, commands: Sequence[Command], budget: float) -> list[Reply]:
        """``commands`` on ``node`` (see :meth:`Channel.call`)."""
        loop = asyncio.get_running_loop()
        channel = self._last  # most calls go where the previous one went: no hashing
        if (
            channel is None
            or channel.endpoint is not node
            or channel.loop is not loop
            or channel.forks != forks()
        ):
            channel = self._last = self._channel(loop, node)
        conn = channel.conn
        if conn is None or conn.closed is not None:
            conn = await channel.connect(budget)
        return await conn.send(commands, budget)

    def _channel(self, loop: asyncio.AbstractEventLoop, node: Endpoint) -> Channel:
        key = (id(loop), node)
        channel = self._channels.get(key)
        if channel is None or channel.loop is not loop or channel.forks != forks():
            for old_key, old in list(self._channels.items()):
                if old.loop.is_closed() or old.forks != forks():
                    self._channels.pop(old_key, None)  # another thread may have pruned it
            channel = self._channels[key] = Channel(loop, node, self.deadline)
        return channel

    def close(self) -> None:
        """Close every channel: on its own loop, or at once when that loop has stopped."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        self._last = None
        for key, channel in list(self._channels.items()):
            if self._channels.pop(key, None) is None:
                continue  # another thread closed it
            if channel.loop.is_closed():
                continue
            if running is channel.loop or not channel.loop.is_running():
                channel.close()
            else:
                channel.loop.call_soon_threadsafe(channel.close)
